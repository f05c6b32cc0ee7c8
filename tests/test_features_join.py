"""The joined VIPE* + box-normalized 2D feature (offline_train.features.vipe_box)."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.features import JOIN_BOX_WEIGHT, get_feature_set, join_features
from offline_train.penn_action import PennClip
from vpd_stream.errors import ConfigError
from vpd_stream.models.vipe import embed_poses, load_vipe
from vpd_stream.skeleton import box_features, flip_features


def _clip(seed: int = 0, t: int = 12) -> PennClip:
    rng = np.random.default_rng(seed)
    kp = np.concatenate([rng.uniform(50, 300, (t, 13, 2)), (rng.random((t, 13, 1)) > 0.2)], -1).astype(np.float32)
    return PennClip("0001", "squat", 11, "front", False, kp, 25.0)


def test_join_features_are_the_two_unit_parts_side_by_side():
    e = np.random.default_rng(1).normal(size=(5, 32))
    b = np.random.default_rng(2).normal(size=(5, 26))
    j = join_features(e, b, 2.0)
    assert j.shape == (5, 58) and j.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(j[:, :32], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(j[:, 32:], axis=1), 2.0, atol=1e-5)
    np.testing.assert_allclose(j[:, 32:] / 2.0, b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-6)


def test_vipe_box_feature_set_and_its_mirrored_clip():
    fs = get_feature_set("vipe_box")
    clip = _clip()
    model = load_vipe()
    x = fs.extract(clip)
    assert x.shape == (12, fs.dim)
    np.testing.assert_allclose(x, join_features(embed_poses(model, clip.keypoints), box_features(clip.keypoints),
                                                JOIN_BOX_WEIGHT), atol=1e-6)
    xf = fs.flipped(clip)
    np.testing.assert_allclose(xf[:, :32], embed_poses(model, clip.keypoints, flip=True)
                               / np.linalg.norm(embed_poses(model, clip.keypoints, flip=True), axis=1, keepdims=True),
                               atol=1e-5)
    b = flip_features(box_features(clip.keypoints))
    np.testing.assert_allclose(xf[:, 32:], JOIN_BOX_WEIGHT * b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ConfigError):
        fs.flip(x)  # no feature-space flip: the exact four-way search is used
