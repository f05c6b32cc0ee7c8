"""JMRN training end to end on generated poses (no data needed): it must learn."""
from __future__ import annotations

import numpy as np
import torch

from offline_train.jmrn.augment import AugmentConfig
from offline_train.jmrn.train import TrainConfig, predict_logits, train_jmrn
from vpd_stream.heatmaps import HeatmapConfig, clip_heatmaps
from vpd_stream.models.jmrn import JmrnConfig

HM = HeatmapConfig(height=16, width=16, sigma=1.0)


def _clip(label: int, rng: np.random.Generator) -> np.ndarray:
    """A standing figure whose right wrist rises (class 0), falls (1) or circles (2)."""
    t = int(rng.integers(15, 30))
    base = np.array([[50, 10], [40, 25], [60, 25], [35, 40], [65, 40], [33, 55], [67, 55],
                     [43, 60], [57, 60], [43, 80], [57, 80], [43, 100], [57, 100]], np.float32)
    kp = np.repeat(base[None], t, 0) + rng.normal(0, 1.0, (t, 13, 2)).astype(np.float32)
    s = np.linspace(0, 1, t)
    if label == 0:
        kp[:, 6, 1] = 60 - 50 * s
    elif label == 1:
        kp[:, 6, 1] = 10 + 50 * s
    else:
        kp[:, 6, 0] = 67 + 12 * np.cos(2 * np.pi * s)
        kp[:, 6, 1] = 35 + 12 * np.sin(2 * np.pi * s)
    return kp * rng.uniform(1, 3) + rng.uniform(0, 200, 2).astype(np.float32)


def test_training_learns_generated_actions() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    labels = np.arange(96) % 3
    maps = np.stack([clip_heatmaps(_clip(int(y), rng), HM) for y in labels])
    cfg = JmrnConfig(num_classes=3, height=16, width=16, extractor=(4, 4, 8, 8), c_dim=8,
                     selector_hidden=8, cls_width=16, proj_hidden=8, proj_dim=8, dropout=0.0)
    tcfg = TrainConfig(warmup_frac=0.2, epochs=7, min_steps=0, batch_size=24, contrastive="supervised",
                       augment=AugmentConfig(beta=2, gamma=1, flip=False), seed=0)
    model, stats = train_jmrn(maps[:72], labels[:72], cfg, tcfg)
    hist = stats["history"]
    assert hist[0]["lambda"] == 0.0 < hist[-1]["lambda"]  # λ ramps in after the warm-up
    acc = float((predict_logits(model, maps[72:], flip_tta=False).argmax(1) == labels[72:]).mean())
    print(hist)
    assert acc >= 0.75, f"held-out accuracy {acc:.2f} on three easy generated actions"
