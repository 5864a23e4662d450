"""``python -m repro evaluate``: a saved model on a folder it has never seen (ODIR layout and manifest CSV)."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from repro.cli import main
from repro.analysis.evaluate import evaluate_checkpoint


def test_evaluate_on_a_tiny_odir_folder(smoke_teachers, smoke_ctx, tiny_odir, tmp_path, capsys):
    ckpt = smoke_ctx.checkpoint_path("m1", "T1+T2+T3")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data-root", str(tiny_odir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "T1  accuracy" in printed and "T3  bleu_paper" in printed
    res = json.loads(out.read_text())
    assert res["layout"] == "odir" and res["counts"]["images"] == 20
    assert res["metrics"]["coarse"]["n"] + res["counts"]["unknown_coarse"] == 20
    assert set(res["metrics"]) == {"coarse", "fine", "caption"}


def test_unknown_labels_and_words_are_counted_not_fatal(smoke_teachers, smoke_ctx, tiny_odir, tmp_path):
    folder = tmp_path / "mine"
    (folder / "img").mkdir(parents=True)
    images = sorted((tiny_odir / "preprocessed_images").glob("*.jpg"))[:6]
    rows = []
    for i, src in enumerate(images):
        shutil.copy(src, folder / "img" / src.name)
        rows.append({"image": f"img/{src.name}", "patient_id": src.name.split("_")[0],
                     "coarse": ["normal", "dr", "melanoma"][i % 3],
                     "fine": ["normal fundus", "a never seen diagnosis", "choroidal melanoma"][i % 3],
                     "caption": ["normal fundus", "zygomatic xyzzy retinopathy", "choroidal melanoma"][i % 3]})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    res = evaluate_checkpoint(smoke_ctx.checkpoint_path("m1", "T1+T2+T3"), folder, out=tmp_path / "e.json")
    c = res["counts"]
    assert res["layout"] == "manifest" and c["images"] == 6
    assert c["unknown_coarse"] == 2 and c["unknown_coarse_values"] == ["melanoma"]
    assert c["fine_folded_to_other"] + c["unknown_fine"] >= 2   # "a never seen diagnosis" folds into other:dr
    assert c["caption_unknown_words"] >= 4                        # zygomatic, xyzzy, choroidal, melanoma
    assert res["metrics"]["coarse"]["n"] == 4


def test_evaluate_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data-root", str(tmp_path)]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_evaluate_every_split_of_the_checkpoints_own_split(smoke_teachers, smoke_ctx, odir_root, tmp_path):
    """`evaluate --split train|val|test` scores exactly that part of the checkpoint's split (it crashed before)."""
    ckpt = smoke_ctx.checkpoint_path("m1", "T1+T2+T3")
    m = smoke_ctx.prepared.manifest
    for split in ("train", "val", "test"):
        out = tmp_path / f"{split}.json"
        assert main(["evaluate", "--checkpoint", str(ckpt), "--data-root", str(odir_root), "--split", split,
                     "--out", str(out)]) == 0
        res = json.loads(out.read_text())
        assert res["split"] == split
        assert res["counts"]["images"] == int((m["split"] == split).sum())
