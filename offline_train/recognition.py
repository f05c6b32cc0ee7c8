"""Train and apply the sequence recognizer (BiGRU by default, Table S4 alternatives).

AdamW lr 1e-3 with a cosine schedule, batch 50, random horizontal flips during training,
flip test-time summing of class probabilities, best epoch chosen on a validation split.

Penn Action's left/right joints are the mirror of the person's own (and of BlazePose's):
facing the camera, Penn's "left shoulder" is left in the image in 96 % of the front-view
frames with both shoulders visible, and right in the image in 78 % of the back-view ones;
BlazePose's left shoulder of the clean-and-jerk lifter (facing the camera) is right in the
image in 100 % of frames. Swapping Penn's sides (``penn_anatomical``) changes nothing on
Penn's own test (every clip is swapped alike) but is what a head the stream feeds with
BlazePose joints needs: the clean-and-jerk clip's nearest DTW cost to Penn's train clips
drops from 0.62 to 0.28 (RESULTS.md, issue 15, "Penn's sides").

``Augment`` mimics the stream's teacher poses during training: per-joint noise, joints
dropped by the missing-joint rule (put at the origin, as the features do), and a random
playback speed.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from vpd_stream.heads.ensemble import predict_proba
from vpd_stream.models.heads import HeadConfig, Recognizer, pad_batch
from vpd_stream.skeleton import FLIP_PERM, NUM_JOINTS


def feature_side_permutation() -> np.ndarray:
    """Index of each 26-d joint-feature column after the left/right joint names are swapped."""
    return np.stack([2 * FLIP_PERM, 2 * FLIP_PERM + 1], axis=1).reshape(-1)


@torch.no_grad()
def swap_input_sides(models: list[torch.nn.Module]) -> list[torch.nn.Module]:
    """Heads trained on Penn's sides made exact heads for the person's own (in place).

    A head's first layer reads joint j of Penn's convention from columns 2j, 2j + 1; fed
    anatomical joints, it must read those columns from the swapped joint: permuting the
    input columns of the first layer's weights gives a head whose output on anatomical
    features equals the old head's on Penn's (the same function, nothing retrained).
    """
    perm = torch.as_tensor(feature_side_permutation())
    for m in models:
        net = m.encoder.net
        if isinstance(net, torch.nn.ModuleList):  # 1D CNN: the first conv's input channels
            conv = net[0][0]
            conv.weight.copy_(conv.weight[:, perm])
            continue
        for name in ("weight_ih_l0", "weight_ih_l0_reverse"):
            w = getattr(net, name)
            w.copy_(w[:, perm])
    return models


@dataclass
class Augment:
    """Teacher-like augmentation of 26-d joint features (missing joints at the origin)."""

    noise: float = 0.008  # std of Gaussian noise on present joints (feature units: box side = 1)
    drop: float = 0.05  # probability that a present joint is missing in a frame
    speed: tuple[float, float] = (0.8, 1.25)  # playback speed, drawn log-uniformly

    def __call__(self, seq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(seq)
        if self.speed != (1.0, 1.0) and n > 2:
            f = float(np.exp(rng.uniform(np.log(self.speed[0]), np.log(self.speed[1]))))
            m = max(2, int(round(n / f)))
            seq = seq[np.minimum((np.arange(m) * f).astype(int), n - 1)]
        j = np.array(seq, dtype=np.float32).reshape(len(seq), NUM_JOINTS, 2)
        present = np.any(j != 0, axis=-1)
        j += (rng.normal(0.0, self.noise, j.shape) * present[..., None]).astype(np.float32)
        j[present & (rng.random(present.shape) < self.drop)] = 0.0
        return j.reshape(len(seq), -1)


@dataclass
class TrainConfig:
    epochs: int = 60  # 20 -> 89.8 %, 60 -> 93.6 % Penn test top-1 on pose2d_box (RESULTS.md, issue 15)
    min_steps: int = 60  # tiny few-shot sets get more epochs so every run sees ~ this many steps
    max_epochs: int = 200
    batch_size: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-2
    val_fraction: float = 0.2
    arch: str = "bigru"
    seed: int = 0
    crop: str = "shortest"  # "shortest": crop each batch to its shortest member; "none": pad (packed)
    max_len: int = 0  # > 0: random crops of at most this many frames (training only)
    balance: bool = False  # weight the loss by inverse class frequency (of the training part)
    augment: Augment | None = None  # teacher-like augmentation of each training sequence (26-d joints)


def stratified_val(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask: at least one example per class (when a class has >= 2) goes to validation."""
    val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        n = max(1, int(round(fraction * len(idx))))
        val[rng.choice(idx, size=min(n, len(idx) - 1), replace=False)] = True
    return val


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency loss weights (float32): each present class weighs N / C in total, absent ones 0."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.where(present, counts.sum() / np.maximum(counts, 1) / max(1, int(present.sum())), 0.0)
    return w.astype(np.float32)


def length_batches(lengths: np.ndarray, idx: np.ndarray, batch_size: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (sorted by length with jitter, then chunked).

    Each batch is later cropped to its shortest member, so no padding or packing is needed
    (packed GRUs are ~2x slower on CPU) and the crop is a mild temporal augmentation.
    """
    key = lengths[idx] * np.exp(rng.normal(0.0, 0.1, size=len(idx)))
    order = idx[np.argsort(key, kind="stable")]
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _crop_to(seq: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, len(seq) - t + 1))
    return seq[start:start + t]


def train_recognizer(seqs: list[np.ndarray], labels: np.ndarray, num_classes: int,
                     flip: Callable | None, cfg: TrainConfig,
                     log: Callable[[str], None] | None = None) -> tuple[Recognizer, dict]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    labels = np.asarray(labels)
    seq_len = np.array([len(q) for q in seqs])
    val = stratified_val(labels, cfg.val_fraction, rng)
    tr_idx, va_idx = np.flatnonzero(~val), np.flatnonzero(val)
    model = Recognizer(HeadConfig("recognizer", seqs[0].shape[1], num_classes, arch=cfg.arch))
    steps_per_epoch = max(1, math.ceil(len(tr_idx) / cfg.batch_size))
    epochs = min(cfg.max_epochs, max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    class_weight = torch.as_tensor(class_weights(labels[tr_idx], num_classes)) if cfg.balance else None
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    for epoch in range(epochs):
        model.train()
        for idx in length_batches(seq_len, tr_idx, cfg.batch_size, rng):
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            src = [cfg.augment(seqs[i], rng) for i in idx] if cfg.augment is not None else [seqs[i] for i in idx]
            if cfg.crop == "shortest":
                t = min(len(q) for q in src)
                if cfg.max_len > 0:
                    t = min(t, cfg.max_len)
                batch = [_crop_to(q, t, rng) for q in src]
            else:
                batch = [_crop_to(q, min(len(q), cfg.max_len), rng) if cfg.max_len > 0 else q for q in src]
            batch = [flip(b) if flip is not None and rng.random() < 0.5 else b for b in batch]
            x, lengths = pad_batch(batch)
            loss = torch.nn.functional.cross_entropy(model(x, lengths), torch.as_tensor(labels[idx]),
                                                     weight=class_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if len(va_idx):
            acc = float((predict_proba([model], [seqs[i] for i in va_idx], flip).argmax(1) == labels[va_idx]).mean())
        else:
            acc = float(epoch)  # no validation possible: keep the last epoch
        if acc >= best[0]:  # ties go to the later (better trained) epoch
            best = (acc, epoch, copy.deepcopy(model.state_dict()))
        if log is not None and (epoch % 10 == 0 or epoch == epochs - 1):
            log(f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f} val {acc:.3f}")
    model.load_state_dict(best[2])
    model.eval()
    return model, {"val_top1": best[0], "best_epoch": best[1] + 1, "epochs": epochs,
                   "train": len(tr_idx), "val": len(va_idx)}


def train_default_recognizer(data, out, epochs: int, arch: str, command: str,
                             log: Callable[[str], None] = print, feature_set: str = "pose2d_box",
                             cfg: TrainConfig | None = None, anatomical: bool = True,
                             augment: bool = False) -> dict:
    """Train the 15-class Penn Action recognizer the recognizer plugin loads by default.

    ``anatomical``: Penn's sides swapped to the person's own (``penn_anatomical``), as the
    stream's BlazePose joints are. ``augment``: the teacher-like ``Augment`` (measured: 93.1 %
    Penn test top-1 against 93.6 % without, and lower class probabilities on the real
    golf and tennis clips, so the committed head is trained without it; RESULTS.md, issue 15).
    """
    from pathlib import Path

    from plugins.recognizer import DEFAULT_RECOGNIZER
    from vpd_stream.models.head_io import HeadBundle, save_heads

    from .features import STREAM_FEATURES, get_feature_set
    from .penn_action import CLASSES, load_penn_action, penn_anatomical

    fs = get_feature_set(feature_set)
    cfg = cfg if cfg is not None else TrainConfig(epochs=epochs, arch=arch, augment=Augment() if augment else None)
    clips = load_penn_action(data)
    if anatomical:
        clips = [penn_anatomical(c) for c in clips]
    train = [c for c in clips if c.train]
    test = [c for c in clips if not c.train]
    model, info = train_recognizer([fs.extract(c) for c in train], np.array([c.label for c in train]),
                                   len(CLASSES), fs.flip, cfg, log)
    probs = predict_proba([model], [fs.extract(c) for c in test], fs.flip)
    info["test_top1"] = float((probs.argmax(1) == np.array([c.label for c in test])).mean())
    log(f"test top-1 {info['test_top1']:.3f}")
    path = Path(out) if out else DEFAULT_RECOGNIZER  # where the recognizer plugin loads it from
    meta = {"classes": list(CLASSES), "features": STREAM_FEATURES[feature_set], "feature_set": feature_set, "fps": 25.0,
            "dataset": "Penn Action official train split", "penn_sides": "anatomical" if anatomical else "as labelled",
            "augment": cfg.augment.__dict__ if cfg.augment is not None else None,
            "command": command, "metrics": info}
    save_heads(path, HeadBundle(model.cfg, [model], meta))
    log(f"wrote {path}.safetensors and {path}.json")
    return info


NNS_UNKNOWN_PERCENTILE = 95.0  # an index's `unknown_above`: this percentile of leave-one-out nearest costs
SPAN_UNKNOWN_PERCENTILE = 50.0


def build_penn_nns_index(data, out, feature_set: str, command: str, anatomical: bool = True,
                         storage: str = "float32"):
    """Write the NNS index of Penn Action's official train clips (features at 25 fps).

    ``anatomical``: Penn's sides swapped to the person's own, as the stream's joints are.
    Two bounds go in the sidecar: ``unknown_above`` (the 95th percentile of each clip's
    leave-one-out nearest cost: an event the detector found is unknown beyond it) and the
    stricter ``span_unknown_above`` the recognizer's span events need (the median
    leave-one-out nearest cost of the clips it labels right: a span of a track is only an
    event when it is as close to a training clip as a typical Penn clip is). ``storage``:
    the features on disk (``nns_index.STORAGE``; int8 for the committed default index, a
    quarter of float32; the bounds are computed on the float32 features)."""
    from vpd_stream.models.nns_index import NnsIndex, save_nns_index

    from .features import STREAM_FEATURES, get_feature_set
    from .penn_action import CLASSES, load_penn_action, penn_anatomical

    fs = get_feature_set(feature_set)
    from vpd_stream.heads.nns import flip_min_costs


    train = [penn_anatomical(c) if anatomical else c for c in load_penn_action(data) if c.train]
    seqs = [fs.extract(c) for c in train]
    # The recognizer's `unknown` bound, as for a sport's own index (offline_train.sport_heads).
    costs = flip_min_costs(seqs, seqs, fs.flip)
    np.fill_diagonal(costs, np.inf)
    labels = np.array([c.label for c in train])
    nearest = costs.min(1)
    right = labels[costs.argmin(1)] == labels
    unknown_above = float(np.percentile(nearest, NNS_UNKNOWN_PERCENTILE))
    span_above = float(np.percentile(nearest[right], SPAN_UNKNOWN_PERCENTILE))
    index = NnsIndex(seqs, labels, list(CLASSES),
                     {"features": STREAM_FEATURES[feature_set], "feature_set": feature_set,
                      "unknown_above": unknown_above,
                      "unknown_calibration": {"rule": f"{NNS_UNKNOWN_PERCENTILE:g}th percentile of each index "
                                              "sequence's leave-one-out nearest DTW cost", "sequences": len(seqs)},
                      "span_unknown_above": span_above,
                      "span_calibration": {"rule": f"{SPAN_UNKNOWN_PERCENTILE:g}th percentile of the leave-one-out "
                                           "nearest DTW cost of the sequences whose nearest has their class",
                                           "leave_one_out_top1": float(right.mean())},
                      "penn_sides": "anatomical" if anatomical else "as labelled",
                      "fps": 25.0, "dataset": "Penn Action official train split", "command": command})
    return save_nns_index(out, index, storage=storage)
