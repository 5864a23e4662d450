"""Command line: ``python -m repro <command>``, every sub-command in one place (docs/design.md §6).

``data``, ``sweep``/``run-notebook``, ``train``, ``evaluate``, ``bench``, ``report``, ``compare`` and
``check-report``. Each ``add_<command>(subparsers)`` declares the flags, every one with its help; each
``cmd_<command>(args)`` imports what it runs only when it runs (``--help`` stays fast). Options shared by
several commands (``--profile``, ``--data-root``, ``--results-root``) take their help, defaults included,
from one place: the ``*_HELP`` strings below, built from :mod:`repro.paths` and :mod:`repro.profiles`.
:func:`main` turns user errors (:class:`repro.errors.ReproError`) into one clear line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from repro.errors import ConfigError, ReproError
from repro.names import ALLOW_OUTSIDE_ENV, CODES, EXECUTORS, INLINE, P_VALUES, SUBSETS, TENSORBOARD_ENV
from repro.paths import (DEFAULT_RESULTS_ROOT, PROJECT_ROOT, REFERENCE_RESULTS_ROOT, data_root_candidates,
                         project_relative)
from repro.profiles import DEFAULT_PROFILE, PROFILES
from repro.sweep.kernel import DEFAULT_KERNEL
from repro.sweep.plan import DEFAULT_SEEDS, NOTEBOOKS_DIR

# ---------------------------------------------------------------- options shared by several commands


def _folder(path: Path) -> str:
    return f"{project_relative(path, siblings=True)}/"


RESULTS_ROOT_HELP = (f"results root R: results in R/<profile>, checkpoints in R/runs, caches in R/cache (default: "
                     f"$REPRO_RESULTS, else {_folder(DEFAULT_RESULTS_ROOT)}; the committed "
                     f"{_folder(REFERENCE_RESULTS_ROOT)} only when named here)")
DATA_ROOT_HELP = ("ODIR-5K folder (Kaggle layout: full_df.csv + preprocessed_images/) or a folder with manifest.csv "
                  f"(default: $REPRO_DATA, else {' or '.join(_folder(q) for q in data_root_candidates()[-2:])})")
PROFILE_HELP = f"run profile: {', '.join(PROFILES)} (default: {DEFAULT_PROFILE})"
P_HELP = f"labeled fraction in %%, one of {', '.join(map(str, P_VALUES))}"


def _profile_flag(p: Any, what: str = "") -> None:
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=PROFILE_HELP + (f"; {what}" if what else ""))


def _data_root_flag(p: Any) -> None:
    p.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)


def _results_root_flag(p: Any, help: str = RESULTS_ROOT_HELP) -> None:
    p.add_argument("--results-root", default=None, help=help)


# ---------------------------------------------------------------- data

def readable_path(path: str | None) -> str:
    """A path as a person reads it on the terminal: relative inside the project, else absolute with the
    home folder as ``~``.

    Result files keep the project-relative form (``../shared/data/odir5k``); only the printout changes.
    """
    if not path:
        return ""
    full = (PROJECT_ROOT / Path(path).expanduser()).resolve()
    if full.is_relative_to(PROJECT_ROOT):
        return str(full.relative_to(PROJECT_ROOT))
    home = Path.home().resolve()
    return f"~/{full.relative_to(home)}" if full.is_relative_to(home) and full != home else str(full)


def print_summary(s: dict) -> None:
    print(f"data root      {readable_path(s.get('data_root'))}")
    print(f"images kept    {s['images_kept']}   excluded {s['images_excluded']}   patients {s['patients']}")
    for reason, n in s.get("excluded_by_reason", {}).items():
        print(f"  excluded: {reason}: {n}")
    if s.get("bad_images"):
        print(f"skipped        {len(s['bad_images'])} bad image(s): {', '.join(s['bad_images'])}")
    modes = s.get("image_modes") or {}
    if set(modes) - {"RGB"}:
        print("image modes    " + ", ".join(f"{n} {m}" for m, n in modes.items()) + "  (converted to 8-bit RGB)")
    print(f"data identity  {s.get('data_identity', '')}")
    print(f"split file     {readable_path(s['split_file'])}  (sha256 {s.get('split_hash', '')})")
    for name, c in s["splits"].items():
        print(f"  {name:<5} {c['images']:>5} images  {c['patients']:>5} patients")
    for p, c in s.get("per_p", {}).items():
        print(f"  L{p:<4} {c['images']:>5} images  {c['patients']:>5} patients")
    classes = sorted({k for counts in s["coarse_counts"].values() for k in counts})
    print("T1 counts      " + "  ".join(f"{c:>9}" for c in classes))
    for split, counts in s["coarse_counts"].items():
        print(f"  {split:<12} " + "  ".join(f"{counts.get(c, 0):>9}" for c in classes))
    print(f"T2 classes     {s.get('fine_classes')}   vocabulary {s.get('vocab_size')}   "
          f"mean caption length {s.get('mean_caption_len', float('nan')):.2f} tokens")
    _print_keywords(s.get("keywords"))


def _print_keywords(k: dict | None) -> None:
    """The keyword coverage line and one line per keyword decided by rule (ODIR layout only)."""
    if not k:
        return
    print(f"keywords       {k['distinct_by_table']} by table ({k['occurrences_by_table']} occurrences), "
          f"{k['distinct_by_rule']} by rule ({k['occurrences_by_rule']} occurrences), unknown {k['unknown']}")
    for r in k["by_rule"]:
        cat = r["category"] or "no label"
        print(f"  by rule: {r['keyword']!r} x{r['count']} -> {cat}  ({r['means']})")


def cmd_data_from_kaggle(args) -> int:
    """``data --from-kaggle DIR [--out DIR]``: the reference subset from a Kaggle download (repro.data.kaggle)."""
    from repro.data.kaggle import DEFAULT_OUT, import_kaggle, report_lines

    for line in report_lines(import_kaggle(args.from_kaggle, args.out or DEFAULT_OUT)):
        print(line)
    return 0


def cmd_data(args) -> int:
    if args.from_kaggle:
        return cmd_data_from_kaggle(args)
    if args.out:
        raise ConfigError("--out names where --from-kaggle writes; give --from-kaggle DIR with it")
    from repro.data.prepare import data_summary, prepare_data
    from repro.paths import check_writable, layout

    lay = layout(args.results_root)
    check_writable(lay.splits, "split folder")  # before any image is decoded
    if not args.no_images:
        check_writable(lay.cache, "cache folder")
    prepared = prepare_data(
        data_root=args.data_root, profile=args.profile,
        skip_bad_images=args.skip_bad_images, with_images=not args.no_images,
        strict_keywords=args.strict_keywords, layout=lay,
    )
    for w in prepared.info.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if args.summary or args.json:
        summary = data_summary(prepared)
        if args.json:
            print(json.dumps(summary, default=str))
        else:
            print_summary(summary)
    return 0


def add_data(sub) -> None:
    p = sub.add_parser("data", help="prepare ODIR-5K (or a manifest CSV folder): labels, split file, image cache")
    _data_root_flag(p)
    _profile_flag(p, "it decides image size and subsampling")
    p.add_argument("--summary", action="store_true", help="print split and class counts")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images and list them instead of failing")
    p.add_argument("--no-images", action="store_true", help="labels and split only; do not build the image cache")
    _results_root_flag(p)
    p.add_argument("--strict-keywords", action="store_true",
                   help="fail on diagnostic keywords the keyword table lacks instead of deciding them by rule")
    p.add_argument("--from-kaggle", metavar="DIR", default=None,
                   help="build the reference subset from an extracted Kaggle ODIR-5K download in DIR "
                        "(full_df.csv + preprocessed_images/), write it to --out and say whether it is exactly "
                        "the reference data")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="with --from-kaggle: the new, empty data folder to write (default: data/odir5k in the "
                        "project, which the data root resolution finds)")
    _outside_flag(p)
    p.set_defaults(func=cmd_data)


def _outside_flag(sp: Any) -> None:
    sp.add_argument("--allow-outside-root", action="store_true",
                    help="accept image paths (absolute, ../ or symlinks) that lead outside the data folder")


# ---------------------------------------------------------------- sweep, run-notebook

def _data_flags(sp: Any) -> None:
    """The data options of commands that train (train, sweep, run-notebook)."""
    sp.add_argument("--skip-bad-images", action="store_true",
                    help="skip unreadable images and list them in the data report; the images kept get a split "
                         "file of their own")
    sp.add_argument("--strict-keywords", action="store_true",
                    help="fail on diagnostic keywords the keyword table lacks instead of deciding them by rule")
    _outside_flag(sp)


def _common_args(sp: Any) -> None:
    _profile_flag(sp)
    sp.add_argument("--force", action="store_true", help="rerun runs whose result JSON already exists")
    _data_root_flag(sp)
    _results_root_flag(sp)
    sp.add_argument("--notebooks-dir", default=None,
                    help=f"folder of the numbered notebooks (default: {_folder(NOTEBOOKS_DIR)})")
    sp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="extra notebook parameter (JSON or Python literal), for the notebooks that declare it; repeatable")
    sp.add_argument("--kernel", default=None,
                    help=f"Jupyter kernel (default: {DEFAULT_KERNEL}); it must run this Python environment")
    sp.add_argument("--dry-run", action="store_true", help="print the planned runs and exit")
    _tensorboard_flag(sp)
    _data_flags(sp)


def _tensorboard_flag(sp: Any) -> None:
    sp.add_argument("--tensorboard", default=None, metavar="DIR",
                    help="write TensorBoard curves (per epoch: training loss terms, validation metrics, learning "
                         "rate) of every trained model into DIR/<profile>/p<p>/seed<seed>/<stage>-<model> "
                         "(default: the profile's tensorboard setting, off)")


#: the sweep options that only jobs use (their argparse names)
JOB_FLAGS = ("max_jobs", "slurm_partition", "slurm_time", "slurm_gpus", "slurm_cpus", "slurm_mem", "slurm_option")


def _executor_flags(sp: Any) -> None:
    """Where the notebooks run, and what each job asks of SLURM (defaults per profile: repro.sweep.slurm)."""
    from repro.sweep.slurm import PROFILE_RESOURCES

    paper = PROFILE_RESOURCES["paper"]
    sp.add_argument("--executor", choices=EXECUTORS, default=INLINE,
                    help="inline: run every notebook here, one after another (default); local: each (p, seed) "
                         "chain as a job on this machine; slurm: each chain as a SLURM job (sbatch). Jobs are "
                         "submitted, followed and cancelled on Ctrl-C by this process, which keeps sweep.json; "
                         "their logs go to <results root>/<profile>/jobs/<job id>/")
    sp.add_argument("--max-jobs", type=int, default=None, metavar="N",
                    help="jobs at once (default: local, as many as the CPUs hold; slurm, every ready chain)")
    sp.add_argument("--slurm-partition", default=None, metavar="NAME", help="partition (default: the cluster's)")
    sp.add_argument("--slurm-time", type=int, default=None, metavar="MIN",
                    help="time limit of a job in minutes, also for local jobs; a job that reaches it is requeued "
                         f"and resumes (default per profile, e.g. paper {paper.time_min})")
    sp.add_argument("--slurm-gpus", type=int, default=None, metavar="N",
                    help=f"GPUs per job (default per profile: paper {paper.gpus}, the CPU profiles 0)")
    sp.add_argument("--slurm-cpus", type=int, default=None, metavar="N",
                    help=f"CPUs per job (default per profile, e.g. paper {paper.cpus})")
    sp.add_argument("--slurm-mem", type=float, default=None, metavar="GB",
                    help=f"memory per job in GB (default per profile, e.g. paper {paper.mem_gb:g})")
    sp.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                    help="any other sbatch setting, without dashes, e.g. account=mylab, qos=high, constraint=a100; "
                         "repeatable")


def sweep_extra_params(args: Any) -> dict[str, Any]:
    """``--param`` values, plus the data flags as the notebooks' ``skip_bad_images`` / ``strict_keywords``."""
    from repro.sweep.plan import parse_param

    extra = dict(parse_param(x) for x in args.param)
    for flag in ("skip_bad_images", "strict_keywords"):
        if getattr(args, flag, False):
            extra[flag] = True
    return extra


def _check_sweep_outputs(args: Any, runs: list) -> None:
    """Before the first notebook starts: the data root exists and every output folder is writable."""
    from repro.paths import check_writable, layout_for_results, resolve_data_root

    if args.data_root:
        resolve_data_root(args.data_root)
    folder = runs[0].results_dir
    lay = layout_for_results(folder)
    check_writable(folder, "results folder")
    check_writable(lay.profile_runs(runs[0].profile), "runs folder")
    check_writable(lay.cache, "cache folder")


def _print_plan(runs: list, force: bool, executor: str = INLINE) -> None:
    for r in runs:
        state = "exists" if r.result.exists() and not force else "to run"
        print(f"{r.name:32s} {state:7s} -> {project_relative(r.result)}")
    if executor != INLINE and runs:
        from repro.sweep.executors import plan_units

        units = plan_units(runs)
        for u in units:
            after = f" after {', '.join(units[d].name for d in u.after)}" if u.after else ""
            print(f"{executor} job: {u.name} ({len(u.runs)} run(s)){after}")


def _cmd_sweep(args: Any) -> int:
    from repro.sweep.plan import plan_sweep

    runs = plan_sweep(args.notebooks, args.profile, args.p, args.seeds, args.results_root, args.data_root,
                      sweep_extra_params(args), notebooks_dir=args.notebooks_dir, force=args.force)
    return _execute_cli(args, runs, "sweep")


def _cmd_run_notebook(args: Any) -> int:
    from repro.sweep.plan import notebook_parameters, plan_sweep, resolve_notebook

    path = resolve_notebook(args.notebook, args.notebooks_dir)
    if args.p is None and "p" in notebook_parameters(path):
        raise ConfigError(f"{path.stem} runs per training fraction: give --p (one of {list(P_VALUES)})")
    ps = [args.p] if args.p is not None else []
    runs = plan_sweep([path], args.profile, ps, [args.seed], args.results_root, args.data_root,
                      sweep_extra_params(args), force=args.force)
    if len(runs) != 1:
        raise ConfigError(f"run-notebook runs one notebook for one p and seed; got {len(runs)} runs")
    return _execute_cli(args, runs, "run-notebook")


def _execute_cli(args: Any, runs: list, command: str) -> int:
    from repro.sweep.lock import SweepInterrupted
    from repro.sweep.plan import check_results_current
    from repro.sweep.run import run_sweep

    executor = getattr(args, "executor", INLINE)
    job_flags = [f"--{k.replace('_', '-')}" for k in JOB_FLAGS if getattr(args, k, None)]
    if executor == INLINE and job_flags:
        raise ConfigError(f"{', '.join(job_flags)} set the jobs of --executor slurm or local; this sweep runs "
                          "inline: add --executor slurm (or local), or leave them out")
    if args.dry_run:
        _print_plan(runs, args.force, executor)
        return 0
    if runs:
        _check_sweep_outputs(args, runs)
        if not args.force:  # a result of other data is never skipped as if it were this data's
            check_results_current(runs, args.data_root, args.skip_bad_images, args.strict_keywords)
    options = dict(force=args.force, stop_on_error=getattr(args, "stop_on_error", False), kernel_name=args.kernel,
                   command=command, chain=not getattr(args, "kernel_per_notebook", False))
    try:
        if executor == INLINE:
            report = run_sweep(runs, **options)
        else:
            from repro.sweep.executors import run_with_jobs
            from repro.sweep.slurm import resources_for

            resources = resources_for(args.profile, args.slurm_partition, args.slurm_time, args.slurm_gpus,
                                      args.slurm_cpus, args.slurm_mem, args.slurm_option)
            report = run_with_jobs(runs, executor, resources, max_jobs=args.max_jobs, **options)
    except SweepInterrupted as exc:
        print(f"interrupted by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    return report.exit_code


def add_sweep(subparsers: Any) -> None:
    """Register ``sweep`` and ``run-notebook`` (``handler(args) -> exit code``)."""
    sp = subparsers.add_parser(
        "sweep", help="run notebooks with papermill over p and seeds (resumable)",
        description="Run numbered notebooks with papermill, one run per (p, seed) for notebooks that take them. "
                    "A run whose result JSON exists is skipped, so an interrupted sweep resumes where it stopped. "
                    "Exit code 1 if any run failed.")
    sp.add_argument("--notebooks", nargs="+", default=None, metavar="NB",
                    help="numbers, stems or paths (default: every numbered notebook), e.g. 00 01 02")
    sp.add_argument("--p", nargs="+", type=int, default=list(P_VALUES), metavar="P",
                    help=f"labeled fractions in %% (default: {' '.join(map(str, P_VALUES))})")
    sp.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), metavar="SEED",
                    help=f"seeds (default: {' '.join(map(str, DEFAULT_SEEDS))})")
    sp.add_argument("--stop-on-error", action="store_true", help="stop at the first failed run")
    sp.add_argument("--kernel-per-notebook", action="store_true",
                    help="start a kernel for every run (default: the runs of one p and seed share one kernel)")
    _executor_flags(sp)
    _common_args(sp)
    sp.set_defaults(func=_cmd_sweep)

    rp = subparsers.add_parser(
        "run-notebook", help="run one notebook for one p and seed with papermill",
        description="Run one notebook with papermill for one (p, seed); skipped if its result JSON exists "
                    "unless --force. The executed notebook goes to <results>/<profile>/executed/.")
    rp.add_argument("notebook", help="number, stem or path, e.g. 02 or 02_m2_distill")
    rp.add_argument("--p", type=int, default=None, help=P_HELP + " (notebooks that take p)")
    rp.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    _common_args(rp)
    rp.set_defaults(func=_cmd_run_notebook)


# ---------------------------------------------------------------- train

def _train_results_dir(args) -> str | None:
    """The profile folder ``train`` writes to: ``<--results-root>/<profile>``, or the deprecated ``--results-dir``."""
    if args.results_dir is None:
        return None if args.results_root is None else str(Path(args.results_root).expanduser() / args.profile)
    if args.results_root is not None:
        raise ConfigError("give --results-root or the deprecated --results-dir, not both")
    root = Path(args.results_dir).expanduser().parent
    print(f"warning: --results-dir is deprecated; use --results-root {root} (the folder holding {args.profile}/)",
          file=sys.stderr)
    return args.results_dir


def cmd_train(args) -> int:
    from repro.experiments.context import check_stage_inputs, make_context
    from repro.sweep.lock import sweep_lock

    ctx = make_context(args.profile, p=args.p, seed=args.seed, data_root=args.data_root,
                       results_dir=_train_results_dir(args), skip_bad_images=args.skip_bad_images,
                       strict_keywords=args.strict_keywords)
    check_stage_inputs(ctx, args.stage)  # every earlier model present and of this run, before any training
    with sweep_lock(ctx.results_dir, lambda msg: print(msg, file=sys.stderr), command="train"):
        return _train_stage(ctx, args)


def _train_stage(ctx, args) -> int:
    from repro.experiments.ensemble import evaluate_ensemble
    from repro.experiments.m1 import run_m1
    from repro.experiments.m2m3 import run_m2, run_m3
    from repro.experiments.tau import temperature_study
    from repro.report.results import metric_of

    taus = float(args.taus) if args.taus.replace(".", "", 1).isdigit() else args.taus
    results = {}
    if args.stage == "m1":
        for s in args.subsets or SUBSETS:
            results[f"m1-{s}"] = run_m1(ctx, s, force=args.force)
    elif args.stage == "tau":
        results.update({f"tau-{k}": v for k, v in temperature_study(ctx)["runs"].items()})
    elif args.stage == "ensemble":
        results["ensemble-m1"] = evaluate_ensemble(ctx)
    else:
        run = run_m2 if args.stage == "m2" else run_m3
        for ens in (False, True):
            results[f"{args.stage}-{'ensemble' if ens else 'single'}"] = run(ctx, ensemble=ens, taus=taus)
    print(f"{'run':<22} {'T1 acc':>8} {'T2 top1':>8} {'T3 bleu':>8}")
    for name, res in results.items():
        vals = [metric_of(res, t) for t in CODES]
        print(f"{name:<22} " + " ".join(f"{v:8.3f}" for v in vals))
    print(f"results in {ctx.run_results}")
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train one stage (m1 teachers, tau study, m2, m3) for one profile, p and seed")
    p.add_argument("--stage", choices=("m1", "tau", "ensemble", "m2", "m3"), default="m1",
                   help="m1: the seven teachers; tau: the temperature study; ensemble: the M1 ensemble's test "
                        "metrics; m2 / m3: distillation on labeled / unlabeled data, single and ensemble teacher "
                        "(default: m1)")
    p.add_argument("--subsets", nargs="*", help="M1 task subsets, e.g. T1 T1+T3 (default: all seven)")
    _profile_flag(p)
    p.add_argument("--p", type=int, default=15, help=P_HELP + " (default: 15)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--taus", default="validation",
                   help="τ of m2/m3: validation (the τ study's choice), authors (the published code's per-p "
                        "table), or one number (default: validation)")
    _data_root_flag(p)
    _results_root_flag(p)
    p.add_argument("--results-dir", default=None,
                   help="deprecated: the profile folder <results root>/<profile>; use --results-root")
    p.add_argument("--force", action="store_true", help="retrain even if the result exists")
    _tensorboard_flag(p)
    _data_flags(p)
    p.set_defaults(func=cmd_train)


# ---------------------------------------------------------------- evaluate

def cmd_evaluate(args) -> int:
    from repro.analysis.evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(args.checkpoint, args.data_root, split=args.split, out=args.out,
                            skip_bad_images=args.skip_bad_images, device=args.device,
                            strict_keywords=args.strict_keywords, results_root=args.results_root)
    c = r["counts"]
    print(f"{r['dataset']} ({r['layout']}), split {r['split']}: {c['images']} images; "
          f"unknown T1 {c['unknown_coarse']}, T2 folded {c['fine_folded_to_other']}, unknown T2 {c['unknown_fine']}, "
          f"unknown words {c['caption_unknown_words']}/{c['caption_words']}")
    mt = r["metrics"]
    if "coarse" in mt:
        print(f"T1  accuracy {mt['coarse']['accuracy']:.3f}  balanced {mt['coarse']['balanced_accuracy']:.3f}  "
              f"macro-F1 {mt['coarse']['macro_f1']:.3f}")
    if "fine" in mt:
        print(f"T2  top-1 {mt['fine']['top1']:.3f}  top-5 {mt['fine']['top5']:.3f}")
    if "caption" in mt:
        print(f"T3  bleu_paper {mt['caption']['bleu_paper']:.3f}  bleu4 {mt['caption']['bleu4']:.3f}  "
              f"exact {mt['caption']['exact_match']:.3f}")
    _print_keywords(r.get("keywords"))
    print(f"written to {r['out']}")
    return 0


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a saved checkpoint on a data folder (ODIR layout or manifest.csv)")
    p.add_argument("--checkpoint", required=True,
                   help="a model checkpoint (.pt) written by train or the notebooks, under <results root>/runs/")
    _data_root_flag(p)
    p.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                   help="all images of the folder (default) or one split of the study's split file")
    p.add_argument("--out", default=None, help="result JSON (default: beside the checkpoint)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images and list them in the result instead of failing")
    p.add_argument("--strict-keywords", action="store_true",
                   help="fail on diagnostic keywords the keyword table lacks instead of deciding them by rule")
    _outside_flag(p)
    p.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when present, else the CPU), cpu, cuda or cuda:N (default: auto)")
    _results_root_flag(p, "results root whose cache/ (decoded images) and splits/ (split files of data other than "
                          "the reference subset) this uses (default: $REPRO_RESULTS, else "
                          f"{_folder(DEFAULT_RESULTS_ROOT)})")
    p.set_defaults(func=cmd_evaluate)


# ---------------------------------------------------------------- bench

def cmd_bench(args) -> int:
    from repro.analysis.bench import run_bench

    if args.floor:
        return _bench_floor(args)
    if args.probe_solvers:
        from repro.analysis.bench import probe_solver_check

        print(json.dumps(probe_solver_check(args.profile, 70 if args.p is None else args.p, args.seed or 0,
                                            args.data_root, args.results_root), indent=1))
        return 0
    if args.precision_check:
        from repro.analysis.bench import feature_precision_drift

        print(json.dumps(feature_precision_drift(args.profile, args.data_root, n=args.precision_check), indent=1))
        return 0
    r = run_bench(args.profile, args.data_root, steps=args.steps, epochs=args.epochs, results_root=args.results_root)
    for k in ("device", "profile", "encoder", "image_size", "trainable", "batch_size", "train_images"):
        print(f"{k:<32} {r[k]}")
    for k in ("ceiling_img_s", "m1_img_s", "m1_ratio", "m2_ensemble_img_s", "m2_ensemble_step_ratio",
              "input_bank_build_s", "teacher_cache_build_s_7_teachers"):
        print(f"{k:<32} {r[k]:.3f}")
    print(f"written to {readable_path(r['written_to'])}")
    return 0


def _bench_floor(args) -> int:
    """The floor of one (p, seed) chain of the sweep record in the results folder: training and decoding vs wall."""
    from repro.analysis.bench import chain_floor
    from repro.io import read_json
    from repro.names import SWEEP_FILE
    from repro.paths import results_dir

    path = results_dir(args.profile, Path(args.results_root).expanduser() if args.results_root else None) / SWEEP_FILE
    if not path.exists():
        raise ConfigError(f"no sweep record at {path}; run `python -m repro sweep --profile {args.profile}` first "
                          "or point --results-root at the results root that holds it")
    f = chain_floor(read_json(path), args.p, args.seed)
    print(f"chain p={f['p']} seed={f['seed']} ({', '.join(f['notebooks'])}) from {path}")
    print(f"{'wall_s':<32} {f['wall_s']:.1f}")
    print(f"{'floor_s (training + decoding)':<32} {f['floor_s']:.1f}  ({f['floor_share']:.0%} of wall)")
    for k, v in f["phases_s"].items():
        print(f"  {k:<30} {v:.1f}")
    return 0


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="training throughput: bare ceiling vs end-to-end M1 and M2-ensemble steps")
    _profile_flag(p)
    _data_root_flag(p)
    p.add_argument("--steps", type=int, default=30, help="steps timed for the bare ceiling (default: 30)")
    p.add_argument("--epochs", type=int, default=2, help="epochs timed end to end (default: 2)")
    _results_root_flag(p, "writes <results root>/bench/<device>.json (default: $REPRO_RESULTS, else "
                          f"{_folder(DEFAULT_RESULTS_ROOT)}); --results-root results regenerates the committed file; with --floor: the results root holding "
                          "<profile>/sweep.json")
    p.add_argument("--floor", action="store_true",
                   help="instead of benchmarking: the floor of one (p, seed) chain of the sweep record "
                        "(training and decoding seconds vs its wall time, every phase)")
    p.add_argument("--precision-check", type=int, default=0, metavar="N",
                   help="instead of benchmarking: bf16 vs fp32 features of the frozen trunk on N random images "
                        "(drift and seconds)")
    p.add_argument("--probe-solvers", action="store_true",
                   help="instead of benchmarking: the LR probe of one (p, seed) fitted by each solver (probe_solver "
                        "setting): seconds, chosen C, validation and test scores")
    p.add_argument("--p", type=int, default=None,
                   help="with --floor: the chain's p (default: the most complete chain); with --probe-solvers: p "
                        "(default 70)")
    p.add_argument("--seed", type=int, default=None, help="with --floor: the chain's seed; with --probe-solvers: "
                                                           "the seed (default 0)")
    p.set_defaults(func=cmd_bench)


# ---------------------------------------------------------------- report

def cmd_report(args) -> int:
    from repro.report.export import export_report

    written = export_report(args.profile, results_root=args.results_root, out_dir=args.out_dir,
                            figures_dir=args.figures_dir, run_notebook=not args.no_notebook)
    for key in ("html", "notebook", "headline"):
        if key in written:
            print(f"{key:<9} {written[key]}")
    print(f"tables    {len(written['tables'])} in {Path(written['tables'][0]).parent}")
    print(f"figures   {len(written['figures'])} in {Path(written['figures'][0]).parent}")
    print()
    print(Path(written["headline"]).read_text(encoding="utf-8"))
    return 0


def add_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="build the report: HTML (notebook 06), LaTeX tables, figures, claims")
    _profile_flag(p)
    _results_root_flag(p)
    p.add_argument("--out-dir", default=None,
                   help="where the HTML, LaTeX tables and headline go (default: <results root>/<profile>/report)")
    p.add_argument("--figures-dir", default=None,
                   help="default: <results-root>/figures, the top-level figures/ for --results-root results "
                        "($REPRO_FIGURES overrides); also where the Grad-CAM figures are read")
    p.add_argument("--no-notebook", action="store_true", help="only tables, figures and the headline (no HTML)")
    p.set_defaults(func=cmd_report)


# ---------------------------------------------------------------- compare

def cmd_compare(args) -> int:
    from repro.report.compare import compare_results, format_comparison

    c = compare_results(args.profile, args.results_root, args.reference, tolerance=args.tolerance)
    print(format_comparison(c))
    return c.exit_code


def add_compare(subparsers) -> None:
    from repro.report.compare import DEFAULT_TOLERANCE

    p = subparsers.add_parser(
        "compare", help="diff a reproduction's main metrics against the committed reference results",
        description="Compare T1 balanced accuracy and accuracy, T2 top-1 and T3 BLEU of every result JSON "
                    "(per p, seed, stage and model) in <results-root>/<profile> with <reference>/<profile>. "
                    "Exit code 0 when every compared value is within the tolerance, 1 otherwise.")
    _profile_flag(p)
    _results_root_flag(p, "the reproduction's results root (default: $REPRO_RESULTS, else "
                          f"{_folder(DEFAULT_RESULTS_ROOT)})")
    p.add_argument("--reference", default=None,
                   help=f"the reference results root (default: the committed {_folder(REFERENCE_RESULTS_ROOT)})")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest allowed absolute difference per metric (default: {DEFAULT_TOLERANCE})")
    p.set_defaults(func=cmd_compare)


# ---------------------------------------------------------------- check-report

REPORT_FILE = Path("report") / "report.html"  # a report's HTML, inside <results root>/<profile>


def cmd_check_report(args) -> int:
    from repro.paths import layout
    from repro.report.check import main as check_main

    files = args.html or [str(layout(args.results_root).results(args.profile) / REPORT_FILE)]
    flags = ["--no-browser"] if args.no_browser else []
    if args.screenshot:
        flags += ["--screenshot", args.screenshot]
    if args.min_images is not None:
        flags += ["--min-images", str(args.min_images)]
    return check_main([*files, *flags])


def add_check_report(subparsers) -> None:
    p = subparsers.add_parser(
        "check-report", help="check a report's HTML as a reader gets it (headless Chromium renders it)",
        description="Check report HTML: no cut table, no absolute path, every figure present, and headless "
                    "Chromium renders it. Exit code 0 when every report passes, 1 when one has problems, 2 when "
                    "a file is missing or no browser is found.")
    p.add_argument("html", nargs="*", metavar="FILE",
                   help=f"report(s) to check (default: <results root>/<profile>/{REPORT_FILE.as_posix()})")
    _profile_flag(p, "names the default report")
    _results_root_flag(p, "results root of the default report (default: $REPRO_RESULTS, else "
                          f"{_folder(DEFAULT_RESULTS_ROOT)}; {_folder(REFERENCE_RESULTS_ROOT)} for the committed one)")
    p.add_argument("--no-browser", action="store_true", help="only the checks of the file, no Chromium")
    p.add_argument("--screenshot", default=None, help="where to keep Chromium's screenshot (default: a temporary file)")
    p.add_argument("--min-images", type=int, default=None,
                   help="fewest figures a report must hold (default: repro.report.check.MIN_IMAGES, 6)")
    p.set_defaults(func=cmd_check_report)


# ---------------------------------------------------------------- assembly

# in the order they appear in --help
COMMANDS = (add_data, add_sweep, add_train, add_evaluate, add_bench, add_report, add_compare, add_check_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro",
        description="Multi-task knowledge distillation for eye disease prediction: a reproducible study on ODIR-5K.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # for this command and the notebooks and jobs it starts
    env = {ALLOW_OUTSIDE_ENV: "1" if getattr(args, "allow_outside_root", False) else None,
           TENSORBOARD_ENV: getattr(args, "tensorboard", None)}
    saved = {k: os.environ.get(k) for k, v in env.items() if v}
    try:
        if getattr(args, "profile", None) is not None:
            from repro.profiles import get_profile

            get_profile(args.profile)  # an unknown profile is an error in every command
        if env[TENSORBOARD_ENV]:
            env[TENSORBOARD_ENV] = str(_tensorboard_dir(env[TENSORBOARD_ENV]))
        os.environ.update({k: v for k, v in env.items() if v})
        return int(args.func(args) or 0)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tensorboard_dir(folder: str) -> Path:
    """``--tensorboard DIR`` as an absolute, writable folder (jobs and kernels may start elsewhere)."""
    from repro.engine.tb_log import require_tensorboard
    from repro.paths import check_writable

    require_tensorboard()
    path = Path(folder).expanduser().resolve()
    check_writable(path, "TensorBoard folder")
    return path
