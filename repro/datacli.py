"""``python -m repro data``: prepare the data (manifest, split file, image cache) and summarise it."""

from __future__ import annotations

import json


def _print_summary(s: dict) -> None:
    print(f"data root      {s.get('data_root', '')}")
    print(f"images kept    {s['images_kept']}   excluded {s['images_excluded']}   patients {s['patients']}")
    for reason, n in s.get("excluded_by_reason", {}).items():
        print(f"  excluded: {reason}: {n}")
    print(f"split file     {s['split_file']}  (sha256 {s.get('split_hash', '')})")
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


def cmd_data(args) -> int:
    from .data import data_summary, prepare_data

    prepared = prepare_data(
        data_root=args.data_root, profile=args.profile,
        skip_bad_images=args.skip_bad_images, with_images=not args.no_images,
    )
    if args.summary or args.json:
        summary = data_summary(prepared)
        if args.json:
            print(json.dumps(summary, default=str))
        else:
            _print_summary(summary)
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("data", help="prepare ODIR-5K (or a manifest CSV folder): labels, split file, image cache")
    p.add_argument("--data-root", default=None, help="data folder (default: $REPRO_DATA, data/odir5k, ../shared/data/odir5k)")
    p.add_argument("--profile", default="quick", help="smoke | quick | paper (decides image size and subsampling)")
    p.add_argument("--summary", action="store_true", help="print split and class counts")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images and list them instead of failing")
    p.add_argument("--no-images", action="store_true", help="labels and split only; do not build the image cache")
    p.set_defaults(func=cmd_data)
