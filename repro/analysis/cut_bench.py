"""Where to cut the encoder: training speed of its top stages per cut, from trunk maps of a few hundred images.

``python -m repro.analysis.cut_bench --profile finetune --cuts 1 2 3 4`` (a measurement, not a timed test).
For each cut ``k`` (``trainable = k``: the last k encoder stages trained, the rest frozen and cached) it

1. runs the frozen trunk once over ``n_images`` training images (view ``orig``; ``map_img_s``) and keeps
   the maps in memory in float16, as the feature cache stores them;
2. trains M1{T1,T2,T3} (the trained stages, the three heads, the profile's optimiser, LR groups, class
   balance and map flips) on those maps for ``epochs`` epochs, timing forward + backward + step
   (``train_img_s``), once in float32 and once with the top under CPU bf16 autocast (``profile.cpu_bf16``);
   the first batch's losses in both precisions are recorded side by side (``loss_fp32``, ``loss_bf16``);
3. times eval-mode prediction (logits and greedy captions, ``eval_img_s``);
4. turns these speeds into an estimate of the claims study's wall time (:func:`study_estimate`).

Run it on a quiet machine: the speeds are the machine's, and any other load lowers them.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from repro.errors import ConfigError, ReproError
from repro.names import MAIN, PRECISIONS, SUBSETS, TASKS

#: the claims' M1 teachers (the rest of the seven are needed only by the ensembles)
CLAIM_SUBSETS = ("T1", "T2", "T3", MAIN)



def trunk_maps(model, images: np.ndarray, batch_size: int = 64) -> tuple[Any, float]:
    """``(maps [N, C, h, w] float16 tensor, images/s)`` of ``model``'s frozen trunk on uint8 ``images`` (view orig)."""
    import torch

    from repro.models.encoders import preprocess

    device = next(model.parameters()).device
    chunks = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = preprocess(np.asarray(images[start:start + batch_size]), model.encoder_spec, device=device)
            chunks.append(model.trunk(x).float().cpu().half())
    seconds = time.perf_counter() - t0
    return torch.cat(chunks), len(images) / seconds


def first_batch_losses(ctx, bank, rows, global_idx, stage) -> dict[str, float]:
    """The M1 loss terms of one training batch in float32 and with the top under bf16 (same weights, same draws)."""
    import torch

    from repro.engine.stage import trim_captions

    model = ctx.new_model(stage.tasks)
    model.train()
    b = torch.as_tensor(rows[: ctx.profile.batch_size])
    batch = trim_captions(stage.make_batch(torch.as_tensor(global_idx)[b], torch.zeros_like(b)))
    x = bank.batch(b)
    out = {}
    for prec in PRECISIONS:
        model.top.train_bf16 = prec == "bf16"
        torch.manual_seed(0)
        with torch.no_grad():
            o = model(x, captions=batch.get("prefix"), from_trunk=True)
            out[prec] = float(stage.loss(o, batch)["total"])
    model.top.train_bf16 = False
    return out


def train_speed(ctx, bank, global_idx, stage, epochs: int, bf16: bool, seed: int = 0) -> float:
    """Training images/s of M1{T1,T2,T3} on ``bank`` (rows 0..N-1 = images ``global_idx``), as :func:`fit` trains."""
    import torch

    from repro.engine.fit import make_optimizer, param_groups
    from repro.engine.stage import trim_captions
    from repro.models.inputbank import random_map_flips

    prof = ctx.profile
    model = ctx.new_model(stage.tasks)
    model.top.train_bf16 = bool(bf16)
    n, bs = len(global_idx), prof.batch_size
    steps = epochs * max(1, n // bs)
    opt, sched = make_optimizer(param_groups(model, prof), prof, steps + 2)
    gen = torch.Generator().manual_seed(seed)
    gidx = torch.as_tensor(global_idx)
    model.train()

    def step(rows):
        views = torch.randint(len(bank.views), (len(rows),), generator=gen)
        batch = trim_captions(stage.make_batch(gidx[rows], views))
        x = bank.batch(rows, views)
        if prof.map_flip:
            x = random_map_flips(x, prof.map_flip, gen)
        terms = stage.loss(model(x, captions=batch.get("prefix"), from_trunk=True), batch)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        if sched is not None:
            sched.step()

    warm = torch.randperm(n, generator=gen)[:bs]
    for _ in range(2):
        step(warm)
    seen, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - bs + 1, bs):
            step(perm[start:start + bs])
            seen += bs
    return seen / (time.perf_counter() - t0)


def eval_speed(ctx, bank, n: int, tasks=TASKS) -> float:
    """Eval-mode prediction images/s (logits and greedy captions, :func:`repro.engine.evaluate.predict`)."""
    from repro.engine.evaluate import predict

    model = ctx.new_model(tasks)
    t0 = time.perf_counter()
    predict(model, bank, np.arange(n), max_len=ctx.profile.max_caption_len + 1)
    return n / (time.perf_counter() - t0)


def study_sizes(ctx, ps=(15, 70)) -> dict[str, Any]:
    """Image counts the study estimate needs: ``labeled[p]``, ``unlabeled[p]``, ``val``, ``test``, ``all``."""
    mode = ctx.profile.unlabeled
    return {"labeled": {int(p): int(len(ctx.indices("train", p=p))) for p in ps},
            "unlabeled": {int(p): int(len(ctx.indices(unlabeled=(mode, p)))) for p in ps},
            "val": int(len(ctx.indices("val"))), "test": int(len(ctx.indices("test"))),
            "all": int(len(ctx.indices()))}


def study_passes(sizes: dict[str, Any], epochs: int, kd_epochs: int, n_views: int, seeds: int = 3,
                 tau_runs_per_p: int = 12, tau_once_per_p: bool = True) -> dict[str, dict[str, int]]:
    """Image passes of the study per plan: ``{"claims" | "notebooks": {"train": n, "forward": n}}``.

    ``claims``: M1{T1}, M1{T2}, M1{T3}, M1{T1,T2,T3}, M2 and M3 with the single teacher, τ taken from
    elsewhere. ``notebooks``: notebooks 01, 04, 02, 03 as they run (seven M1 teachers, the τ study, M2 and
    M3 single and ensemble). Every run is counted with all its epochs (no early stop) and, per epoch, a
    validation pass, then one validation and one test pass; teacher outputs are one forward pass per teacher,
    image and view (greedy captions for M3 and the caption τ runs one more).
    """
    val, test = sizes["val"], sizes["test"]
    out = {"claims": {"train": 0, "forward": 0}, "notebooks": {"train": 0, "forward": 0}}

    def run(plan, n, e, copies=1):
        out[plan]["train"] += copies * n * e
        out[plan]["forward"] += copies * ((e + 1) * val + test)

    for p, lab in sizes["labeled"].items():
        unl = sizes["unlabeled"][p]
        for _ in range(seeds):
            run("claims", lab, epochs, len(CLAIM_SUBSETS))
            run("claims", lab, kd_epochs)
            run("claims", unl, kd_epochs)
            out["claims"]["forward"] += n_views * (lab + 2 * unl)
            run("notebooks", lab, epochs, len(SUBSETS))
            run("notebooks", lab, kd_epochs, 2)
            run("notebooks", unl, kd_epochs, 2)
            out["notebooks"]["forward"] += n_views * (len(SUBSETS) * lab + 4 * unl + (len(SUBSETS) - 1) * unl)
            out["notebooks"]["forward"] += len(SUBSETS) * (val + test)  # the M1 ensemble as a predictor
        for _ in range(1 if tau_once_per_p else seeds):
            run("notebooks", unl, kd_epochs, tau_runs_per_p)
            out["notebooks"]["forward"] += n_views * (len(TASKS) + 1) * unl
    return out


def study_estimate(passes: dict[str, dict[str, int]], train_img_s: float, eval_img_s: float,
                   cache_s: float) -> dict[str, float]:
    """Hours per plan: train passes / train speed + forward passes / eval speed + the map cache build."""
    return {plan: round((c["train"] / train_img_s + c["forward"] / eval_img_s + cache_s) / 3600.0, 2)
            for plan, c in passes.items()}


def cut_bench(profile: str = "finetune", cuts=(1, 2, 3, 4), n_images: int = 256, epochs: int = 2,
              precisions=PRECISIONS, data_root=None, results_dir=None, runs_dir=None, seeds: int = 3,
              **overrides) -> dict[str, Any]:
    """Speeds and study estimates per cut (see the module docstring); ``overrides`` change the profile."""
    import torch

    from repro.engine.stage import supervised_stage, t1_class_weights
    from repro.experiments.context import make_context
    from repro.models.inputbank import InputBank
    from repro.provenance import versions

    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ConfigError(f"precisions {list(precisions)}: use one or both of {list(PRECISIONS)}")
    ctx = make_context(profile, p=70, seed=0, data_root=data_root, results_dir=results_dir, runs_dir=runs_dir,
                       **overrides)
    prof = ctx.profile
    idx = ctx.indices("train", p=70)
    if n_images < 2 * prof.batch_size:
        raise ConfigError(f"n_images={n_images} is less than two batches of {prof.batch_size}; time at least "
                          f"{2 * prof.batch_size} images")
    idx = idx[:n_images]
    images = np.asarray(ctx.prepared.images[idx])
    sizes = study_sizes(ctx)
    passes = study_passes(sizes, prof.max_epochs, prof.kd_max_epochs or prof.max_epochs, len(prof.views), seeds,
                          len(TASKS) * len(prof.taus), prof.tau_seed is not None)
    weights = t1_class_weights(ctx.prepared, idx, prof.class_balance)
    stage = supervised_stage(ctx.prepared, TASKS, class_weights=weights)
    rows = []
    for k in cuts:
        kctx = replace(ctx, profile=prof.with_overrides(trainable=k), _bank=None)
        model = kctx.new_model(TASKS)
        if not model.has_trunk:
            raise ConfigError(f"cut trainable={k!r} leaves no frozen trunk for {prof.encoder}: nothing to cache")
        frozen, trained = list(model.trunk.stages.keys()), list(model.top.stages.keys())
        maps, map_img_s = trunk_maps(model, images)
        bank = InputBank.from_maps({v: maps for v in prof.views}, model.encoder_spec, ctx.device)
        row = {"trainable": k, "input_stage": frozen[-1], "trained_stages": trained,
               "map_shape": list(maps.shape[1:]), "map_img_s": round(map_img_s, 1),
               "cache_mb_all_images": round(maps[0].numel() * 2 * sizes["all"] * len(prof.views) / 2 ** 20, 1),
               "trained_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
        cache_s = sizes["all"] * len(prof.views) / map_img_s
        row["cache_build_min"] = round(cache_s / 60.0, 1)
        row.update({f"loss_{prec}": v for prec, v in
                    first_batch_losses(kctx, bank, np.arange(len(idx)), idx, stage).items()})
        row["eval_img_s"] = round(eval_speed(kctx, bank, len(idx)), 1)
        for prec in precisions:
            speed = train_speed(kctx, bank, idx, stage, epochs, bf16=prec == "bf16")
            row[f"train_img_s_{prec}"] = round(speed, 1)
            row[f"study_hours_{prec}"] = study_estimate(passes, speed, row["eval_img_s"], cache_s)
        rows.append(row)
        del model, maps, bank
    return {"profile": prof.name, "device": str(ctx.device), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "image_size": prof.image_size, "batch_size": prof.batch_size,
            "n_images": int(len(idx)), "epochs": int(epochs), "sizes": sizes, "passes": passes, "seeds": seeds,
            "cuts": rows, "versions": versions()}


def format_rows(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`cut_bench`'s result."""
    lines = [f"profile {result['profile']}, {result['image_size']} px, batch {result['batch_size']}, "
             f"{result['n_images']} images x {result['epochs']} epochs, {result['threads']} threads, {result['device']}"]
    for r in result["cuts"]:
        speeds = ", ".join(f"train {k[12:]} {r[k]} img/s (study {r['study_hours_' + k[12:]]} h)"
                           for k in r if k.startswith("train_img_s_"))
        lines.append(f"k={r['trainable']} from {r['input_stage']} {tuple(r['map_shape'])}: trains "
                     f"{'+'.join(r['trained_stages'])}; maps {r['map_img_s']} img/s (cache {r['cache_build_min']} min, "
                     f"{r['cache_mb_all_images']} MB); eval {r['eval_img_s']} img/s; {speeds}; first-batch loss "
                     f"fp32 {r['loss_fp32']:.5f} bf16 {r['loss_bf16']:.5f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m repro.analysis.cut_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="finetune")
    ap.add_argument("--cuts", nargs="+", type=int, default=[1, 2, 3, 4], metavar="K",
                    help="numbers k of last encoder stages trained (default: 1 2 3 4)")
    ap.add_argument("--images", type=int, default=256, help="training images timed (default 256)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs over them (default 2)")
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the study estimate (default 3)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=None, help="also write the result as JSON to this file")
    args = ap.parse_args(argv)
    try:
        result = cut_bench(args.profile, tuple(args.cuts), args.images, args.epochs, tuple(args.precisions),
                           data_root=args.data_root, seeds=args.seeds)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_rows(result))
    if args.out:
        from repro.io import write_json

        write_json(args.out, result)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
