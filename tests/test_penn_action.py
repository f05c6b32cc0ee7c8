"""Penn Action loader, VPD normalization and flip on the real labels."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.penn_action import CLASSES, load_clip, load_penn_action, resample_indices
from vpd_stream.skeleton import flip_features, normalize_joints
from offline_train.retrieval import precision_at_k


def test_resample_30_to_25_by_time() -> None:
    idx = resample_indices(30, 30.0, 25.0)
    assert len(idx) == 25 and idx[0] == 0 and idx[-1] <= 29
    assert np.all(np.diff(idx) >= 1) and np.sum(np.diff(idx) == 2) == 4  # 5 of 30 frames dropped


def test_normalization_and_flip() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, size=(4, 13, 2))
    f = normalize_joints(xy).reshape(4, 13, 2)
    assert np.allclose(0.5 * (f[:, 7] + f[:, 8]), 0, atol=1e-6)  # mid-hip at the origin
    torso = f[:, [1, 2, 7, 8]]
    d = np.linalg.norm(torso[:, :, None] - torso[:, None], axis=-1).max(axis=(1, 2))
    assert np.allclose(d, 0.5, atol=1e-6)
    mirrored = xy.copy()
    mirrored[..., 0] = -mirrored[..., 0]
    mirrored = mirrored[:, [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11]]
    assert np.allclose(normalize_joints(mirrored), flip_features(normalize_joints(xy)), atol=1e-5)
    assert np.allclose(flip_features(flip_features(f.reshape(4, 26))), f.reshape(4, 26))


def test_load_real_clip(data_dir) -> None:
    path = data_dir / "penn_action" / "labels" / "0001.mat"
    if not path.is_file():
        pytest.skip(f"Penn Action labels not found under {path.parent}")
    raw = load_clip(path, target_fps=None)
    clip = load_clip(path)
    assert raw.action == "baseball_pitch" and raw.view == "back" and not raw.train
    assert raw.keypoints.shape == (151, 13, 3)
    assert len(clip.keypoints) == len(resample_indices(151, 30, 25)) == 125
    assert set(np.unique(raw.keypoints[..., 2])) <= {0.0, 1.0}


def test_official_split_and_classes(data_dir) -> None:
    root = data_dir / "penn_action"
    if not (root / "labels").is_dir():
        pytest.skip(f"Penn Action not found under {root}")
    clips = load_penn_action(root)
    assert len(clips) == 2326
    assert sum(c.train for c in clips) == 1258
    assert {c.action for c in clips} == set(CLASSES)


def test_precision_at_k_by_hand() -> None:
    costs = np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2]])
    p = precision_at_k(costs, np.array([0, 1]), np.array([0, 1, 0]), ks=(1, 2))
    assert p[1] == 1.0 and p[2] == pytest.approx(0.5)
