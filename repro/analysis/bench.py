"""``python -m repro bench``: training throughput on this machine (a benchmark, not a timed test).

* ``ceiling_img_s``: forward+backward images/s of the trainable network alone
  (trainable top + all three heads) on in-memory tensors — the ceiling.
* ``m1_img_s``: end-to-end M1{T1,T2,T3} training images/s through the real
  data path (:class:`repro.inputs.InputBank`, :func:`repro.train.fit`);
  ``m1_ratio`` = m1 / ceiling (target ≥ 0.85).
* ``m2_ensemble_step_ratio``: time of an M2 step with the 7-teacher cached
  ensemble ÷ time of an M1 step (target ≤ 1.1; the authors' design runs all
  teachers every step, about 3×).
Written to ``<results root>/bench/<device>.json`` (the results root of every command: ``$REPRO_RESULTS``,
else ``out/``); the committed ``results/bench/cpu.json`` is regenerated only with ``--results-root results``.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from dataclasses import replace

from repro.io import write_json
from repro.names import TASKS
from repro.paths import layout
from repro.profiles import get_profile
from repro.provenance import versions


def _ceiling(ctx, bank, steps: int) -> float:
    """Bare forward+backward of the trainable network on one in-memory batch (no data path)."""
    import torch

    from repro.distill.losses import m1_loss
    from repro.engine.stage import label_tensors, trim_captions

    prof = ctx.profile
    model = ctx.new_model(TASKS)
    idx = torch.as_tensor(ctx.indices("train", p=70)[: prof.batch_size])
    x = bank.batch(idx).clone()
    labels = {k: v[idx] for k, v in label_tensors(ctx.prepared).items()}
    # the same decoder length as the training loop (trim_captions), and the same teacher forcing as M1
    labels = {k: v.to(ctx.device) for k, v in trim_captions({**labels, "prefix": labels["caption"]}).items()}
    from repro.engine.fit import make_optimizer

    # the profile's own optimiser (SGD-Nesterov or AdamW), as in the training loop
    opt, _ = make_optimizer([p for p in model.parameters() if p.requires_grad], prof, steps + 3)
    model.train()

    def step():
        out = model(x, captions=labels["caption"], from_trunk=bank.from_trunk)
        loss = m1_loss(out, labels, model.tasks)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(idx) / (time.perf_counter() - t0)


def _fit_speed(ctx, bank, stage, idx, epochs: int) -> float:
    from repro.device import seed_everything
    from repro.engine.fit import fit

    model = ctx.new_model(stage.tasks)
    prof = replace(ctx.profile, max_epochs=epochs, patience=epochs + 1)
    fr = fit(model, bank, ctx.prepared, idx, ctx.indices("val")[:64], stage, prof, seed_everything(0), progress=False)
    return fr.train_images_per_s


def run_bench(profile: str = "quick", data_root=None, steps: int = 30, epochs: int = 2, results_root=None) -> dict:
    """Time the bare ceiling, M1 and the M2 ensemble step; write ``<results root>/bench/<device>.json``
    (``written_to`` in the returned dict)."""
    import torch

    from repro.engine.stage import supervised_stage
    from repro.experiments.context import make_context
    from repro.experiments.kd_stage import build_teachers, kd_stage, true_caption_prefix
    from repro.models.checkpoints import save_checkpoint
    from repro.names import SUBSETS, subset_tasks

    lay = layout(results_root)
    ctx = make_context(profile, p=70, seed=0, data_root=data_root, results_dir=lay.results(get_profile(profile).name))
    t0 = time.perf_counter()
    bank = ctx.bank()
    bank_s = time.perf_counter() - t0
    idx = ctx.indices("train", p=70)
    tasks = TASKS
    ceiling = _ceiling(ctx, bank, steps)
    m1 = _fit_speed(ctx, bank, supervised_stage(ctx.prepared, tasks), idx, epochs)
    # seven untrained teachers stand in for the M1 teachers: the step cost does not depend on their weights
    members = {}
    tmp = ctx.run_artifacts / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    for s in SUBSETS:
        m = ctx.new_model(subset_tasks(s))
        members[s] = (m, save_checkpoint(tmp / f"teacher-{s}.pt", m, ctx.prepared))
    t0 = time.perf_counter()
    ts = build_teachers(ctx, members, idx, true_caption_prefix(ctx, idx), "bench")
    cache_s = time.perf_counter() - t0
    taus = {t: 5.0 for t in tasks}
    m2 = _fit_speed(ctx, bank, kd_stage(ctx, "m2", tasks, ts, taus, labeled=True), idx, epochs)
    dev = ctx.device.type
    cpu = platform.processor() or platform.machine()
    result = {
        "device": dev, "cpu": cpu, "threads": torch.get_num_threads(), "profile": ctx.profile.name,
        "encoder": ctx.profile.encoder, "image_size": ctx.profile.image_size, "trainable": ctx.profile.trainable,
        "batch_size": ctx.profile.batch_size, "train_images": int(len(idx)),
        "ceiling_img_s": ceiling, "m1_img_s": m1, "m1_ratio": m1 / ceiling,
        "m2_ensemble_img_s": m2, "m2_ensemble_step_ratio": m1 / m2,
        "input_bank_build_s": bank_s, "teacher_cache_build_s_7_teachers": cache_s,
        "versions": versions(),
    }
    out = write_json(lay.root / "bench" / f"{dev}.json", result)
    return {**result, "written_to": str(out)}


# ---------------------------------------------------------------- the floor of a sweep's chain

#: the phases that are the work itself: training steps, validation decoding and the test evaluation
FLOOR_PHASES = ("training", "validation", "evaluation")


def chain_floor(record: dict, p: int | None = None, seed: int | None = None) -> dict:
    """The floor of one (p, seed) chain of a sweep record (``sweep.json``): its pure training and decoding
    seconds (:data:`FLOOR_PHASES`) next to its wall time, with every phase summed over the chain's runs.

    Without ``p``/``seed`` the chain with the most completed runs (then the lowest seed and p) is used."""
    from repro.errors import ConfigError

    chains: dict[tuple[int, int], dict[str, dict]] = {}
    for key, r in (record.get("runs") or {}).items():
        parts = key.split("/")
        if len(parts) == 3 and r.get("status") == "done" and r.get("phases"):
            chains.setdefault((int(parts[1][1:]), int(parts[2][4:])), {})[parts[0]] = r
    if not chains:
        raise ConfigError("the sweep record has no per-phase timings of a (p, seed) run; run the sweep with this "
                          "version of the code first (`python -m repro sweep ...`)")
    if p is None or seed is None:
        (p, seed) = min(chains, key=lambda c: (-len(chains[c]), c[1], c[0]))
    if (p, seed) not in chains:
        raise ConfigError(f"the sweep record has no timed runs for p={p} seed={seed}; it has {sorted(chains)}")
    runs = chains[(p, seed)]
    phases: dict[str, float] = {}
    for r in runs.values():
        for name, sec in r["phases"].items():
            phases[name] = phases.get(name, 0.0) + float(sec)
    wall = sum(float(r["wall_s"]) for r in runs.values())
    floor = sum(phases.get(k, 0.0) for k in FLOOR_PHASES)
    return {"p": p, "seed": seed, "notebooks": sorted(runs), "wall_s": round(wall, 3), "floor_s": round(floor, 3),
            "floor_share": round(floor / wall, 3) if wall else None,
            "phases_s": {k: round(v, 3) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])}}


# ---------------------------------------------------------------- bf16 vs fp32 features of the frozen trunk

def feature_precision_drift(profile: str = "quick", data_root=None, n: int = 256, seed: int = 0) -> dict:
    """How far bf16 autocast moves the frozen trunk's cached features from fp32, and how long each takes,
    on ``n`` images of the data set drawn at random (``seed``), decoded at the profile's image size."""
    import tempfile

    import numpy as np
    import torch

    from repro.data.imagecache import decode_image
    from repro.data.sources import load_dataset
    from repro.models.encoders import build_encoder, split_encoder
    from repro.models.featcache import _compute, native_bf16
    from repro.profiles import get_profile

    prof = get_profile(profile)
    paths = load_dataset(data_root).manifest["path"].astype(str).to_numpy()
    pick = np.sort(np.random.default_rng(seed).choice(len(paths), min(n, len(paths)), replace=False))
    images = np.stack([decode_image(paths[i], prof.image_size) for i in pick])
    spec = build_encoder(prof.encoder, pretrained=prof.pretrained)
    trunk, _ = split_encoder(spec, prof.trainable, taps=prof.taps)
    feats, secs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for prec in ("fp32", "bf16"):
            path = Path(tmp) / f"{prec}.npy"
            t0 = time.perf_counter()
            _compute(trunk, spec, images, "orig", path, 64, np.dtype(np.float32), torch.device("cpu"), False, prec)
            secs[prec] = time.perf_counter() - t0
            feats[prec] = np.load(path).reshape(len(images), -1)
    a, b = feats["fp32"], feats["bf16"]
    a16 = a.astype(np.float16).astype(np.float32)
    norm = np.linalg.norm(a, axis=1)
    cos = (a * b).sum(1) / norm / np.linalg.norm(b, axis=1)
    rel = np.linalg.norm(a - b, axis=1) / norm
    return {"profile": prof.name, "images": int(len(images)), "image_size": prof.image_size, "values": int(a.shape[1]),
            "threads": torch.get_num_threads(), "native_bf16": native_bf16("cpu"),
            "seconds": {k: round(v, 2) for k, v in secs.items()},
            "max_abs_diff": float(np.abs(a - b).max()), "max_abs_fp32": float(np.abs(a).max()),
            "rel_l2_per_image": {"mean": float(rel.mean()), "max": float(rel.max())},
            "cosine_per_image": {"mean": float(cos.mean()), "min": float(cos.min())},
            "float16_storage_rel_l2_mean": float((np.linalg.norm(a - a16, axis=1) / norm).mean())}


# ---------------------------------------------------------------- the probe's solvers side by side

def probe_solver_check(profile: str = "quick", p: int = 70, seed: int = 0, data_root=None, results_root=None) -> dict:
    """The LR probe of ``(profile, p, seed)`` fitted by each solver of
    :data:`repro.experiments.baselines.PROBE_SOLVERS`: per task, the fit seconds, the chosen C, the
    validation score per C and the test metrics, and the largest difference of a test metric between
    solvers. Reads the cached features (builds them if missing); writes nothing."""
    import torch

    from repro.engine.evaluate import score_predictions
    from repro.errors import ConfigError
    from repro.experiments import baselines as B
    from repro.experiments.context import make_context

    lay = layout(results_root)
    ctx = make_context(profile, p=p, seed=seed, data_root=data_root, results_dir=lay.results(get_profile(profile).name))
    feats = B.probe_features(ctx)
    if feats is None:
        raise ConfigError(f"profile {profile!r} has no frozen encoder features: no probe to fit")
    prep = ctx.prepared
    x = B.standardise(feats, ctx.indices("train"))
    tr, va, te = ctx.indices("train", p=p), ctx.indices("val"), ctx.indices("test")
    out: dict = {"profile": profile, "p": p, "seed": seed, "dim": int(x.shape[1]), "threads": torch.get_num_threads(),
                 "solvers": {}}
    for solver in B.PROBE_SOLVERS:
        per = out["solvers"][solver] = {}
        for task, col, n_cls, cw in B.probe_tasks(prep):
            y = prep.manifest[col].to_numpy()
            t0 = time.perf_counter()
            clf, c, scores, edge = B.fit_probe(x[tr], y[tr], x[va], n_cls, B.validation_score(prep, va, task),
                                               class_weight=cw, solver=solver)
            secs = time.perf_counter() - t0
            test = score_predictions(prep, te, {task: B.full_scores(clf, x[te], n_cls)}, detail=False)[task]
            per[task] = {"fit_s": round(secs, 2), "C": c, "edge": edge,
                         "val": {f"{k:g}": round(v, 4) for k, v in scores.items()},
                         "n_test": int(test.get("n", len(te))),
                         "test": {k: round(float(v), 4) for k, v in test.items() if isinstance(v, (int, float)) and k != "n"}}
    first, *others = out["solvers"].values()
    out["max_test_diff"] = max((abs(o[t]["test"][k] - first[t]["test"][k]) for o in others for t in first
                                for k in first[t]["test"] if k in o[t]["test"]), default=0.0)
    return out
