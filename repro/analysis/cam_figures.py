"""Grad-CAM for each head of :class:`~repro.models.mtlnet.MTLNet` (paper §4.4 and Fig. 5; docs/design.md §5).

Grad-CAM (Selvaraju et al., ICCV 2017; the paper's ref. [50]) weighs the
channels of a convolutional feature map ``A`` by the spatial mean of the
gradient of a score ``y`` with respect to them and keeps the positive part,

    L = ReLU(Σ_k α_k A_k),   α_k = mean_{i,j} ∂y/∂A_k[i, j],

here computed by the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``) and
min-max scaled per image to [0, 1] at input resolution.

* **Target layer** (:func:`target_layer`): the last stage of the encoder's
  trainable top — the conv head of EfficientNet-Lite0, ``layer4`` of a ResNet —
  i.e. the last 4-D feature map before global pooling. With ``trainable=0``
  (nothing trainable in the encoder) it is the trunk's last stage.
* **Which score** (:class:`HeadOutput`, one head at a time):
  T1/T2 — the logit of a class (default: the predicted class);
  T3 — the log-likelihood of a caption, ``log p(w_1..w_n, EOS | image) =
  Σ_t log softmax(z_t)[w_t]`` over the teacher-forced decoder steps up to and
  including EOS (default caption: the model's own greedy caption, so the map
  explains the whole generated diagnosis text rather than its first word; any
  other caption, e.g. the reference, can be passed as the target).
* **Frozen trunk**: the forward runs from full images (``from_trunk=False``);
  the target layer sits in the trainable top, so its output carries gradients
  although the trunk's parameters do not. When no parameter of the target
  layer requires a gradient, the input is made to require one, so the hooks
  fire in every configuration; :func:`cam_maps` checks that they did.

Correctness colours (Fig. 5: green correct, yellow partially correct, red
incorrect): T1 and T2 green when the predicted class equals the true one, red
otherwise; T3 by :func:`repro.metrics.bleu_paper` of the greedy caption against
the reference caption — green when BLEU ≥ 0.5, yellow when 0 < BLEU < 0.5, red
when BLEU = 0 (see :func:`caption_color`).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from repro.analysis.cam import cam_maps, model_device
from repro.engine.metrics import bleu_paper
from repro.errors import ConfigError, MissingStageError
from repro.io import atomic_path
from repro.models.encoders import preprocess
from repro.names import CODE_OF, MAIN, TASKS
from repro.paths import figures_dir, project_relative

COLORS = {"green": "#1a9641", "yellow": "#c79100", "red": "#d7191c", None: "#555555"}


MARKS = {"green": "✓", "yellow": "~", "red": "✗", None: ""}


CAPTION_GREEN = 0.5


def _meta(meta) -> tuple[list[str], list[str], Any, int]:
    """``(coarse_classes, fine_classes, vocab, max_len)`` from a PreparedData or a checkpoint payload."""
    from repro.data.captions import Vocab

    if isinstance(meta, Mapping):
        vocab = meta["vocab"]
        vocab = vocab if isinstance(vocab, Vocab) else Vocab.from_dict(vocab)
        prof = (meta.get("extra") or {}).get("profile") or {}
        max_len = int(prof.get("max_caption_len", 14)) + 1
        return list(meta["coarse_classes"]), list(meta["fine_classes"]), vocab, max_len
    return list(meta.coarse_classes), list(meta.fine_classes), meta.vocab, int(meta.max_caption_len) + 1


def true_labels(prepared, idx) -> list[dict[str, Any]]:
    """True labels of manifest rows ``idx``: T1 class, T2 class (after folding) and the reference caption.

    The reference caption is the one the project scores against (the stored
    ids decoded: vocabulary words, at most ``max_caption_len`` tokens).
    """
    m = prepared.manifest
    out = []
    for i in np.asarray(idx, dtype=np.int64):
        row = m.iloc[int(i)]
        out.append({"index": int(i), "image": str(row["image"]), "coarse": str(row["coarse"]),
                    "fine": str(prepared.fine_classes[int(row["fine_idx"])]),
                    "caption": " ".join(prepared.vocab.decode(list(prepared.captions[int(i)])))})
    return out


def caption_color(bleu: float) -> str:
    """Fig. 5's colours for T3: ``green`` if BLEU ≥ 0.5, ``yellow`` (partially correct) if BLEU > 0, else ``red``."""
    if bleu >= CAPTION_GREEN:
        return "green"
    return "yellow" if bleu > 0 else "red"


def judge_prediction(pred: str, truth: Mapping | None, task: str) -> dict[str, Any]:
    out: dict[str, Any] = {"pred": pred}
    if truth is None or truth.get(task) is None:
        return {**out, "true": None, "correct": None, "color": None}
    true = str(truth[task])
    out["true"] = true
    if task == "caption":
        bleu = bleu_paper(true.split(), pred.split())
        color = caption_color(bleu)
        return {**out, "bleu": bleu, "correct": {"green": True, "yellow": "partial", "red": False}[color],
                "color": color}
    ok = pred == true
    return {**out, "correct": ok, "color": "green" if ok else "red"}


@torch.no_grad()
def predictions(model: nn.Module, images_uint8, meta, truth: Sequence[Mapping] | None = None,
                batch_size: int = 32, max_len: int | None = None) -> list[dict[str, Any]]:
    """Per image, each task's prediction judged against ``truth``.

    ``meta`` is a checkpoint payload or a PreparedData (class names,
    vocabulary); ``truth`` one mapping per image with ``coarse``, ``fine``,
    ``caption`` (:func:`true_labels`). Each result maps a task the model has to
    ``{"pred", "true", "correct", "color"}`` (T3 also ``"bleu"``;
    ``correct`` is True / False, or ``"partial"`` for a yellow caption).
    """
    coarse_names, fine_names, vocab, meta_len = _meta(meta)
    max_len = int(max_len or meta_len)
    images_uint8 = np.asarray(images_uint8)
    if truth is not None and len(truth) != len(images_uint8):
        raise ConfigError(f"{len(truth)} truth rows for {len(images_uint8)} images")
    was_training = model.training
    model.eval()
    names = {"coarse": coarse_names, "fine": fine_names}
    raw: dict[str, list] = {t: [] for t in model.tasks}
    try:
        for s in range(0, len(images_uint8), batch_size):
            x = preprocess(images_uint8[s:s + batch_size], model.encoder_spec, device=model_device(model))
            o = model(x)
            for t in ("coarse", "fine"):
                if t in model.tasks:
                    raw[t] += [names[t][int(c)] for c in o[t].argmax(1).cpu()]
            if "caption" in model.tasks:
                ids = model.generate(x, max_len=max_len).cpu().tolist()
                raw["caption"] += [" ".join(vocab.decode(row)) for row in ids]
    finally:
        model.train(was_training)
    return [{t: judge_prediction(raw[t][i], None if truth is None else truth[i], t) for t in model.tasks}
            for i in range(len(images_uint8))]


def select_images(prepared, per_class: int = 1, seed: int = 0) -> np.ndarray:
    """Test images, ``per_class`` per T1 class (in class order), drawn with a fixed seed; manifest positions.

    A class with fewer test images contributes all it has.
    """
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    test = np.asarray(prepared.indices("test"), dtype=np.int64)
    coarse = prepared.manifest["coarse"].to_numpy()[test]
    out: list[int] = []
    for c in prepared.coarse_classes:
        pool = test[coarse == c]
        if len(pool):
            out += sorted(int(i) for i in rng.choice(pool, size=min(per_class, len(pool)), replace=False))
    return np.asarray(out, dtype=np.int64)


@dataclass
class CamModels:
    """The models a Grad-CAM figure compares, keyed by column label (``"M1 p=15"``), and what was missing.

    ``results_dir`` is the profile's results folder (where ``05_gradcam.json`` goes).
    """

    prepared: Any
    models: dict[str, nn.Module]
    checkpoints: dict[str, str]
    ps: list[int]
    results_dir: Path
    missing: dict[int, list[str]] = field(default_factory=dict)

    @property
    def note(self) -> str:
        """Which p values are not shown and how to produce them (empty when nothing is missing)."""
        lines = [f"p={p}: missing {', '.join(files)}; run notebooks 01-03 for p={p} first"
                 for p, files in self.missing.items()]
        return "\n".join(lines)


def load_cam_models(profile, ps: Sequence[int], seed: int = 0, data_root=None, results_dir=None,
                    m3: str = "single", data_options: dict | None = None) -> CamModels:
    """M1{T1,T2,T3} and M3 (``single`` or ``ensemble``) of training seed ``seed`` for each p in ``ps`` that has both.

    ``data_options`` (``skip_bad_images``, ``strict_keywords``) go to :func:`make_context`.

    A p without both checkpoints is listed in ``.missing``; no p at all is a
    :class:`~repro.errors.MissingStageError` that names the notebooks to run.
    """
    from repro.experiments.context import make_context
    from repro.models.checkpoints import load_checkpoint

    models: dict[str, nn.Module] = {}
    ckpts: dict[str, str] = {}
    missing: dict[int, list[str]] = {}
    shown: list[int] = []
    prepared = out_dir = None
    for p in ps:
        ctx = make_context(profile, p=int(p), seed=seed, data_root=data_root, results_dir=results_dir,
                           **(data_options or {}))
        prepared, out_dir = ctx.prepared, ctx.results_dir
        want = {f"M1 p={p}": ctx.checkpoint_path("m1", MAIN), f"M3 p={p}": ctx.checkpoint_path("m3", m3)}
        absent = [str(path) for path in want.values() if not path.exists()]
        if absent:
            missing[int(p)] = [project_relative(a) for a in absent]
            continue
        for label, path in want.items():
            model, payload = load_checkpoint(path, map_location=ctx.device)
            if payload.get("split_hash") != prepared.split_hash or list(payload["coarse_classes"]) != list(
                    prepared.coarse_classes) or list(payload["fine_classes"]) != list(prepared.fine_classes):
                name = getattr(profile, "name", profile)
                raise ConfigError(f"checkpoint {path} was trained on another split or label set than profile "
                                  f"{name!r} uses now; retrain it (notebooks 01-03 for p={p})")
            models[label] = model.to(ctx.device).eval()
            ckpts[label] = project_relative(path)
        shown.append(int(p))
    if not models:
        raise MissingStageError(
            f"no p in {list(ps)} has both the M1{{T1,T2,T3}} and the M3 ({m3}) checkpoint for profile={profile} "
            f"seed={seed} (looked for {'; '.join(f for fs in missing.values() for f in fs)}); run notebooks "
            f"01_m1_teachers, 02_m2_distill and 03_m3_unlabeled for these p first "
            f"(`python -m repro sweep --profile {profile} --notebooks 01 02 03 --p {' '.join(map(str, ps))} "
            f"--seeds {seed}`)")
    return CamModels(prepared, models, ckpts, shown, out_dir, missing)


@dataclass
class Panels:
    """Everything a Grad-CAM grid shows: rows = images, columns = models.

    ``cams[task]`` is ``[R, C, H, W]`` (NaN where a model lacks the head),
    ``preds[r][c]`` the :func:`predictions` entry of image r under model c.
    """

    images: np.ndarray
    truth: list[dict[str, Any]]
    models: list[str]
    cams: dict[str, np.ndarray]
    preds: list[list[dict[str, Any]]]

    def table(self):
        """One row per (image, model): each task's prediction, correctness and (T3) BLEU."""
        import pandas as pd

        rows = []
        for r, tr in enumerate(self.truth):
            for c, label in enumerate(self.models):
                row: dict[str, Any] = {"image": tr.get("image", r), "true_T1": tr.get("coarse"), "model": label}
                for t, res in self.preds[r][c].items():
                    row[CODE_OF[t]] = res["pred"]
                    row[f"{CODE_OF[t]}_correct"] = res["correct"]
                    if t == "caption":
                        row["T3_bleu"] = res.get("bleu")
                rows.append(row)
        return pd.DataFrame(rows)


def build_panels(models: Mapping[str, nn.Module], images_uint8, meta, truth: Sequence[Mapping] | None = None,
                 tasks: Sequence[str] = TASKS, batch_size: int = 16) -> Panels:
    """Grad-CAM maps of every head in ``tasks`` and the predictions of every model on the same images."""
    images_uint8 = np.asarray(images_uint8)
    r, h, w = images_uint8.shape[:3]
    max_len = _meta(meta)[3]
    labels = list(models)
    cams = {t: np.full((r, len(labels), h, w), np.nan, np.float32) for t in tasks}
    per_model = []
    for c, label in enumerate(labels):
        model = models[label]
        for t in tasks:
            if t in model.tasks:
                cams[t][:, c] = cam_maps(model, images_uint8, t, batch_size=batch_size, max_len=max_len)
        per_model.append(predictions(model, images_uint8, meta, truth, max_len=max_len))
    preds = [[per_model[c][i] for c in range(len(labels))] for i in range(r)]
    truth = [dict(t) for t in truth] if truth is not None else [{} for _ in range(r)]
    return Panels(images_uint8, truth, labels, cams, preds)


def _lines(res: Mapping[str, Any] | None, task: str, width: int, truth: bool = False) -> list[tuple[str, str]]:
    """Text lines ``(text, colour)`` of one task under a panel (wrapped to at most two lines)."""
    code = CODE_OF[task]
    if res is None:
        return [(f"{code} — (no head)", COLORS[None])]
    if truth:
        text, color = f"{code} {res}", "black"
    else:
        extra = f" ({res['bleu']:.2f})" if task == "caption" and res.get("bleu") is not None else ""
        mark = MARKS[res["color"]]
        text, color = f"{code}{' ' + mark if mark else ''} {res['pred'] or '(empty)'}{extra}", COLORS[res["color"]]
    wrapped = textwrap.wrap(text, width=width, max_lines=2, placeholder="…", subsequent_indent="   ") or [text]
    return [(line, color) for line in wrapped]


def gradcam_figure(panels: Panels, task: str = "coarse", show_image: bool = True, title: str | None = None,
                   panel_in: float = 1.9, fontsize: float = 7.0, alpha: float = 0.45):
    """A grid like the paper's Fig. 5: one row per image, one column per model (plus the plain image first).

    Each model panel shows the fundus with the Grad-CAM of head ``task``
    (jet colour map, red = most important) and, below it, that model's T1, T2
    and T3 predictions coloured green / yellow / red (correct / partially
    correct / incorrect, ✓ ~ ✗ for colour-blind readers). A map that is zero
    everywhere (no location raises the score) is not overlaid but labelled
    "empty map". The first column holds the image without overlay and its true
    labels; the row title names the true T1 class and the image file.
    """
    import matplotlib.pyplot as plt

    if task not in panels.cams:
        raise ConfigError(f"no Grad-CAM maps for task {task!r} in these panels (have {list(panels.cams)})")
    rows, ncols = len(panels.images), len(panels.models) + int(show_image)
    width = max(12, int(panel_in * 72 / (fontsize * 0.56)))
    cells = []
    for r in range(rows):
        row = []
        if show_image:
            row.append([ln for t in TASKS for ln in _lines(panels.truth[r].get(t, "?"), t, width, truth=True)])
        for c in range(len(panels.models)):
            pr = panels.preds[r][c]
            row.append([ln for t in TASKS for ln in _lines(pr.get(t), t, width)])
        cells.append(row)
    line_in = fontsize * 1.3 / 72
    text_in = [max(len(cell) for cell in row) * line_in + 0.1 for row in cells]
    left, gap, top, head = 0.35, 0.1, 0.62, 0.22
    fig_w = left + ncols * panel_in + (ncols - 1) * gap + 0.1
    fig_h = top + sum(head + panel_in + t for t in text_in)
    fig = plt.figure(figsize=(fig_w, fig_h))
    y = fig_h - top
    for r in range(rows):
        y -= head + panel_in
        for c in range(ncols):
            x = left + c * (panel_in + gap)
            ax = fig.add_axes((x / fig_w, y / fig_h, panel_in / fig_w, panel_in / fig_h))
            ax.imshow(panels.images[r])
            m = c - int(show_image)
            if m >= 0:
                cam = panels.cams[task][r, m]
                if np.isfinite(cam).all() and cam.max() > 0:
                    ax.imshow(cam, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
                else:
                    note = "no such head" if not np.isfinite(cam).all() else "empty map\n(no positive evidence)"
                    ax.text(0.03, 0.97, note, transform=ax.transAxes, ha="left", va="top", color="white",
                            fontsize=fontsize, bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "lw": 0})
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("image, true labels" if m < 0 else panels.models[m], fontsize=fontsize + 2, pad=3,
                             parse_math=False)
            if c == 0:
                tr = panels.truth[r]
                ax.set_ylabel(f"{tr.get('coarse', '')}\n{tr.get('image', '')}", fontsize=fontsize + 1, labelpad=2,
                              parse_math=False)
            for k, (text, color) in enumerate(cells[r][c]):
                ax.annotate(text, xy=(0, 0), xycoords="axes fraction", xytext=(1, -3 - k * fontsize * 1.3),
                            textcoords="offset points", ha="left", va="top", fontsize=fontsize, color=color,
                            parse_math=False)  # keywords and captions are data: "$...$" is text, not math
        y -= text_in[r]
    code = CODE_OF[task]
    what = {"coarse": "the predicted T1 class's logit", "fine": "the predicted T2 class's logit",
            "caption": "the log-likelihood of the greedy T3 caption"}[task]
    fig.text(0.5, 1 - 0.12 / fig_h, title or f"Grad-CAM of the {code} head", ha="center", va="top",
             fontsize=fontsize + 4, weight="bold", parse_math=False)
    fig.text(0.5, 1 - 0.36 / fig_h,
             f"overlay: Grad-CAM of {what} (red = most important); text: predictions, "
             f"green ✓ correct · yellow ~ partially correct (0 < BLEU < 0.5) · red ✗ incorrect",
             ha="center", va="top", fontsize=fontsize, color="#333333", wrap=True)
    return fig


def default_figures_dir(results_root: Path | None = None) -> Path:
    """Where figures go: ``<results root>/figures``, the top-level ``figures/`` for the committed ``results/``
    (:func:`repro.paths.figures_dir`; ``$REPRO_FIGURES`` overrides)."""
    return figures_dir(results_root)


def save_figure(fig, path: str | os.PathLike, dpi: int = 90) -> Path:
    """Save ``fig`` as PNG at ``dpi`` (folders created; written under a temp name, then renamed)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return Path(path)
