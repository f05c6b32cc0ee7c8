"""Calibrate existing Penn Action heads on their own validation data (issue 14, item 5).

* The swing detector: each ensemble member k held out fold k of the 30 training sequences
  (``train_ensemble``'s folds); its activations on that fold are out-of-fold, so the event
  threshold is chosen there exactly as for a newly trained head
  (``sport_heads.choose_threshold``: best F1 at tIoU 0.5).
* The recognizer: its training held out a stratified 20 % validation split
  (``recognition.stratified_val`` with the training seed); the ``unknown_below`` bound is the
  5th percentile of the winning-class probability on the validation clips it got right.

Both read Penn's clips with the sides the head was trained on (``penn_sides`` in its
sidecar: "anatomical" = ``penn_action.penn_anatomical``, else as labelled).

Writes a calibrated copy (same tensors, the sidecar gains the calibration) so the committed
defaults stay untouched: ``python -m offline_train.calibrate_heads --out DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .action_detection import SWING_CLASSES, activations, concat_sequences
from .sport_heads import UNKNOWN_PERCENTILE, choose_threshold


def _sides(meta: dict, clips: list) -> list:
    """Penn's clips with the sides the head was trained on."""
    from .penn_action import penn_anatomical

    return [penn_anatomical(c) for c in clips] if meta.get("penn_sides") == "anatomical" else clips


def calibrate_detector(head: Path, train: list, out: Path) -> dict:
    """``train``: the Penn Action official train clips."""
    from vpd_stream.models.head_io import HeadBundle, load_heads, save_heads

    from .features import get_feature_set

    bundle = load_heads(head, kind="detector")
    train = _sides(bundle.meta, train)
    fs = get_feature_set(bundle.meta.get("feature_set", "pose2d"))  # the features it was trained on
    seqs = concat_sequences([fs.extract(c) for c in train], [c.action in SWING_CLASSES for c in train],
                            [c.clip_id for c in train], 30, seed=0)
    folds = np.array_split(np.arange(len(seqs)), len(bundle.models))
    acts, gts = [], []
    for model, held in zip(bundle.models, folds):
        for i in held:
            acts.append(activations([model], seqs[i].features))
            gts.append(seqs[i].intervals)
    thr, f1 = choose_threshold(acts, gts, float(bundle.meta["mean_action_length"]))
    meta = dict(bundle.meta)
    meta["threshold"] = thr
    meta["threshold_calibration"] = {"rule": "best F1 at tIoU 0.5 on the out-of-fold training sequences "
                                     "(offline_train.calibrate_heads)", "validation_sequences": len(acts),
                                     "validation_f1": round(f1, 4), "previous_threshold": bundle.meta.get("threshold")}
    save_heads(out, HeadBundle(bundle.config, bundle.models, meta))
    return meta["threshold_calibration"] | {"threshold": thr}


def calibrate_recognizer(head: Path, train: list, out: Path) -> dict:
    """``train``: the Penn Action official train clips."""
    from vpd_stream.heads.ensemble import predict_proba
    from vpd_stream.models.head_io import HeadBundle, load_heads, save_heads

    from .features import get_feature_set
    from .recognition import stratified_val

    bundle = load_heads(head, kind="recognizer")
    train = _sides(bundle.meta, train)
    fs = get_feature_set(bundle.meta.get("feature_set", "pose2d"))  # the features it was trained on
    y = np.array([c.label for c in train])
    val = np.flatnonzero(stratified_val(y, 0.2, np.random.default_rng(0)))  # train_recognizer's split (seed 0)
    probs = predict_proba(bundle.models, [fs.extract(train[i]) for i in val], fs.flip) / 2  # two flip views
    right = probs.argmax(1) == y[val]
    bound = float(np.percentile(probs.max(1)[right], UNKNOWN_PERCENTILE))
    meta = dict(bundle.meta)
    meta["unknown_below"] = bound
    meta["unknown_calibration"] = {"rule": f"{UNKNOWN_PERCENTILE:g}th percentile of the winning-class probability "
                                   "on the correctly classified validation clips (the training's 20 % split)",
                                   "validation": len(val), "validation_top1": float(right.mean())}
    save_heads(out, HeadBundle(bundle.config, bundle.models, meta))
    return meta["unknown_calibration"] | {"unknown_below": bound}


def main() -> None:
    from plugins.detector import DEFAULT_DETECTOR
    from plugins.recognizer import DEFAULT_RECOGNIZER
    from vpd_stream.data_dir import data_folder

    from .penn_action import load_penn_action

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=None)
    a = ap.parse_args()
    train = [c for c in load_penn_action(data_folder(a.data, "penn_action", "Penn Action")) if c.train]  # read once
    print("detector", calibrate_detector(DEFAULT_DETECTOR, train, a.out / "penn_swing_detector"))
    print("recognizer", calibrate_recognizer(DEFAULT_RECOGNIZER, train, a.out / "penn_recognizer"))


if __name__ == "__main__":
    main()
