"""Pose-guided clip selection: look at K of a video's N clips instead of all of them.

A video is cut into N equal, evenly spaced (overlapping) clips. A clip classifier (JMRN on
the clip's heatmaps) scores each clip; on training videos the *oracle* clips are the K
whose prediction gives the true class the highest probability. A small saliency ranker
sees only the clip's poses (normalized joints: mean, spread, per-joint speed, and where
the clip sits in the video) and is trained to mimic the oracle: a listwise loss pushing
its softmax over a video's clips onto the oracle top-K. At inference the ranker's top-K
clips are classified and their log-probabilities averaged; this is compared with all N
clips (dense), K random clips and K evenly spaced clips (uniform).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vpd_stream.skeleton import NUM_JOINTS

DESCRIPTOR_DIM = 2 * 2 * NUM_JOINTS + NUM_JOINTS + 1


def clip_windows(num_frames: int, num_clips: int, frac: float = 0.35, min_len: int = 8) -> list[tuple[int, int]]:
    """N (start, end) windows of ``frac`` of the video (≥ min_len frames), evenly spaced."""
    win = min(num_frames, max(min_len, int(round(frac * num_frames))))
    starts = np.linspace(0, num_frames - win, num_clips).round().astype(int)
    return [(int(s), int(s) + win) for s in starts]


def normalized(keypoints: np.ndarray) -> np.ndarray:
    """(T, 13, 2|3) pixels (and scores) → (T, 13, 2) VPD-normalized joints (mid-hip centre,
    torso scale); missing joints (``skeleton.missing_joints``) at the hip centre."""
    from vpd_stream.skeleton import normalize_keypoints

    kp = np.asarray(keypoints, dtype=np.float32)
    return normalize_keypoints(kp).reshape(len(kp), NUM_JOINTS, 2)


def clip_descriptor(norm_xy: np.ndarray, start: int, end: int) -> np.ndarray:
    """Pose summary of one clip: joint means, spreads, mean speeds, and relative position."""
    seg = norm_xy[start:end]
    speed = np.linalg.norm(np.diff(seg, axis=0), axis=-1).mean(0) if len(seg) > 1 else np.zeros(NUM_JOINTS)
    centre = 0.5 * (start + end) / max(len(norm_xy), 1)
    return np.concatenate([seg.mean(0).ravel(), seg.std(0).ravel(), speed * 10.0, [centre]]).astype(np.float32)


class SaliencyRanker(nn.Module):
    def __init__(self, dim: int = DESCRIPTOR_DIM, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (V, N, D) → (V, N)
        return self.net(x).squeeze(-1)


def oracle_topk(clip_logp: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(V, N) bool: the K clips per video that give the true class the highest log-probability."""
    true = clip_logp[np.arange(len(labels)), :, labels]  # (V, N)
    order = np.argsort(-true, axis=1, kind="stable")[:, :k]
    mask = np.zeros(true.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


@dataclass
class RankerConfig:
    k: int = 2
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-3
    seed: int = 0


def fit_ranker(desc: np.ndarray, oracle: np.ndarray, cfg: RankerConfig = RankerConfig()) -> SaliencyRanker:
    """desc: (V, N, D) clip descriptors; oracle: (V, N) bool top-K. Full-batch, deterministic."""
    torch.manual_seed(cfg.seed)
    model = SaliencyRanker(desc.shape[-1])
    x = torch.as_tensor(desc)
    target = torch.as_tensor(oracle, dtype=torch.float32)
    target = target / target.sum(1, keepdim=True).clamp_min(1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.epochs):
        loss = -(target * F.log_softmax(model(x), dim=1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def select(method: str, k: int, n: int, scores: np.ndarray | None = None,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the K clips a method keeps for one video."""
    k = min(k, n)
    if method == "dense":
        return np.arange(n)
    if method == "uniform":
        return np.unique(np.linspace(0, n - 1, k).round().astype(int))
    if method == "random":
        return (rng or np.random.default_rng(0)).choice(n, size=k, replace=False)
    if method in ("ranker", "oracle"):
        return np.argsort(-np.asarray(scores), kind="stable")[:k]
    raise ValueError(f"unknown selection method {method!r}")


def accuracy_vs_k(clip_logp: np.ndarray, labels: np.ndarray, ranker_scores: np.ndarray,
                  ks: list[int], random_repeats: int = 10, seed: int = 0) -> dict[str, list[float]]:
    """Top-1 for each method and K (dense is the same at every K). clip_logp: (V, N, C)."""
    v, n, _ = clip_logp.shape
    oracle_scores = clip_logp[np.arange(v), :, labels]
    out: dict[str, list[float]] = {m: [] for m in ("dense", "uniform", "random", "ranker", "oracle")}
    rng = np.random.default_rng(seed)

    def acc(picks: list[np.ndarray]) -> float:
        pred = np.array([clip_logp[i, p].mean(0).argmax() for i, p in enumerate(picks)])
        return float((pred == labels).mean())

    for k in ks:
        out["dense"].append(acc([select("dense", k, n)] * v))
        out["uniform"].append(acc([select("uniform", k, n)] * v))
        out["random"].append(float(np.mean([acc([select("random", k, n, rng=rng) for _ in range(v)])
                                            for _ in range(random_repeats)])))
        out["ranker"].append(acc([select("ranker", k, n, ranker_scores[i]) for i in range(v)]))
        out["oracle"].append(acc([select("oracle", k, n, oracle_scores[i]) for i in range(v)]))
    return out
