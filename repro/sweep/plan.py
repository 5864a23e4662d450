"""Planning a sweep: which notebooks, which (p, seed) runs, their parameters and output paths (docs/design.md §6)."""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from repro.errors import ConfigError
from repro.io import process_tag
from repro.names import P_VALUES, check_p
from repro.paths import PROJECT_ROOT, results_dir as default_results_dir
from repro.profiles import get_profile

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


MANAGED_PARAMS = ("profile", "p", "seed", "data_root", "results_dir")


DEFAULT_SEEDS = (0, 1, 2)


#: the largest seed numpy, torch and Python's random all accept
MAX_SEED = 2**32 - 1


@dataclass
class Run:
    """One notebook for one ``(profile, p, seed)``: what to execute and where its outputs go."""

    notebook: Path
    parameters: dict[str, Any]
    result: Path
    executed: Path
    profile: str
    results_dir: Path
    number: int
    p: int | None = None
    seed: int | None = None

    @property
    def stem(self) -> str:
        return self.notebook.stem

    @property
    def rank(self) -> float:
        """Position in a (p, seed)'s run order (:func:`run_rank`): a run depends on the lower-ranked ones."""
        return run_rank(self.number)

    @property
    def per_run(self) -> bool:
        """Expanded over p x seed (``False``: runs once per profile)."""
        return self.p is not None

    @property
    def key(self) -> str:
        """Identity in ``sweep.json``: ``<stem>`` or ``<stem>/p<p>/seed<seed>``."""
        return f"{self.stem}/p{self.p}/seed{self.seed}" if self.per_run else self.stem

    @property
    def name(self) -> str:
        return f"{self.stem} p{self.p} seed{self.seed}" if self.per_run else self.stem

    @property
    def partial(self) -> Path:
        """Temporary path of the executed notebook while it runs (renamed when the run ends)."""
        return self.executed.with_name(f".{self.executed.stem}.{process_tag()}.partial.ipynb")


@dataclass
class _Notebook:
    path: Path
    number: int
    params: dict[str, Any]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def per_run(self) -> bool:
        return "p" in self.params

# notebooks that read the τ study, and the ones that produce it (the teachers, then the study)
TAU_READERS = (2, 3, 4)
TAU_PRODUCERS = (1, 4)
TAU_STUDY = 4   # 04_temperature: needs only the teachers (01); M2 and M3 (02, 03) read its τ


def run_rank(number: int) -> float:
    """Where notebook ``number`` runs within one (p, seed): numbered order, except the τ study right
    after the teachers, so that 02 and 03 find its choice instead of training it themselves."""
    return TAU_PRODUCERS[0] + 0.5 if number == TAU_STUDY else float(number)


def _number(stem: str) -> int | None:
    m = re.match(r"(\d+)", stem)
    return int(m.group(1)) if m else None


def resolve_notebook(name: str | os.PathLike, notebooks_dir: str | os.PathLike | None = None) -> Path:
    """A notebook given as a number (``"01"``), a stem (``"01_m1_teachers"``), a unique stem prefix or a path."""
    folder = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    text = str(name)
    if text.endswith(".ipynb") or "/" in text or os.sep in text:
        for cand in (Path(text).expanduser(), folder / text):
            if cand.is_file():
                return cand.resolve()
        raise ConfigError(f"notebook {text} does not exist")
    available = sorted(folder.glob("*.ipynb"))
    if text.isdigit():
        matches = [a for a in available if _number(a.stem) == int(text)]
    else:
        matches = [a for a in available if a.stem == text] or [a for a in available if a.stem.startswith(text)]
    if len(matches) == 1:
        return matches[0].resolve()
    if len(matches) > 1:
        raise ConfigError(f"notebook {text!r} is ambiguous in {folder}: {[m.name for m in matches]}")
    paired = sorted(q.name for q in folder.glob("*.py") if (_number(q.stem) == int(text) if text.isdigit() else q.stem.startswith(text)))
    hint = (f" Only the jupytext script(s) {paired} exist: create the notebook with "
            f"`jupytext --to ipynb {folder}/<name>.py` (or `jupytext --sync`).") if paired else ""
    raise ConfigError(
        f"no notebook {text!r} in {folder}; available: {[a.stem for a in available] or 'none'}.{hint}")


def all_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every numbered notebook of a folder, in numbered order."""
    folder = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    return sorted((q.resolve() for q in folder.glob("*.ipynb") if _number(q.stem) is not None),
                  key=lambda q: (_number(q.stem), q.stem))


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """The parameters a notebook declares in its ``parameters`` cell: ``{name: default (as source text)}``."""
    import papermill

    info = papermill.inspect_notebook(str(path))
    return {k: v.get("default") for k, v in info.items()}


def _inspect(path: Path) -> _Notebook:
    number = _number(path.stem)
    if number is None:
        raise ConfigError(f"notebook {path.name} has no number; sweeps run numbered notebooks (NN_name.ipynb)")
    params = notebook_parameters(path)
    if ("p" in params) != ("seed" in params):
        raise ConfigError(
            f"notebook {path.name} declares {'p' if 'p' in params else 'seed'} but not "
            f"{'seed' if 'p' in params else 'p'}; the notebook contract wants both (one run per p and seed) or neither")
    return _Notebook(path, number, params)


def _check_ps(ps: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(check_p(p) for p in ps))


def check_seed(seed) -> int:
    """``seed`` as an int in 0..2**32 - 1, or a ConfigError naming it and the range."""
    try:
        ok = int(seed) == seed and 0 <= int(seed) <= MAX_SEED
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"seed {seed!r} is not allowed: seeds are integers from 0 to {MAX_SEED} "
                          "(numpy, torch and Python's random take no other); pass e.g. --seed 0")
    return int(seed)


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(check_seed(s) for s in seeds))


def plan_sweep(
    notebooks: Sequence[str | os.PathLike] | None,
    profile: str,
    ps: Iterable[int] = P_VALUES,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    results_root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    extra_params: dict[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> list[Run]:
    """The runs of a sweep, in the order they must execute.

    Notebooks whose parameters cell has ``p`` and ``seed`` expand over
    ``seeds x ps``; the others run once per profile.  Order: once-notebooks
    numbered before the first per-run notebook (``00_data``), then for each
    seed, for each p, the per-run notebooks in numbered order (a later
    notebook reads the earlier ones' outputs for the same p and seed; the τ
    study 04 runs right after the teachers 01, before 02 and 03 that read it), then
    the remaining once-notebooks (``06_report``).  Seeds are the outer loop so
    that a sweep stopped early holds complete p-curves for its first seeds.

    Only parameters a notebook declares are passed to it; ``results_dir`` is
    always ``<results_root>/<profile>`` (default ``results/<profile>``) and
    ``data_root`` is passed only when given.  ``extra_params`` go to the
    notebooks that declare them; a key no notebook declares is an error. ``force`` (the sweep's
    ``--force``) sets ``force = True`` in every notebook that declares it, so that the notebook retrains
    models whose results exist (from other data included) instead of reading them.
    """
    get_profile(profile)
    ps, seeds = _check_ps(ps), _check_seeds(seeds)
    names = list(notebooks) if notebooks else all_notebooks(notebooks_dir)
    if not names:
        raise ConfigError(f"no numbered notebooks in {notebooks_dir or NOTEBOOKS_DIR}")
    paths = list(dict.fromkeys(resolve_notebook(n, notebooks_dir) for n in names))
    specs = sorted((_inspect(q) for q in paths), key=lambda s: (run_rank(s.number), s.stem))

    extra = dict(extra_params or {})
    managed = sorted(set(extra) & set(MANAGED_PARAMS))
    if managed:
        raise ConfigError(f"{managed} are set by the sweep itself (use --profile/--p/--seeds/--data-root/--results-root)")
    declared = set().union(*(s.params for s in specs))
    unknown = sorted(set(extra) - declared)
    if unknown:
        raise ConfigError(f"parameter(s) {unknown} are declared by none of {[s.stem for s in specs]}; "
                          f"declared: {sorted(declared)}")

    rdir = default_results_dir(profile, Path(results_root).expanduser().resolve() if results_root else None)
    if results_root and any("results_dir" not in s.params for s in specs):
        bad = [s.stem for s in specs if "results_dir" not in s.params]
        raise ConfigError(f"notebook(s) {bad} have no results_dir parameter, so their results cannot go to {rdir}")
    per = [s for s in specs if s.per_run]
    if per and not ps:
        raise ConfigError(f"notebook(s) {[s.stem for s in per]} run per p and seed: give at least one p")
    if per and not seeds:
        raise ConfigError(f"notebook(s) {[s.stem for s in per]} run per p and seed: give at least one seed")
    first_per = min((s.number for s in per), default=None)
    head = [s for s in specs if not s.per_run and (first_per is None or s.number < first_per)]
    tail = [s for s in specs if not s.per_run and s not in head]

    def make(spec: _Notebook, p: int | None, seed: int | None) -> Run:
        values: dict[str, Any] = {"profile": profile, "p": p, "seed": seed, "results_dir": str(rdir)}
        if data_root is not None:
            values["data_root"] = str(Path(data_root).expanduser().resolve())
        values.update(extra)
        if force:
            values["force"] = True
        params = {k: v for k, v in values.items() if k in spec.params}
        if spec.per_run:
            result = rdir / f"p{p}" / f"seed{seed}" / f"{spec.stem}.json"
            executed = rdir / "executed" / spec.stem / f"p{p}-seed{seed}.ipynb"
        else:
            result = rdir / f"{spec.stem}.json"
            executed = rdir / "executed" / f"{spec.stem}.ipynb"
        return Run(spec.path, params, result, executed, profile, rdir, spec.number, p, seed)

    runs = [make(s, None, None) for s in head]
    for spec, p, seed in _tau_seed_dependencies(profile, per, ps, seeds, notebooks_dir):
        runs.append(make(spec, p, seed))
    for seed, p in itertools.product(seeds, ps):
        runs += [make(s, p, seed) for s in per]
    runs += [make(s, None, None) for s in tail]
    return runs



def _tau_seed_dependencies(profile: str, per: list[_Notebook], ps: list[int], seeds: list[int],
                           notebooks_dir) -> list[tuple[_Notebook, int, int]]:
    """Runs a sweep must add because a profile shares one seed's τ study (``tau_seed = k``).

    With ``tau_seed = k``, M2/M3 of every seed read seed k's τ study; when the sweep reads τ
    (notebooks 02-04) for seeds without k, it first runs the teachers (01) and the study (04)
    for seed k at each p. A profile with ``tau_seed = None`` (``quick``) has no such dependency.
    """
    k = get_profile(profile).tau_seed
    if k is None or k in seeds or not any(s.number in TAU_READERS for s in per):
        return []
    producers = [_inspect(q) for q in all_notebooks(notebooks_dir) if _number(q.stem) in TAU_PRODUCERS]
    return [(spec, p, int(k)) for p in ps for spec in sorted(producers, key=lambda s: s.number)]


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON or a Python literal, else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise ConfigError(f"--param wants KEY=VALUE with a Python identifier as KEY, got {text!r}")
    for reader in (json.loads, ast.literal_eval):
        try:
            return key.strip(), reader(value)
        except (ValueError, SyntaxError):
            pass
    return key.strip(), value


def stale_results(runs: Sequence[Run], identity: str) -> list[tuple[Path, str]]:
    """``(result file, recorded identity)`` of every existing result of ``runs`` computed from data other
    than ``identity``: the run's own JSON and, for a per-(p, seed) run, the stage results beside it."""
    from repro.data.identity import recorded_identity
    from repro.io import read_json

    out, seen = [], set()
    for run in runs:
        if not run.result.exists():
            continue
        files = sorted(run.result.parent.glob("*.json")) if run.per_run else [run.result]
        for f in files:
            if f in seen:
                continue
            seen.add(f)
            try:
                theirs = recorded_identity(read_json(f))
            except (OSError, ValueError):
                continue
            if theirs and theirs != identity:
                out.append((f, theirs))
    return out


def check_results_current(runs: Sequence[Run], data_root=None, skip_bad_images: bool = False,
                          strict_keywords: bool = False) -> None:
    """Before a sweep skips runs whose result exists: those results were computed from this data.

    The data identity of ``data_root`` for the runs' profile (:func:`repro.data.identity.data_identity`,
    its per-file hashes cached under the results root's cache) is compared with the identity every
    existing result records; a mismatch is one :class:`~repro.data.identity.IdentityMismatchError` naming
    both identities and ``--force``. Nothing is computed when no result exists yet.
    """
    from repro.data.identity import IdentityMismatchError, mismatch_message
    from repro.data.prepare import prepare_data
    from repro.paths import layout_for_results, project_relative

    if not any(r.result.exists() for r in runs):
        return
    prepared = prepare_data(data_root=data_root, profile=runs[0].profile, skip_bad_images=skip_bad_images,
                            with_images=False, strict_keywords=strict_keywords,
                            layout=layout_for_results(runs[0].results_dir))
    stale = stale_results(runs, prepared.data_identity)
    if stale:
        path, theirs = stale[0]
        more = f" (and {len(stale) - 1} more result file(s))" if len(stale) > 1 else ""
        raise IdentityMismatchError(mismatch_message(f"result {project_relative(path)}{more}", theirs,
                                                     prepared.data_identity, "`python -m repro sweep ... --force`"))
