"""Heads for any sport from labelled clips: the detector, the recognizer and the NNS index.

Each head records what the stream needs to refuse a wrong chain and to trust its output:
its classes, its features (``pose`` or ``embedding`` and the exact spec it was trained
on), their rate (fps), the command that made it, and a calibration:

* detector — ``threshold``: the event threshold, chosen on the ensemble's own validation
  folds (each clip is scored by the model that held it out): the threshold, on a grid
  0.05 ... 0.95, with the best F1 of events against the labelled spans at temporal IoU
  0.5 (ties: the higher threshold). The detector plugin uses it by default.
* recognizer — ``unknown_below``: a validation split (20 %, stratified) is held out of
  training; the 5th percentile of the winning-class probability on the validation
  sequences the model got right. Below it, the plugin answers ``unknown``.
* NNS index — ``unknown_above``: each index sequence's nearest other index sequence
  (leave-one-out DTW, every flip combination) gives a cost; the 95th percentile of those
  costs. A query whose nearest cost is above it is ``unknown``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .action_detection import (
    CALIBRATION_TIOU,
    THRESHOLD_GRID,
    DetectorTrainConfig,
    Sequence,
    activations,
    choose_threshold,
    mean_action_length,
    train_ensemble,
)
from .clip_dataset import Dataset
from .recognition import NNS_UNKNOWN_PERCENTILE

UNKNOWN_PERCENTILE = 5.0


def head_meta(ds: Dataset, command: str) -> dict:
    """The provenance every head made here records."""
    return {"features": ds.kind, "feature_spec": ds.features, "dim": ds.dim, "fps": ds.fps,
            "dataset": f"{ds.source} with labels {ds.labels.path}", "command": command}


# -- detector -------------------------------------------------------------------------


def detection_sequences(ds: Dataset, names: list[str], actions: set[str] | None) -> list[Sequence]:
    return [Sequence(ds.clips[n].features, ds.clips[n].frame_labels(actions), ds.clips[n].intervals(actions),
                     [n], ds.clips[n].flipped) for n in names]


@dataclass
class DetectorHead:
    models: list
    mean_len: float
    threshold: float
    calibration: dict


def fit_detector(seqs: list[Sequence], flip: Callable | None, cfg: DetectorTrainConfig,
                 log: Callable[[str], None] | None = None) -> DetectorHead:
    """k-fold ensemble and its out-of-fold threshold (0.2 when there is no validation fold)."""
    models, infos = train_ensemble(seqs, flip, cfg, log)
    mean_len = mean_action_length(seqs)
    acts, gts = [], []
    for model, info in zip(models, infos):
        for i in info.get("held", []):
            acts.append(activations([model], seqs[i].features))
            gts.append(seqs[i].intervals)
    if acts:
        thr, f1 = choose_threshold(acts, gts, mean_len)
        cal = {"rule": f"best F1 at tIoU {CALIBRATION_TIOU} over thresholds {THRESHOLD_GRID[0]}-"
                       f"{THRESHOLD_GRID[-1]} on the out-of-fold validation clips",
               "validation_clips": len(acts), "validation_f1": round(f1, 4)}
    else:
        thr, cal = 0.2, {"rule": "default 0.2: a single training clip leaves no validation fold"}
    return DetectorHead(models, mean_len, float(thr), cal)


def train_detector_head(ds: Dataset, out: str | Path, command: str, actions: set[str] | None = None,
                        cfg: DetectorTrainConfig | None = None, log: Callable[[str], None] = print) -> dict:
    from vpd_stream.models.head_io import HeadBundle, save_heads

    cfg = cfg or DetectorTrainConfig()
    names = sorted(ds.clips)
    seqs = detection_sequences(ds, names, actions)
    if not any(q.intervals for q in seqs):
        from vpd_stream.errors import InputError

        raise InputError(f"{ds.labels.path}: no span of the action(s) {sorted(actions or [])} to train a detector on")
    head = fit_detector(seqs, ds.flip, cfg, log)
    action_labels = sorted(actions) if actions else ds.labels.classes()
    meta = {**head_meta(ds, command), "action": "+".join(action_labels), "action_classes": action_labels,
            "mean_action_length": head.mean_len, "threshold": head.threshold, "threshold_calibration": head.calibration,
            "min_length": 3, "window": cfg.window, "train_config": dict(cfg.__dict__),
            "clips": names}
    save_heads(out, HeadBundle(head.models[0].cfg, head.models, meta))
    log(f"event threshold {head.threshold} ({head.calibration['rule']})")
    log(f"wrote {Path(out).with_suffix('.safetensors')} and {Path(out).with_suffix('.json')}")
    return meta


# -- recognizer -----------------------------------------------------------------------


def span_sequences(ds: Dataset, names: list[str] | None = None) -> tuple[list[np.ndarray], list[np.ndarray | None],
                                                                           list[str], list[str]]:
    """(features, flipped or None, label, video) per labelled span."""
    xs, fx, ys, vids = [], [], [], []
    for n in (names if names is not None else sorted(ds.clips)):
        c = ds.clips[n]
        for s, e, lab in c.spans:
            xs.append(c.features[s:e + 1])
            fx.append(None if c.flipped is None else c.flipped[s:e + 1])
            ys.append(lab)
            vids.append(n)
    return xs, fx, ys, vids


def train_recognizer_head(ds: Dataset, out: str | Path, command: str, epochs: int = 20, arch: str = "bigru",
                          log: Callable[[str], None] = print) -> dict:
    from vpd_stream.heads.ensemble import predict_proba
    from vpd_stream.models.head_io import HeadBundle, save_heads

    from .recognition import TrainConfig, stratified_val, train_recognizer

    xs, fx, ys, _ = span_sequences(ds)
    classes = sorted(set(ys))
    if len(classes) < 2:
        from vpd_stream.errors import InputError

        raise InputError(f"{ds.labels.path}: a recognizer needs at least two classes, the labels have {classes}")
    y = np.array([classes.index(v) for v in ys])
    val = stratified_val(y, 0.2, np.random.default_rng(0))
    tr = np.flatnonzero(~val)
    va = np.flatnonzero(val)
    model, info = train_recognizer([xs[i] for i in tr], y[tr], len(classes), ds.flip,
                                   TrainConfig(epochs=epochs, arch=arch), log)
    unknown_below, cal = 0.0, {"rule": "no validation sequences: never unknown"}
    if len(va):
        flipped = [fx[i] for i in va] if ds.kind == "embedding" else None
        probs = predict_proba([model], [xs[i] for i in va], ds.flip, flipped=flipped)
        views = 1 if (ds.flip is None and flipped is None) else 2
        win = probs.max(1) / views
        right = probs.argmax(1) == y[va]
        if right.any():
            unknown_below = float(np.percentile(win[right], UNKNOWN_PERCENTILE))
        cal = {"rule": f"{UNKNOWN_PERCENTILE:g}th percentile of the winning-class probability on the correctly "
                       "classified validation sequences (20 % stratified, held out of training)",
               "validation": len(va), "validation_top1": float(right.mean())}
    meta = {**head_meta(ds, command), "classes": classes, "unknown_below": unknown_below,
            "unknown_calibration": cal, "metrics": info}
    save_heads(out, HeadBundle(model.cfg, [model], meta))
    log(f"unknown below class probability {unknown_below:.3f} ({cal['rule']})")
    log(f"wrote {Path(out).with_suffix('.safetensors')} and {Path(out).with_suffix('.json')}")
    return meta


# -- NNS index ------------------------------------------------------------------------


def nns_costs(ds: Dataset, q: list[np.ndarray], qf: list, x: list[np.ndarray], xf: list) -> np.ndarray:
    from vpd_stream.heads.nns import exact_flip_min_costs, flip_min_costs

    if ds.kind == "embedding":
        return exact_flip_min_costs(q, qf, x, xf)
    return flip_min_costs(q, x, ds.flip)


def build_nns_head(ds: Dataset, out: str | Path, command: str, log: Callable[[str], None] = print) -> dict:
    from vpd_stream.models.nns_index import NnsIndex, save_nns_index

    xs, fx, ys, _ = span_sequences(ds)
    classes = sorted(set(ys))
    y = np.array([classes.index(v) for v in ys])
    cal: dict = {"rule": "a single sequence: never unknown"}
    unknown_above = float("inf")
    if len(xs) > 1:
        costs = nns_costs(ds, xs, fx, xs, fx)
        np.fill_diagonal(costs, np.inf)
        nearest = costs.min(1)
        unknown_above = float(np.percentile(nearest, NNS_UNKNOWN_PERCENTILE))
        cal = {"rule": f"{NNS_UNKNOWN_PERCENTILE:g}th percentile of each index sequence's leave-one-out "
                       "nearest DTW cost", "sequences": len(xs)}
    meta = {**head_meta(ds, command), "unknown_above": unknown_above, "unknown_calibration": cal}
    path = save_nns_index(out, NnsIndex(xs, y, classes, meta, fx if ds.kind == "embedding" else None))
    log(f"unknown above DTW cost {unknown_above:.4f} ({cal['rule']})")
    log(f"wrote {path} and {path.with_suffix('.json')}")
    return meta
