"""``python -m repro train``: one stage for one ``(profile, p, seed)`` without a notebook."""

from __future__ import annotations


def cmd_train(args) -> int:
    from .distill import evaluate_ensemble, run_m2, run_m3, temperature_study
    from .experiment import SUBSETS, make_context, run_m1
    from .tables import metric_of

    ctx = make_context(args.profile, p=args.p, seed=args.seed, data_root=args.data_root, results_dir=args.results_dir)
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
        vals = [metric_of(res, t) for t in ("T1", "T2", "T3")]
        print(f"{name:<22} " + " ".join(f"{v:8.3f}" for v in vals))
    print(f"results in {ctx.run_results}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("train", help="train one stage (m1 teachers, tau study, m2, m3) for one profile, p and seed")
    p.add_argument("--stage", choices=("m1", "tau", "ensemble", "m2", "m3"), default="m1")
    p.add_argument("--subsets", nargs="*", help="M1 task subsets, e.g. T1 T1+T3 (default: all seven)")
    p.add_argument("--profile", default="quick")
    p.add_argument("--p", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--taus", default="validation", help="validation | authors | a number")
    p.add_argument("--data-root", default=None)
    p.add_argument("--results-dir", default=None)
    p.add_argument("--force", action="store_true", help="retrain even if the result exists")
    p.set_defaults(func=cmd_train)
