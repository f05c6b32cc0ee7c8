"""Learned late fusion over pre-extracted logits of several modalities.

Single-label: every modality's logits become log-probabilities (so a user's RGB model,
JMRN and the BiGRU are on one scale) and the fused score is Σ_m w_m · log p_m with one
scalar weight per modality, fitted by cross-entropy on the training set. Multi-label:
sigmoid logits, one weight per modality and class, fitted by binary cross-entropy.
Full-batch L-BFGS from equal weights, so a fit is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from vpd_stream.errors import InputError


@dataclass
class Fusion:
    weights: np.ndarray  # (M,) per modality, or (M, C) per modality and class
    multilabel: bool = False

    def scores(self, logits: list[np.ndarray]) -> np.ndarray:
        x = _stack(logits, self.multilabel)
        w = torch.as_tensor(self.weights, dtype=torch.float32)
        return _fuse(x, w).numpy()

    def to_json(self) -> dict:
        return {"weights": np.asarray(self.weights).tolist(), "multilabel": self.multilabel}


def _stack(logits: list[np.ndarray], multilabel: bool) -> torch.Tensor:
    if not logits:
        raise InputError("fusion needs the logits of at least one modality")
    shapes = {np.shape(a) for a in logits}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise InputError(f"every modality's logits must be one (examples, classes) array of the same shape; got {sorted(shapes)}")
    x = torch.as_tensor(np.stack(logits), dtype=torch.float32)  # (M, N, C)
    if not torch.isfinite(x).all():
        raise InputError("modality logits contain NaN or infinite values; fix the model that produced them")
    return x if multilabel else x.log_softmax(-1)


def _fuse(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if w.ndim == 1:
        return torch.einsum("m,mnc->nc", w, x)
    return torch.einsum("mc,mnc->nc", w, x)


def fit_fusion(logits: list[np.ndarray], labels: np.ndarray, multilabel: bool = False,
               l2: float = 1e-3, iters: int = 100) -> Fusion:
    """labels: (N,) class indices, or (N, C) 0/1 for multi-label."""
    x = _stack(logits, multilabel)
    m, n, c = x.shape
    y = torch.as_tensor(np.asarray(labels))
    if len(y) != n:
        raise InputError(f"{len(y)} labels for {n} examples of logits")
    w = torch.full((m, c) if multilabel else (m,), 1.0 / m, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=0.5, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        fused = _fuse(x, w)
        if multilabel:
            loss = F.binary_cross_entropy_with_logits(fused, y.float())
        else:
            loss = F.cross_entropy(fused, y.long())
        loss = loss + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Fusion(w.detach().numpy().copy(), multilabel)
