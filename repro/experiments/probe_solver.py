"""The LR probe's logistic regression solved with torch (issue 20: the probe fits were 527 s of the quick sweep).

:class:`TorchLogistic` minimises the objective of scikit-learn's ``LogisticRegression(solver="lbfgs")``
(multinomial for three or more classes, one logit for two), with L-BFGS (history 10, strong Wolfe line
search, stop when the largest gradient entry is below ``tol``: scipy's ``gtol`` that scikit-learn passes)::

    min_{W, b}  (1 / S) Σ_i s_i · CE(W x_i + b, y_i)  +  ||W||² / (2 C S),      S = Σ_i s_i

with ``s_i`` the class weight of ``y_i`` (``"balanced"``: ``n / (K · n_{y_i})``, else 1) and the intercept
``b`` not penalised. It has the attributes the probe reads of a scikit-learn classifier (``classes_``,
``coef_``, ``intercept_``, :meth:`predict_proba`), and a ``coef_``/``intercept_`` set before :meth:`fit`
is its starting point (the warm start of :func:`repro.experiments.baselines.fit_probe`).
"""

from __future__ import annotations

import numpy as np

#: what stops L-BFGS besides ``tol``: a change of the loss or of the step below this
TOLERANCE_CHANGE = 1e-12
HISTORY = 10


def class_weights(y: np.ndarray, n_classes: int, class_weight: str | None) -> np.ndarray:
    """Per-sample weights: ``"balanced"`` gives ``n / (K · count of the sample's class)`` as scikit-learn
    does (``y`` holds indices 0..K-1 of the classes present), ``None`` gives ones."""
    if class_weight is None:
        return np.ones(len(y), dtype=np.float64)
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return (len(y) / (n_classes * counts))[y]


class TorchLogistic:
    """L2-regularised logistic regression, scikit-learn's objective, solved by torch's L-BFGS."""

    def __init__(self, C: float = 1.0, class_weight: str | None = None, max_iter: int = 100, tol: float = 1e-4,
                 dtype: str = "float64"):
        self.C, self.class_weight, self.max_iter, self.tol, self.dtype = float(C), class_weight, int(max_iter), tol, dtype
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None
        self.classes_: np.ndarray | None = None
        self.n_iter_ = 0

    def _logits(self, x, w, b):
        import torch

        z = x @ w.T + b
        return torch.cat([torch.zeros_like(z), z], dim=1) if w.shape[0] == 1 else z

    def fit(self, x: np.ndarray, y: np.ndarray) -> "TorchLogistic":
        import torch
        import torch.nn.functional as F

        classes, yi = np.unique(np.asarray(y), return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"the probe needs at least 2 classes in its training labels, got {classes.tolist()}")
        k = 1 if len(classes) == 2 else len(classes)
        dt = getattr(torch, self.dtype)
        xt = torch.as_tensor(np.asarray(x), dtype=dt)
        yt = torch.as_tensor(yi, dtype=torch.long)
        s = torch.as_tensor(class_weights(yi, len(classes), self.class_weight), dtype=dt)
        start = self.coef_ is not None and self.coef_.shape == (k, xt.shape[1]) and np.array_equal(self.classes_, classes)
        w = torch.tensor(self.coef_ if start else np.zeros((k, xt.shape[1])), dtype=dt, requires_grad=True)
        b = torch.tensor(self.intercept_ if start else np.zeros(k), dtype=dt, requires_grad=True)
        total = s.sum()
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.max_iter, history_size=HISTORY,
                                tolerance_grad=self.tol, tolerance_change=TOLERANCE_CHANGE,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            ce = F.cross_entropy(self._logits(xt, w, b), yt, reduction="none")
            loss = (s * ce).sum() / total + (w * w).sum() / (2.0 * self.C * total)
            loss.backward()
            return loss

        opt.step(closure)
        self.n_iter_ = int(opt.state[opt._params[0]].get("n_iter", 0))
        self.classes_ = classes
        self.coef_, self.intercept_ = w.detach().numpy().copy(), b.detach().numpy().copy()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        import torch

        dt = getattr(torch, self.dtype)
        with torch.no_grad():
            z = self._logits(torch.as_tensor(np.asarray(x), dtype=dt), torch.as_tensor(self.coef_, dtype=dt),
                             torch.as_tensor(self.intercept_, dtype=dt))
            return torch.softmax(z, dim=1).numpy()
