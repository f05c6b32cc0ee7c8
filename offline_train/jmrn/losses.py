"""The supervised joint-contrastive loss and the warm-up ramp of its weight λ.

Per joint, the projections of two augmented views of every example are compared with a
supervised contrastive loss (Khosla et al. 2020) at temperature τ: for each anchor, the
positives are the other samples with the same label (for multi-label targets: sharing any
label); ``mode="instance"`` keeps only the anchor's other view as positive (the "only-aug"
ablation). The joint losses are averaged.
"""
from __future__ import annotations

import torch

MODES = ("none", "instance", "supervised")


def positive_mask(labels: torch.Tensor, views: int, mode: str = "supervised") -> torch.Tensor:
    """(N·views, N·views) bool: which pairs are positives (never an anchor with itself).

    ``labels`` is (N,) class indices or (N, C) multi-hot; the stacked order is view-major.
    """
    n = labels.shape[0]
    if mode == "instance":
        ids = torch.arange(n, device=labels.device)
        same = ids[:, None] == ids[None, :]
    elif labels.ndim == 1:
        same = labels[:, None] == labels[None, :]
    else:
        lab = labels.float()
        same = (lab @ lab.T) > 0
    mask = same.repeat(views, views)
    mask.fill_diagonal_(False)
    return mask


def supcon_loss(z: torch.Tensor, positives: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """z: (N, J, P) unit vectors (or (N, P)); positives: (N, N) bool. Mean over joints."""
    if z.ndim == 2:
        z = z[:, None]
    zj = z.transpose(0, 1)  # (J, N, P)
    sim = zj @ zj.transpose(1, 2) / tau  # (J, N, N)
    n = sim.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=-1, keepdim=True)
    pos = positives.to(z.device)
    count = pos.sum(-1)
    has = count > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(-1)[:, has] / count[has]
    return per_anchor.mean()


def ramp_weight(epoch: int, lam: float, warmup: int, ramp: int) -> float:
    """λ for an epoch (0-based): 0 during ``warmup`` epochs, then linear up to ``lam`` over ``ramp``."""
    if epoch < warmup:
        return 0.0
    if ramp <= 0:
        return lam
    return lam * min(1.0, (epoch - warmup + 1) / ramp)
