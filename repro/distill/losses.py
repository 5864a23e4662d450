"""Loss functions of the three training stages (paper Eq. 1-3, docs/design.md §4).

Pure functions, no state: each stage loss returns a dict of named terms
(``"ce/<task>"``, ``"kd/<task>"``, ``"total"``) that the trainer logs and
back-propagates through ``"total"`` (style of mdistiller's ``KD.py``).

Notation. ``s`` are student logits, ``t`` teacher logits, ``tau`` the
temperature, ``p^tau = softmax(t / tau)`` and ``q^tau = softmax(s / tau)``
over the last dimension (classes or vocabulary)::

    KD(s, t; tau) = tau^2 * KL(p^tau || q^tau)
                  = tau^2 * sum_c p_c^tau * (log p_c^tau - log q_c^tau)

Reductions over "examples" (a row of a (B, C) tensor, or a valid (b, i)
decoding step of a (B, T, V) caption tensor):

* ``batchmean``: sum over classes, mean over the N examples -- the true KL
  per example (docs/design.md §4 default).
* ``mean``: sum over everything divided by N * C, the authors'
  ``KLDivLoss(reduction='mean')``; equal to ``batchmean / C``.

Tasks: ``coarse`` (B, C1) and ``fine`` (B, C2) logits with (B,) int64
targets; ``caption`` (B, T, V) logits where step i predicts
``targets["caption"][:, i]`` (PAD = 0 ignored, EOS = 2 ends a caption).
Teacher outputs are a dict ``task -> list of logits`` (one entry per teacher
that learned the task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from repro.errors import ConfigError
from repro.names import EOS, PAD, SUBCLASS_OUTPUT

REDUCTIONS = ("batchmean", "mean")


AGGREGATIONS = ("mean_prob", "sum_kl")


__all__ = [
    "PAD",
    "EOS",
    "REDUCTIONS",
    "AGGREGATIONS",
    "caption_mask",
    "kd_loss",
    "kd_loss_from_probs",
    "ensemble_probs",
    "ensemble_kd",
    "task_ce",
    "m1_loss",
    "m2_loss",
    "m3_loss",
    "batch_standardize",
    "subclass_aux_loss",
    "subclass_teacher_loss",
    "subclass_kd_loss",
]


def caption_mask(ids: torch.Tensor, eos: int = EOS, pad: int = PAD) -> torch.Tensor:
    """Valid decoding steps of token ids (B, T): True up to and including the first EOS.

    Positions after the first EOS and PAD positions are False; a row without
    EOS is valid at all its non-PAD positions.
    """
    if ids.dim() != 2:
        raise ValueError(f"caption ids must be (B, T), got shape {tuple(ids.shape)}")
    is_eos = ids == eos
    eos_before = (torch.cumsum(is_eos.long(), dim=1) - is_eos.long()) > 0
    return (~eos_before) & (ids != pad)


_caption_mask_fn = caption_mask  # the stage losses take a parameter of the same name


def _check_temperature(temperature: float) -> float:
    tau = float(temperature)
    if not tau > 0:
        raise ConfigError(f"KD temperature must be > 0, got {temperature!r}")
    return tau


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def _reduce_kl(kl: torch.Tensor, num_classes: int, reduction: str,
               mask: torch.Tensor | None) -> torch.Tensor:
    """Reduce per-example KL (any leading shape) with an optional boolean mask."""
    _check_choice(reduction, REDUCTIONS, "KD reduction")
    if mask is not None:
        mask = mask.to(device=kl.device, dtype=torch.bool)
        if mask.shape != kl.shape:
            raise ValueError(
                f"KD mask shape {tuple(mask.shape)} does not match the logits' "
                f"leading shape {tuple(kl.shape)}")
        kl = kl.masked_fill(~mask, 0.0)
        n = mask.sum()
    else:
        n = torch.tensor(kl.numel(), device=kl.device)
    denom = n.clamp(min=1).to(kl.dtype)
    if reduction == "mean":
        denom = denom * num_classes
    return kl.sum() / denom


def kd_loss_from_probs(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                       temperature: float, reduction: str = "batchmean",
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """``tau^2 * KL(p || softmax(s / tau))`` for an already tempered teacher distribution p.

    ``p`` (same shape as ``s``) is detached; ``0 * log 0 = 0``. See the module
    docstring for ``reduction`` and ``mask`` (shape = all dims but the last).
    """
    tau = _check_temperature(temperature)
    if teacher_probs.shape != student_logits.shape:
        raise ValueError(f"teacher shape {tuple(teacher_probs.shape)} != student shape "
                         f"{tuple(student_logits.shape)}")
    p = teacher_probs.detach().to(student_logits.dtype)
    log_q = F.log_softmax(student_logits / tau, dim=-1)
    kl = (torch.xlogy(p, p) - p * log_q).sum(dim=-1)
    return tau * tau * _reduce_kl(kl, student_logits.shape[-1], reduction, mask)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float, reduction: str = "batchmean",
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Hinton KD term ``tau^2 * KL(softmax(t/tau) || softmax(s/tau))`` over the last dim.

    ``batchmean`` = ``tau^2 / N * sum_n sum_c p_nc (log p_nc - log q_nc)``, N = number
    of (valid) examples; ``mean`` divides by ``N * C`` instead (authors' code).
    Computed with ``log_softmax`` for both sides; the teacher is detached.
    """
    tau = _check_temperature(temperature)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher shape {tuple(teacher_logits.shape)} != student shape "
                         f"{tuple(student_logits.shape)}")
    log_p = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / tau, dim=-1)
    log_q = F.log_softmax(student_logits / tau, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return tau * tau * _reduce_kl(kl, student_logits.shape[-1], reduction, mask)


def _as_list(teacher_logits) -> list[torch.Tensor]:
    if isinstance(teacher_logits, torch.Tensor):
        return [teacher_logits]
    teachers = list(teacher_logits)
    if not teachers:
        raise ValueError("the teacher ensemble for a task is empty")
    return teachers


def ensemble_probs(teacher_logits_list, temperature: float) -> torch.Tensor:
    """``mean_prob`` aggregation: ``p^tau = 1/J * sum_j softmax(t_j / tau)`` (detached)."""
    tau = _check_temperature(temperature)
    teachers = _as_list(teacher_logits_list)
    probs = [F.softmax(t.detach() / tau, dim=-1) for t in teachers]
    return torch.stack(probs, dim=0).mean(dim=0)


def ensemble_kd(student_logits: torch.Tensor, teacher_logits_list, temperature: float,
                aggregation: str = "mean_prob", reduction: str = "batchmean",
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """KD from J teachers of one task (docs/design.md §4 "Ensemble").

    ``mean_prob``: ``tau^2 * KL(1/J sum_j p_j^tau || q^tau)`` (default);
    ``sum_kl``: ``sum_j tau^2 * KL(p_j^tau || q^tau)`` (the authors' code).
    Both equal :func:`kd_loss` for a single teacher.
    """
    _check_choice(aggregation, AGGREGATIONS, "teacher aggregation")
    teachers = _as_list(teacher_logits_list)
    if aggregation == "sum_kl":
        terms = [kd_loss(student_logits, t, temperature, reduction, mask) for t in teachers]
        return torch.stack(terms).sum()
    if len(teachers) == 1:
        return kd_loss(student_logits, teachers[0], temperature, reduction, mask)
    p = ensemble_probs(teachers, temperature)
    return kd_loss_from_probs(student_logits, p, temperature, reduction, mask)


def class_balance_weights(counts, power: float = 1.0) -> torch.Tensor:
    """Inverse-frequency class weights for a class-balanced cross-entropy.

    ``w_c = (N / (K * n_c)) ** power`` for K classes with ``n_c`` training images each
    (N = sum_c n_c; an absent class counts as 1 image). ``power = 1`` weights every class
    equally in expectation (the loss then targets balanced accuracy), ``power = 0`` is plain
    CE (all weights 1); values in between trade accuracy for balanced accuracy.
    """
    power = float(power)
    if power < 0:
        raise ConfigError(f"class-balance power must be >= 0, got {power!r}")
    n = torch.as_tensor(counts, dtype=torch.float32).clamp(min=1.0)
    if n.dim() != 1 or len(n) < 2:
        raise ConfigError(f"class counts must be a vector of >= 2 classes, got shape {tuple(n.shape)}")
    return (n.sum() / (len(n) * n)) ** power


def task_ce(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
            task: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of one task.

    ``coarse``/``fine``: mean CE over the batch; with class weights ``w``
    (:func:`class_balance_weights`) the weighted mean ``sum_b w_{y_b} CE_b / sum_b w_{y_b}``. ``caption``: token-level CE
    ``1/|M| * sum_{(b,i) in M} -log softmax(s_bi)[y_bi]`` over the non-PAD
    targets M (0 when a batch has no token).
    """
    logits, target = outputs[task], targets[task]
    if task == "caption":
        if logits.dim() != 3 or target.shape != logits.shape[:2]:
            raise ValueError(f"caption logits (B, T, V) and targets (B, T) expected, got "
                             f"{tuple(logits.shape)} and {tuple(target.shape)}")
        flat_t = target.reshape(-1).long()
        if not bool((flat_t != PAD).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat_t,
                               ignore_index=PAD)
    if weight is not None:
        weight = weight.to(device=logits.device, dtype=logits.dtype)
    return F.cross_entropy(logits, target.long(), weight=weight)


def _check_tasks(tasks) -> list[str]:
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    if not tasks:
        raise ConfigError("a stage loss needs at least one task")
    return tasks


def _lambda(lambdas: Mapping[str, float] | None, task: str) -> float:
    return 1.0 if lambdas is None else float(lambdas.get(task, 1.0))


def _task_kd(outputs, teacher, task, taus, reduction, aggregation, mask):
    if task not in teacher:
        raise ValueError(f"no teacher output for task {task!r}; teacher has {sorted(teacher)}")
    if task not in taus:
        raise ConfigError(f"no KD temperature for task {task!r}; taus has {sorted(taus)}")
    return ensemble_kd(outputs[task], teacher[task], taus[task], aggregation, reduction,
                       mask if task == "caption" else None)


def m1_loss(outputs, targets, tasks, lambdas=None, class_weights=None) -> dict[str, torch.Tensor]:
    """M1 (paper Eq. 1): ``L = sum_t lambda_t * CE(s_t, y_t)`` (lambda_t = 1 by default).

    ``class_weights``: task -> per-class weights of that task's CE (class-balanced T1 loss).
    """
    tasks = _check_tasks(tasks)
    terms: dict[str, torch.Tensor] = {}
    total = 0.0
    for task in tasks:
        terms[f"ce/{task}"] = task_ce(outputs, targets, task, (class_weights or {}).get(task))
        total = total + _lambda(lambdas, task) * terms[f"ce/{task}"]
    terms["total"] = total
    return terms


def m2_loss(outputs, targets, teacher, tasks, taus, alpha=0.95, lambdas=None,
            reduction="batchmean", aggregation="mean_prob",
            caption_mask=None, class_weights=None) -> dict[str, torch.Tensor]:
    """M2 (paper Eq. 2, docs/design.md §4) on labeled data.

    ``L = sum_t lambda_t * [(1 - alpha) * CE_t + alpha * KD_t]`` with
    ``KD_t = tau_t^2 * KL(p_t^tau || q_t^tau)`` (:func:`ensemble_kd`, teacher =
    one model or an ensemble); ``CE_t`` is class-weighted where ``class_weights`` has ``t``.
    Caption KD runs over ``caption_mask`` (B, T);
    when it is None, over the steps up to and including EOS of the true caption.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"KD weight alpha must lie in [0, 1], got {alpha!r}")
    tasks = _check_tasks(tasks)
    if caption_mask is None and "caption" in tasks:
        caption_mask = _caption_mask_fn(targets["caption"])
    terms: dict[str, torch.Tensor] = {}
    total = 0.0
    for task in tasks:
        ce = task_ce(outputs, targets, task, (class_weights or {}).get(task))
        kd = _task_kd(outputs, teacher, task, taus, reduction, aggregation, caption_mask)
        terms[f"ce/{task}"], terms[f"kd/{task}"] = ce, kd
        total = total + _lambda(lambdas, task) * ((1.0 - alpha) * ce + alpha * kd)
    terms["total"] = total
    return terms


def m3_loss(outputs, teacher, tasks, taus, lambdas=None, reduction="batchmean",
            aggregation="mean_prob", caption_mask=None) -> dict[str, torch.Tensor]:
    """M3 (paper Eq. 3) on unlabeled data: ``L = sum_t lambda_t * tau_t^2 * KL(p_t^tau || q_t^tau)``.

    Never reads labels. ``caption_mask`` (B, T) selects the decoding steps of
    the teacher-forced prefix (the main teacher's greedy caption up to EOS);
    when it is None every step counts.
    """
    tasks = _check_tasks(tasks)
    terms: dict[str, torch.Tensor] = {}
    total = 0.0
    for task in tasks:
        kd = _task_kd(outputs, teacher, task, taus, reduction, aggregation, caption_mask)
        terms[f"kd/{task}"] = kd
        total = total + _lambda(lambdas, task) * kd
    terms["total"] = total
    return terms


# ---------------------------------------------------------------- subclass distillation (Müller et al. 2020)
# A subclass T1 head gives sub-logits z (B, C·n) under ``SUBCLASS_OUTPUT``; its class logit is
# ``logsumexp_k z_{c,k}`` (``outputs["coarse"]``, :func:`repro.models.mtlnet.class_logits`).


def batch_standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``v = (z - mean_b z) / sqrt(var_b z + eps)`` per column over the batch (BatchNorm without affine)."""
    if z.dim() != 2:
        raise ValueError(f"sub-logits must be (B, K), got shape {tuple(z.shape)}")
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def subclass_aux_loss(sub_logits: torch.Tensor, temperature: float = 1.0, eps: float = 1e-5) -> torch.Tensor:
    """The auxiliary loss that spreads the subclasses (Müller, Kornblith & Hinton 2020).

    ``v_i`` = batch-standardised sub-logit vector of example i (:func:`batch_standardize`)::

        L_aux = -(1/B) * sum_i log softmax_j(v_i . v_j / T_aux)[i]

    Each example's vector must be closer to itself than to the others: different examples are pushed
    onto different subclasses. 0 for a batch of fewer than 2 examples.
    """
    tau = _check_temperature(temperature)
    if sub_logits.shape[0] < 2:
        return sub_logits.sum() * 0.0
    v = batch_standardize(sub_logits, eps)
    sim = v @ v.T / tau
    return F.cross_entropy(sim, torch.arange(len(v), device=v.device))


def subclass_teacher_loss(outputs, targets, tasks, beta: float = 1.0, aux_temperature: float = 1.0,
                          lambdas=None, class_weights=None) -> dict[str, torch.Tensor]:
    """M1 with a subclass T1 head: ``L = sum_t lambda_t CE_t + beta * L_aux(z_sub)``.

    ``CE_coarse`` is on the class logits ``logsumexp_k z_{c,k}``; ``L_aux`` is
    :func:`subclass_aux_loss` of ``outputs[SUBCLASS_OUTPUT]``. Terms: those of :func:`m1_loss` and ``aux/coarse``.
    """
    if float(beta) < 0:
        raise ConfigError(f"auxiliary loss weight beta must be >= 0, got {beta!r}")
    terms = m1_loss(outputs, targets, tasks, lambdas, class_weights)
    terms["aux/coarse"] = subclass_aux_loss(outputs[SUBCLASS_OUTPUT], aux_temperature)
    terms["total"] = terms["total"] + float(beta) * terms["aux/coarse"]
    return terms


def subclass_kd_loss(outputs, targets, teacher_sub, temperature: float, alpha: float = 0.5,
                     reduction: str = "batchmean", aggregation: str = "mean_prob",
                     class_weights=None) -> dict[str, torch.Tensor]:
    """Student of a subclass teacher on labeled T1 data::

        L = (1 - alpha) * CE(logsumexp_k s_{c,k}, y) + alpha * tau^2 * KL(softmax(t_sub / tau) || softmax(s_sub / tau))

    with the KL over all n·C sub-classes (:func:`ensemble_kd`; ``teacher_sub`` one tensor or a list).
    Terms ``ce/coarse``, ``kd/coarse``, ``total``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"KD weight alpha must lie in [0, 1], got {alpha!r}")
    ce = task_ce(outputs, targets, "coarse", (class_weights or {}).get("coarse"))
    kd = ensemble_kd(outputs[SUBCLASS_OUTPUT], teacher_sub, temperature, aggregation, reduction)
    return {"ce/coarse": ce, "kd/coarse": kd, "total": (1.0 - alpha) * ce + alpha * kd}
