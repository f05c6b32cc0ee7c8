"""Train JMRN on aggregated heatmaps: cross-entropy plus the ramped joint-contrastive loss.

AdamW with a cosine schedule; two augmented views per example when the contrastive loss
is on (cross-entropy on both); the last epoch is kept (no validation pass: 2 shared CPU
cores). Flip test-time averaging at prediction.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from vpd_stream.models.jmrn import JMRN, JmrnConfig

from .augment import AugmentConfig, augment, flip_maps
from .losses import MODES, positive_mask, ramp_weight, supcon_loss


@dataclass
class TrainConfig:
    epochs: int = 10
    min_steps: int = 100  # small few-shot sets get more epochs, up to max_epochs
    max_epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    contrastive: str = "supervised"  # none | instance (only-aug ablation) | supervised
    lam: float = 0.5  # final weight of the contrastive loss
    tau: float = 0.1
    warmup_frac: float = 0.1  # λ = 0 for this fraction of the epochs, then ramps up ...
    ramp_frac: float = 0.2  # ... linearly over this fraction
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0

    def validate(self) -> None:
        if self.contrastive not in MODES:
            raise ValueError(f"contrastive must be one of {MODES}, got {self.contrastive!r}")


def num_epochs(n: int, cfg: TrainConfig) -> int:
    steps = max(1, n // cfg.batch_size)
    return min(cfg.max_epochs, max(cfg.epochs, math.ceil(cfg.min_steps / steps)))


def train_jmrn(maps: np.ndarray, labels: np.ndarray, model_cfg: JmrnConfig, cfg: TrainConfig,
               log: Callable[[str], None] | None = None) -> tuple[JMRN, dict]:
    """maps: (N, J, 3, H, W) float16/32; labels: (N,) ints. Returns the model (eval) and stats."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = JMRN(model_cfg)
    n = len(maps)
    epochs = num_epochs(n, cfg)
    steps_per_epoch = max(1, n // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_frac * epochs))
    ramp = max(1, int(round(cfg.ramp_frac * epochs)))
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    history = []
    start = time.monotonic()
    for epoch in range(epochs):
        model.train()
        lam = ramp_weight(epoch, cfg.lam, warmup, ramp) if cfg.contrastive != "none" else 0.0
        order = rng.permutation(n)
        totals = np.zeros(2)
        for s in range(steps_per_epoch):  # drop the ragged tail: BatchNorm and SupCon want full batches
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x = torch.from_numpy(np.asarray(maps[idx], dtype=np.float32))
            y = labels_t[idx]
            if cfg.contrastive == "none":
                logits = model(augment(x, cfg.augment, gen))
                ce, con = F.cross_entropy(logits, y), torch.zeros(())
            else:
                views = torch.cat([augment(x, cfg.augment, gen), augment(x, cfg.augment, gen)])
                logits, z, _ = model(views, return_projections=True)
                ce = F.cross_entropy(logits, y.repeat(2))
                con = supcon_loss(z, positive_mask(y, 2, cfg.contrastive), cfg.tau) if lam > 0 else torch.zeros(())
            loss = ce + lam * con
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            totals += (ce.item(), float(con.detach()))
        totals /= steps_per_epoch
        history.append({"epoch": epoch + 1, "ce": round(totals[0], 4), "contrastive": round(totals[1], 4), "lambda": lam})
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs} ce {totals[0]:.3f} con {totals[1]:.3f} λ {lam:.2f} ({time.monotonic() - start:.0f}s)")
    recalibrate_bn(model, maps, rng)
    model.eval()
    return model, {"epochs": epochs, "train": n, "history": history, "train_seconds": round(time.monotonic() - start, 1)}


@torch.no_grad()
def recalibrate_bn(model: JMRN, maps: np.ndarray, rng: np.random.Generator, examples: int = 512,
                   batch_size: int = 64) -> None:
    """Re-estimate every BatchNorm's statistics on un-augmented training maps with the final
    weights (short few-shot runs otherwise keep running stats from early, different weights)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the passes below
    model.train()
    idx = rng.permutation(len(maps))[:examples]
    for s in range(0, len(idx), batch_size):
        chunk = idx[s:s + batch_size]
        if len(chunk) > 1:
            model(torch.from_numpy(np.asarray(maps[chunk], dtype=np.float32)))
    model.eval()


@torch.no_grad()
def predict_logits(model: JMRN, maps: np.ndarray, flip_tta: bool = True, batch_size: int = 64) -> np.ndarray:
    """(N, classes) log-probabilities, averaged over the original and the mirrored view."""
    model.eval()
    out = []
    for s in range(0, len(maps), batch_size):
        x = torch.from_numpy(np.asarray(maps[s:s + batch_size], dtype=np.float32))
        p = model(x).log_softmax(-1)
        if flip_tta:
            p = 0.5 * (p + model(flip_maps(x)).log_softmax(-1))
        out.append(p.numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.num_classes), np.float32)
