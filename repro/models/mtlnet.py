"""The multi-task network (docs/design.md §3; paper §3 and supplement §1).

``MTLNet`` = a shared encoder (frozen trunk + trainable top, see
:mod:`repro.models.encoders`) and one head per task, with outputs as a dict keyed by
task (LibMTL style):

* ``coarse`` (T1) and ``fine`` (T2): :class:`MLPHead`, Linear(d, 512)-ReLU-Linear(512, C);
  with ``subclasses = n > 1`` the T1 head has n sub-logits per class, returned under
  ``names.SUBCLASS_OUTPUT``, and its class logit is their logsumexp (:func:`class_logits`);
* ``caption`` (T3): :class:`CaptionDecoder`, a single-layer LSTM (or GRU, as in
  the authors' code), embedding 256, hidden 512, initial state projected from
  the image features, teacher forcing during training, greedy decoding to EOS.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from repro.errors import ConfigError
from repro.models.encoders import build_encoder, parse_trainable, split_encoder, tap_dim
from repro.names import EOS, PAD, SOS, SUBCLASS_OUTPUT, TASKS


def class_logits(sub_logits: torch.Tensor, n: int) -> torch.Tensor:
    """Class logits ``(B, C)`` of sub-logits ``(B, C·n)`` (class-major: sub-class k of class c at ``c·n + k``):
    ``z_c = log Σ_k exp(z_{c,k})``, so that ``softmax(z)_c = Σ_k softmax(z_sub)_{c,k}``."""
    if sub_logits.shape[-1] % int(n):
        raise ConfigError(f"{sub_logits.shape[-1]} sub-logits do not split into groups of n={n}")
    return sub_logits.unflatten(-1, (-1, int(n))).logsumexp(-1)


class MLPHead(nn.Module):
    """T1/T2 classifier: Linear(d, hidden) - ReLU - Linear(hidden, C) (the authors' head, hidden = 512)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class CaptionDecoder(nn.Module):
    """T3 decoder: one recurrent layer over word embeddings, initial state from the image features.

    Initial state: ``h0 = W_h f + b_h`` (as the authors' ``Linear(2048, 512)``);
    for the LSTM the cell state has a projection of its own, ``c0 = W_c f + b_c``.
    Step 0 reads SOS; step ``i > 0`` reads the true token ``captions[:, i-1]``
    with probability ``teacher_forcing`` — one draw per step for the whole
    batch, from torch's global RNG, as in the authors' code — and otherwise the
    decoder's own argmax at step ``i-1``. In eval mode the true prefix is
    always used (teacher-forced logits, needed for caption distillation).
    Token ids: PAD = 0, SOS = 1, EOS = 2, UNK = 3.
    """

    def __init__(self, feat_dim: int, vocab_size: int, embed: int = 256, hidden: int = 512,
                 cell: str = "lstm", dropout: float = 0.1):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ConfigError(f"decoder cell {cell!r} is not allowed; use 'lstm' or 'gru'")
        if vocab_size <= EOS:
            raise ConfigError(f"vocab_size={vocab_size} is too small: ids 0..3 are PAD, SOS, EOS, UNK")
        self.cell_type = cell
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.init_h = nn.Linear(feat_dim, hidden)
        self.init_c = nn.Linear(feat_dim, hidden) if cell == "lstm" else None
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(embed, hidden, num_layers=1, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def init_state(self, features: torch.Tensor):
        h = self.init_h(features).unsqueeze(0)
        if self.init_c is None:
            return h
        return h, self.init_c(features).unsqueeze(0)

    def _run(self, tokens: torch.Tensor, state):
        """Logits ``(B, L, V)`` for input tokens ``(B, L)`` and the state after them."""
        y, state = self.rnn(self.drop(self.embed(tokens)), state)
        return self.out(y), state

    def step(self, tokens: torch.Tensor, state):
        """One decoding step: input tokens ``(B,)`` -> ``(logits (B, V), new state)`` (for custom decoding loops)."""
        logits, state = self._run(tokens.reshape(-1, 1), state)
        return logits[:, 0], state

    def forward(self, features: torch.Tensor, captions: torch.Tensor,
                teacher_forcing: float = 0.5) -> torch.Tensor:
        """Logits ``(B, T, V)`` for target captions ``(B, T)``."""
        b, t = captions.shape
        sos = torch.full((b, 1), SOS, dtype=torch.long, device=captions.device)
        inputs = torch.cat([sos, captions[:, :-1].long()], dim=1)
        state = self.init_state(features)
        if not self.training or t <= 1:
            return self._run(inputs, state)[0]
        use_true = (torch.rand(t - 1) < float(teacher_forcing)).tolist()
        if all(use_true):
            return self._run(inputs, state)[0]
        # segments: each starts at step 0 or at a step fed with the own prediction, then runs on true tokens
        starts = [0] + [i for i in range(1, t) if not use_true[i - 1]]
        ends = starts[1:] + [t]
        chunks: list[torch.Tensor] = []
        for s, e in zip(starts, ends):
            seg = inputs[:, s:e]
            if s > 0:
                seg = torch.cat([chunks[-1][:, -1].argmax(-1, keepdim=True), seg[:, 1:]], dim=1)
            logits, state = self._run(seg, state)
            chunks.append(logits)
        return torch.cat(chunks, dim=1)

    def greedy(self, features: torch.Tensor, max_len: int = 15) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding: ``(ids (B, max_len), logits (B, max_len, V))``.

        ``ids`` include each sequence's EOS and are PAD after it. Decoding stops
        as soon as every sequence has produced EOS; logits of the steps not run
        are zero, and logits after a sequence's EOS carry no meaning (mask them
        with ``ids != PAD``).
        """
        b = features.shape[0]
        ids = torch.full((b, max_len), PAD, dtype=torch.long, device=features.device)
        logits = features.new_zeros((b, max_len, self.vocab_size))
        state = self.init_state(features)
        tok = torch.full((b,), SOS, dtype=torch.long, device=features.device)
        done = torch.zeros(b, dtype=torch.bool, device=features.device)
        for i in range(max_len):
            step, state = self.step(tok, state)
            logits[:, i] = step
            tok = step.argmax(-1)
            ids[:, i] = torch.where(done, torch.full_like(tok, PAD), tok)
            done = done | (tok == EOS)
            if bool(done.all()):
                break
        return ids, logits


class Neck(nn.Module):
    """The shared trainable part on tapped features: BN - Dropout - Linear(d, h) - BN - ReLU - Dropout.

    The first BatchNorm (no affine) standardises the mean/max-pooled features, whose scales
    differ by stage; every task head reads the neck's ``h``-vector, so the tasks share it.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.5, input_dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm1d(in_dim, affine=False), nn.Dropout(input_dropout), nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MTLNet(nn.Module):
    """Shared encoder + one head per task; ``forward`` returns a dict keyed by task (docs/design.md §3).

    ``trainable="all"`` fine-tunes the whole encoder (the paper); ``trainable=k``
    freezes all but the last k encoder stages, whose input can then be
    precomputed once (:func:`repro.models.featcache.trunk_feature_cache`) and fed with
    ``from_trunk=True``. With ``taps`` (and ``trainable=0``) the whole encoder is frozen and
    read at several stages (mean+max pooled), and a shared :class:`Neck` of width
    ``neck_hidden`` is the trainable part every task reads (the ``quick`` profile).
    """

    def __init__(self, encoder: str = "efficientnet_lite0", tasks: Iterable[str] = TASKS,
                 num_classes: dict[str, int] | None = None, vocab_size: int | None = None,
                 trainable: str | int = "all", pretrained: bool = True, weights_path: str | None = None,
                 decoder: str = "lstm", teacher_forcing: float = 0.5, embed: int = 256, hidden: int = 512,
                 head_hidden: int = 512, dropout: float = 0.1, taps: Iterable[str] | None = None,
                 neck_hidden: int | None = None, neck_dropout: float = 0.5, input_dropout: float = 0.2,
                 subclasses: int = 1):
        super().__init__()
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in TASKS]
        if not tasks or unknown or len(set(tasks)) != len(tasks):
            raise ConfigError(f"tasks={list(tasks)} must be a non-empty subset of {list(TASKS)} without repeats")
        self.tasks = tuple(t for t in TASKS if t in tasks)
        num_classes = dict(num_classes or {})
        for t in ("coarse", "fine"):
            if t in self.tasks and int(num_classes.get(t, 0)) < 2:
                raise ConfigError(f"task {t!r} needs num_classes[{t!r}] >= 2, got {num_classes.get(t)!r}")
        if "caption" in self.tasks and not vocab_size:
            raise ConfigError("task 'caption' needs vocab_size (the caption vocabulary size incl. PAD/SOS/EOS/UNK)")
        trainable = parse_trainable(trainable)
        self.subclasses = int(subclasses)
        if self.subclasses < 1 or self.subclasses != subclasses:
            raise ConfigError(f"subclasses={subclasses!r} must be an integer >= 1 (sub-logits per T1 class)")

        spec = build_encoder(encoder, pretrained=pretrained, weights_path=weights_path)
        taps = tuple(taps) if taps else None
        if (taps is None) != (neck_hidden is None):
            raise ConfigError(f"taps={taps} and neck_hidden={neck_hidden} go together: give both or neither")
        self.trunk, self.top = split_encoder(spec, trainable, taps)
        self.encoder_spec = spec.describe()
        self.trainable = trainable
        self.teacher_forcing = float(teacher_forcing)
        d = spec.out_dim
        self.neck: nn.Module = nn.Identity()
        if taps:
            self.neck = Neck(tap_dim(spec, taps), int(neck_hidden), neck_dropout, input_dropout)
            d = int(neck_hidden)
        heads: dict[str, nn.Module] = {}
        for t in ("coarse", "fine"):
            if t in self.tasks:
                k = self.subclasses if t == "coarse" else 1
                heads[t] = MLPHead(d, int(num_classes[t]) * k, head_hidden)
        if "caption" in self.tasks:
            heads["caption"] = CaptionDecoder(d, int(vocab_size), embed, hidden, decoder, dropout)
        self.heads = nn.ModuleDict(heads)
        self.config: dict[str, Any] = {
            "encoder": encoder, "tasks": list(self.tasks),
            "num_classes": {t: int(num_classes[t]) for t in ("coarse", "fine") if t in self.tasks},
            "vocab_size": int(vocab_size) if "caption" in self.tasks else None,
            "trainable": trainable, "pretrained": bool(pretrained),
            "weights_path": None if weights_path is None else str(weights_path),
            "decoder": decoder, "teacher_forcing": float(teacher_forcing), "embed": embed, "hidden": hidden,
            "head_hidden": head_hidden, "dropout": dropout, "encoder_weights": spec.weights,
            "taps": None if taps is None else list(taps), "neck_hidden": neck_hidden,
            "neck_dropout": neck_dropout, "input_dropout": input_dropout, "subclasses": self.subclasses,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "MTLNet":
        """Rebuild the architecture of ``cfg`` (= ``model.config``) without loading any pretrained weights.

        The caller loads the saved state dict next; ``config["encoder_weights"]``
        keeps the provenance of the original encoder weights.
        """
        kw = dict(cfg)
        weights = kw.pop("encoder_weights", None)
        kw.update(pretrained=False, weights_path=None)
        model = cls(**kw)
        model.config.update(pretrained=bool(cfg.get("pretrained", True)), weights_path=cfg.get("weights_path"),
                            encoder_weights=weights)
        return model

    @property
    def has_trunk(self) -> bool:
        return len(self.trunk) > 0

    def features(self, x: torch.Tensor, from_trunk: bool = False) -> torch.Tensor:
        """The shared vector every head reads (trunk, top, neck)."""
        return self._features(x, from_trunk)

    def _features(self, x: torch.Tensor, from_trunk: bool) -> torch.Tensor:
        if not from_trunk:
            x = self.trunk(x)
        elif x.dtype == torch.float16 and not torch.is_autocast_enabled(x.device.type):
            x = x.float()
        return self.neck(self.top(x))

    @property
    def decoder(self) -> CaptionDecoder:
        """The caption head (T3)."""
        if "caption" not in self.heads:
            raise ConfigError(f"this model has no caption head (tasks {list(self.tasks)})")
        return self.heads["caption"]

    def caption_init(self, x: torch.Tensor, from_trunk: bool = False):
        """The caption decoder's initial state for inputs ``x`` (start of a custom loop with ``decoder.step``)."""
        return self.decoder.init_state(self._features(x, from_trunk))

    @torch.no_grad()
    def trunk_features(self, images: torch.Tensor) -> torch.Tensor:
        """Output of the frozen trunk for a normalised image batch (no gradient)."""
        return self.trunk(images)

    def forward(self, x: torch.Tensor, captions: torch.Tensor | None = None,
                from_trunk: bool = False) -> dict[str, torch.Tensor]:
        """Task outputs: ``coarse``/``fine`` logits ``(B, C)``; ``caption`` logits ``(B, T, V)`` when ``captions`` are given.

        ``x`` is a normalised image batch, or with ``from_trunk=True`` the trunk's output for it.
        A subclass T1 head (``subclasses > 1``) adds its sub-logits ``(B, C·n)`` under ``SUBCLASS_OUTPUT``.
        """
        f = self._features(x, from_trunk)
        out: dict[str, torch.Tensor] = {}
        for t, head in self.heads.items():
            if t == "caption":
                if captions is not None:
                    out[t] = head(f, captions, self.teacher_forcing)
            elif t == "coarse" and self.subclasses > 1:
                out[SUBCLASS_OUTPUT] = head(f)
                out[t] = class_logits(out[SUBCLASS_OUTPUT], self.subclasses)
            else:
                out[t] = head(f)
        return out

    def generate(self, x: torch.Tensor, from_trunk: bool = False, max_len: int = 15) -> torch.Tensor:
        """Greedy caption ids ``(B, max_len)``, PAD after EOS."""
        return self.decoder.greedy(self._features(x, from_trunk), max_len)[0]
