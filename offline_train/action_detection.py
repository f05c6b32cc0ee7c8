"""Temporal action detection with the per-frame BiGRU: data, training, proposals, AP.

Untrimmed sequences are made by concatenating Penn Action clips (the swing classes are
the action, every other class is background) in a seeded random order. The detector is
trained on random windows (250 frames by default) as a k-fold cross-validation ensemble;
proposals are runs of averaged activation above a threshold, at least ``min_len`` frames,
stretched or trimmed to 0.67-1.33 x the mean training action length; AP at temporal IoU.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from vpd_stream.heads.intervals import proposals
from vpd_stream.models.heads import Detector, HeadConfig

SWING_CLASSES = ("tennis_forehand", "tennis_serve", "baseball_swing", "golf_swing")
TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass
class Sequence:
    features: np.ndarray  # (T, d)
    labels: np.ndarray  # (T,) 0/1
    intervals: list[tuple[int, int]]  # ground-truth actions, inclusive frame ranges
    clip_ids: list[str] = field(default_factory=list)
    flipped: np.ndarray | None = None  # (T, d) mirrored view's features (embeddings), else flip(features)


def concat_sequences(feats: list[np.ndarray], is_action: list[bool], clip_ids: list[str],
                     num_sequences: int, seed: int) -> list[Sequence]:
    """Shuffle clips (seeded) and deal them into ``num_sequences`` concatenated sequences."""
    order = np.random.default_rng(seed).permutation(len(feats))
    out = []
    for chunk in np.array_split(order, num_sequences):
        parts, labels, intervals, ids, t = [], [], [], [], 0
        for i in chunk:
            n = len(feats[i])
            parts.append(feats[i])
            labels.append(np.full(n, int(is_action[i]), dtype=np.float32))
            if is_action[i]:
                intervals.append((t, t + n - 1))
            ids.append(clip_ids[i])
            t += n
        out.append(Sequence(np.concatenate(parts).astype(np.float32), np.concatenate(labels), intervals, ids))
    return out


def mean_action_length(seqs: list[Sequence]) -> float:
    lengths = [e - s + 1 for q in seqs for s, e in q.intervals]
    return float(np.mean(lengths)) if lengths else 0.0


# -- evaluation ------------------------------------------------------------------------


def tiou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


def average_precision(preds: list[list[tuple[int, int, float]]], gts: list[list[tuple[int, int]]],
                      threshold: float) -> float:
    """AP over all sequences: greedy matching by score, precision envelope integrated over recall."""
    flat = [(score, si, (s, e)) for si, p in enumerate(preds) for s, e, score in p]
    flat.sort(key=lambda r: (-r[0], r[1], r[2]))
    n_gt = sum(len(g) for g in gts)
    if n_gt == 0:
        return float("nan")
    used = [np.zeros(len(g), dtype=bool) for g in gts]
    tp = np.zeros(len(flat))
    for k, (_, si, iv) in enumerate(flat):
        best, best_j = threshold, -1
        for j, g in enumerate(gts[si]):
            o = tiou(iv, g)
            if not used[si][j] and o >= best:
                best, best_j = o, j
        if best_j >= 0:
            used[si][best_j] = True
            tp[k] = 1
    if not len(flat):
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(flat) + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(((mrec[idx] - mrec[idx - 1]) * mpre[idx]).sum())


THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
CALIBRATION_TIOU = 0.5


def f1_at(preds: list[list[tuple[int, int, float]]], gts: list[list[tuple[int, int]]], t: float) -> float:
    """F1 of predicted intervals against ground truth, one-to-one greedy matching by score."""
    tp = n_pred = 0
    n_gt = sum(len(g) for g in gts)
    for p, g in zip(preds, gts):
        used = [False] * len(g)
        for s, e, _ in sorted(p, key=lambda r: -r[2]):
            n_pred += 1
            best, bj = t, -1
            for j, iv in enumerate(g):
                o = tiou((s, e), iv)
                if not used[j] and o >= best:
                    best, bj = o, j
            if bj >= 0:
                used[bj] = True
                tp += 1
    if n_gt == 0 or n_pred == 0:
        return 0.0
    prec, rec = tp / n_pred, tp / n_gt
    return 0.0 if tp == 0 else 2 * prec * rec / (prec + rec)


def choose_threshold(acts: list[np.ndarray], gts: list[list[tuple[int, int]]], mean_len: float,
                     min_len: int = 3) -> tuple[float, float]:
    """(threshold, its F1) with the best F1 at tIoU 0.5 over THRESHOLD_GRID (ties: higher)."""
    best = (0.2, -1.0)
    for thr in THRESHOLD_GRID:
        f1 = f1_at([proposals(a, mean_len, thr, min_len) for a in acts], gts, CALIBRATION_TIOU)
        if f1 >= best[1]:
            best = (thr, f1)
    return best


def ap_table(preds: list[list[tuple[int, int, float]]], gts: list[list[tuple[int, int]]],
             tious: tuple[float, ...] = TIOUS) -> dict[float, float]:
    return {t: average_precision(preds, gts, t) for t in tious}


# -- training --------------------------------------------------------------------------


@dataclass
class DetectorTrainConfig:
    window: int = 250
    steps: int = 100  # the paper uses 1e4 steps of batch 100; 2 shared CPU cores cannot
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    folds: int = 5
    eval_every: int = 25
    seed: int = 0


def _sample_windows(seqs: list[Sequence], n: int, window: int, rng: np.random.Generator,
                    flip: Callable | None) -> tuple[torch.Tensor, torch.Tensor]:
    total = np.array([len(q.labels) for q in seqs], dtype=float)
    w = min(window, int(total.min()))
    xs, ys = [], []
    for si in rng.choice(len(seqs), size=n, p=total / total.sum()):
        q = seqs[si]
        s = int(rng.integers(0, len(q.labels) - w + 1))
        x = q.features[s:s + w]
        if (flip is not None or q.flipped is not None) and rng.random() < 0.5:
            x = q.flipped[s:s + w] if q.flipped is not None else flip(x)
        xs.append(x)
        ys.append(q.labels[s:s + w])
    return torch.as_tensor(np.stack(xs)), torch.as_tensor(np.stack(ys))


@torch.no_grad()
def activations(models: list[Detector], features: np.ndarray) -> np.ndarray:
    """Ensemble-mean sigmoid activation per frame of one whole sequence (one pass)."""
    x = torch.as_tensor(features, dtype=torch.float32)[None]
    acts = [torch.sigmoid(m.eval()(x))[0].numpy() for m in models]
    return np.mean(acts, axis=0)


def _val_loss(model: Detector, seqs: list[Sequence]) -> float:
    model.eval()
    with torch.no_grad():
        losses = [torch.nn.functional.binary_cross_entropy_with_logits(
            model(torch.as_tensor(q.features)[None])[0], torch.as_tensor(q.labels)).item() for q in seqs]
    return float(np.mean(losses))


def train_detector(train: list[Sequence], val: list[Sequence], flip: Callable | None,
                   cfg: DetectorTrainConfig, seed: int,
                   log: Callable[[str], None] | None = None) -> tuple[Detector, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Detector(HeadConfig("detector", train[0].features.shape[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    best = (np.inf, 0, copy.deepcopy(model.state_dict()))
    for step in range(1, cfg.steps + 1):
        model.train()
        x, y = _sample_windows(train, cfg.batch_size, cfg.window, rng, flip)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            vl = _val_loss(model, val) if val else -step  # no validation: keep the last
            if vl <= best[0]:
                best = (vl, step, copy.deepcopy(model.state_dict()))
            if log is not None:
                log(f"step {step}/{cfg.steps} train loss {loss.item():.3f} val loss {vl:.3f}")
    model.load_state_dict(best[2])
    model.eval()
    return model, {"best_step": best[1], "val_loss": float(best[0])}


def train_ensemble(seqs: list[Sequence], flip: Callable | None, cfg: DetectorTrainConfig,
                   log: Callable[[str], None] | None = None) -> tuple[list[Detector], list[dict]]:
    """k-fold cross-validation: each model holds out one fold for model selection."""
    folds = np.array_split(np.arange(len(seqs)), min(cfg.folds, len(seqs)))
    models, infos = [], []
    for k, held in enumerate(folds):
        train = [q for i, q in enumerate(seqs) if i not in set(held)]
        val = [seqs[i] for i in held]
        if log is not None:
            log(f"fold {k + 1}/{len(folds)}: {len(train)} train, {len(val)} validation sequences")
        model, info = train_detector(train or val, val if train else [], flip, cfg, cfg.seed + k, log)
        info["held"] = [int(i) for i in held] if train else []
        models.append(model)
        infos.append(info)
    return models, infos


def train_default_detector(data, out, steps: int, folds: int, command: str, threshold: float = 0.2,
                           log: Callable[[str], None] = print, anatomical: bool = True) -> dict:
    """Train the swing detector the detector plugin loads by default.

    Trained on 30 sequences of concatenated official-train clips (seed 0), evaluated on 40
    sequences of test clips (seed 0, the detection benchmark's sequences). ``anatomical``:
    Penn's sides swapped to the person's own, as the stream's joints are
    (``penn_action.penn_anatomical``).
    """
    from pathlib import Path

    from plugins.detector import DEFAULT_DETECTOR
    from vpd_stream.models.head_io import HeadBundle, save_heads

    from .features import get_feature_set
    from .penn_action import load_penn_action

    fs = get_feature_set("pose2d")
    from .penn_action import penn_anatomical

    clips = load_penn_action(data)
    if anatomical:
        clips = [penn_anatomical(c) for c in clips]

    def make(cs, n):
        return concat_sequences([fs.extract(c) for c in cs], [c.action in SWING_CLASSES for c in cs],
                                [c.clip_id for c in cs], n, seed=0)

    train_seqs = make([c for c in clips if c.train], 30)
    test_seqs = make([c for c in clips if not c.train], 40)
    cfg = DetectorTrainConfig(steps=steps, folds=folds)
    models, infos = train_ensemble(train_seqs, fs.flip, cfg, log)
    mean_len = mean_action_length(train_seqs)
    # The event threshold the plugin uses: best F1 on the out-of-fold training sequences (issue 14).
    oof = [(activations([m], train_seqs[i].features), train_seqs[i].intervals)
           for m, info in zip(models, infos) for i in info.get("held", [])]
    calibration = {"rule": "default: no validation fold"}
    if oof:
        event_threshold, f1 = choose_threshold([a for a, _ in oof], [g for _, g in oof], mean_len)
        calibration = {"rule": "best F1 at tIoU 0.5 on the out-of-fold training sequences",
                       "validation_sequences": len(oof), "validation_f1": round(f1, 4),
                       "proposal_threshold_for_ap": threshold}
    else:
        event_threshold = threshold
    preds = [proposals(activations(models, q.features), mean_len, threshold) for q in test_seqs]
    aps = ap_table(preds, [q.intervals for q in test_seqs])
    log("test AP " + ", ".join(f"tIoU {t}: {100 * a:.1f}" for t, a in aps.items()))
    path = Path(out) if out else DEFAULT_DETECTOR  # where the detector plugin loads it from
    meta = {"action": "swing", "action_classes": list(SWING_CLASSES), "features": "pose",
            "feature_set": "pose2d", "fps": 25.0, "mean_action_length": mean_len,
            "penn_sides": "anatomical" if anatomical else "as labelled",
            "threshold": event_threshold, "threshold_calibration": calibration, "min_length": 3, "window": cfg.window,
            "dataset": "Penn Action official train split, 30 concatenated sequences (seed 0)",
            "command": command, "train_config": cfg.__dict__, "folds": infos,
            "metrics": {"test_ap": {str(t): a for t, a in aps.items()},
                        "test_sequences": "40 concatenated official-test sequences (seed 0)"}}
    save_heads(path, HeadBundle(models[0].cfg, models, meta))
    log(f"wrote {path}.safetensors and {path}.json")
    return meta["metrics"]
