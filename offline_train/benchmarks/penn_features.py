"""Penn Action: NNS-DTW top-1 per 2D feature definition, and recognizer runs (issue 15).

    python -m offline_train.benchmarks.penn_features nns [--data DIR] [--only NAME ...]
    python -m offline_train.benchmarks.penn_features recognizer '{"epochs": 20}' '{"arch": "cnn"}' ...

``nns``: the full official test x train NNS-DTW (flip search) for each feature definition
of the missing-joint study (RESULTS.md, issue 15): stale coordinates, missing joints at the
hip centre, Penn's annotated box, the box of the present joints, the centroid origin.
``recognizer``: one ``train_recognizer`` run per JSON spec (``TrainConfig`` fields plus
``"features"``, default ``pose2d_box``), test top-1 with flip test-time averaging.
Each line gives the wall time and the 1-minute load average.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _load():
    return os.getloadavg()[0]


def _penn_boxes(root: Path, clips) -> dict[str, np.ndarray]:
    """Penn's annotated boxes, resampled like the joints (the last box repeats if short)."""
    import scipy.io

    from offline_train.penn_action import SOURCE_FPS, resample_indices

    labels = root / "labels" if (root / "labels").is_dir() else root
    out = {}
    for c in clips:
        m = scipy.io.loadmat(str(labels / f"{c.clip_id}.mat"))
        n = len(m["x"])
        b = np.asarray(m["bbox"], np.float32)
        if len(b) < n:
            b = np.concatenate([b, np.repeat(b[-1:], n - len(b), 0)])
        out[c.clip_id] = b[resample_indices(n, SOURCE_FPS, c.fps)]
    return out


def nns_table(root: Path, only: list[str]) -> None:
    from offline_train.penn_action import load_penn_action
    from vpd_stream.heads.nns import flip_min_costs, nns_predict
    from vpd_stream.skeleton import box_features, flip_features, normalize_joints, normalize_keypoints

    clips = load_penn_action(root)
    boxes = _penn_boxes(root, clips)
    variants = {
        "vpd, stale": lambda c: normalize_joints(c.keypoints[..., :2]),
        "vpd, missing -> hip centre": lambda c: normalize_keypoints(c.keypoints),
        "penn box, stale": lambda c: box_features(c.keypoints[..., :2], boxes[c.clip_id], centre="box"),
        "penn box, missing -> box centre": lambda c: box_features(c.keypoints, boxes[c.clip_id], centre="box"),
        "present-joint box, box centre": lambda c: box_features(c.keypoints, centre="box"),
        "present-joint box, centroid (pose2d_box)": lambda c: box_features(c.keypoints),
    }
    train = [c for c in clips if c.train]
    test = [c for c in clips if not c.train]
    ytr = np.array([c.label for c in train])
    yte = np.array([c.label for c in test])
    for name, fn in variants.items():
        if only and not any(o in name for o in only):
            continue
        t0 = time.time()
        costs = flip_min_costs([fn(c) for c in test], [fn(c) for c in train], flip_features)
        top1 = float((nns_predict(costs, ytr) == yte).mean())
        print(f"{name}: NNS-DTW top-1 {100 * top1:.1f} % ({time.time() - t0:.0f} s, load {_load():.1f})", flush=True)


def recognizer_runs(root: Path, specs: list[str]) -> None:
    import torch

    from offline_train.features import get_feature_set
    from offline_train.penn_action import CLASSES, load_penn_action
    from offline_train.recognition import TrainConfig, train_recognizer
    from vpd_stream.heads.ensemble import predict_proba

    torch.set_num_threads(1)
    clips = load_penn_action(root)
    train = [c for c in clips if c.train]
    test = [c for c in clips if not c.train]
    ytr = np.array([c.label for c in train])
    yte = np.array([c.label for c in test])
    for spec in specs:
        kw = json.loads(spec)
        fs = get_feature_set(kw.pop("features", "pose2d_box"))
        t0 = time.time()
        model, info = train_recognizer([fs.extract(c) for c in train], ytr, len(CLASSES), fs.flip, TrainConfig(**kw))
        acc = float((predict_proba([model], [fs.extract(c) for c in test], fs.flip).argmax(1) == yte).mean())
        print(f"{fs.name} {kw}: test top-1 {100 * acc:.1f} %, val {100 * info['val_top1']:.1f} %, best epoch "
              f"{info['best_epoch']}/{info['epochs']} ({time.time() - t0:.0f} s, load {_load():.1f})", flush=True)


def main() -> None:
    from vpd_stream.data_dir import data_folder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("nns", "recognizer"))
    ap.add_argument("specs", nargs="*", help="recognizer: JSON TrainConfig specs")
    ap.add_argument("--data", type=Path, default=None, help="Penn Action folder (default ../shared/data/penn_action)")
    ap.add_argument("--only", nargs="*", default=[], help="nns: only rows whose name contains one of these")
    args = ap.parse_args()
    root = data_folder(args.data, "penn_action", "Penn Action")
    if args.what == "nns":
        nns_table(root, args.only)
    else:
        recognizer_runs(root, args.specs or ['{"epochs": 20}'])


if __name__ == "__main__":
    main()
