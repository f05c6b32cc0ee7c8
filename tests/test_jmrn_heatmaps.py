"""Per-joint heatmaps: time encoding, rendering, normalization, crop, COCO-17, flip."""
from __future__ import annotations

import numpy as np
import pytest

from vpd_stream.heatmaps import HeatmapConfig, clip_heatmaps, flip_heatmaps, time_encoding


def _static_pose(t: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    kp = rng.uniform(100, 300, size=(13, 2)).astype(np.float32)
    return np.repeat(kp[None], t, axis=0)


def test_time_encoding_ramps() -> None:
    enc = time_encoding(5)  # t = 0, .25, .5, .75, 1
    np.testing.assert_allclose(enc.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(enc[:, 0], [1, 0.5, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(enc[:, 1], [0, 0.5, 1, 0.5, 0], atol=1e-6)
    np.testing.assert_allclose(enc[:, 2], [0, 0, 0, 0.5, 1], atol=1e-6)
    assert time_encoding(1).shape == (1, 3)


def test_static_joint_area_normalized_peak_is_one() -> None:
    maps = clip_heatmaps(_static_pose(), HeatmapConfig(height=64, width=64, sigma=2.0))
    assert maps.shape == (13, 3, 64, 64)
    # A joint that never moves accumulates the most it can: area normalization makes that 1.
    peaks = maps.max(axis=(2, 3))
    assert peaks.max() <= 1.0 + 1e-5
    assert np.median(peaks) > 0.9


def test_moving_joint_is_early_in_channel0_late_in_channel2() -> None:
    t = 21
    kp = _static_pose(t)
    kp[:, 5, 0] = np.linspace(100, 300, t)  # the left wrist moves right
    kp[:, 5, 1] = 200
    maps = clip_heatmaps(kp, HeatmapConfig(height=64, width=64, normalization="max"))
    x_of_peak = [np.unravel_index(maps[5, c].argmax(), maps[5, c].shape)[1] for c in range(3)]
    assert x_of_peak[0] < x_of_peak[1] < x_of_peak[2]
    np.testing.assert_allclose(maps.max(axis=(2, 3)), 1.0, atol=1e-5)  # max normalization


def test_crop_keeps_the_athlete_in_the_grid_and_is_translation_invariant() -> None:
    kp = _static_pose()
    a = clip_heatmaps(kp)
    b = clip_heatmaps(kp + np.float32([500, -80]))
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a[:, :, 0, :].max() < 0.5  # the 10 % margin keeps blobs off the border


def test_coco17_and_scores() -> None:
    kp13 = _static_pose()
    kp17 = np.zeros((len(kp13), 17, 3), np.float32)
    kp17[:, [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], :2] = kp13
    kp17[:, :, 2] = 1.0
    kp17[:, 1:5, :2] = -1000  # eyes and ears: far away, must be dropped
    np.testing.assert_allclose(clip_heatmaps(kp17), clip_heatmaps(kp13), atol=1e-5)
    kp = np.concatenate([kp13, np.ones((*kp13.shape[:2], 1), np.float32)], -1)
    kp[:, 3, 2] = 0.1
    maps = clip_heatmaps(kp, HeatmapConfig(min_score=0.5))
    assert maps[3].max() == 0.0 and maps[4].max() > 0.5
    with pytest.raises(ValueError):
        clip_heatmaps(np.zeros((4, 11, 2)))


def test_flip_matches_rendering_the_mirrored_pose() -> None:
    from vpd_stream.skeleton import FLIP_PERM

    rng = np.random.default_rng(1)
    kp = rng.uniform(0, 200, size=(12, 13, 2)).astype(np.float32)
    mirrored = kp[:, FLIP_PERM].copy()
    mirrored[..., 0] = 1000 - mirrored[..., 0]
    cfg = HeatmapConfig(height=32, width=32, sigma=1.5)
    np.testing.assert_allclose(flip_heatmaps(clip_heatmaps(kp, cfg)), clip_heatmaps(mirrored, cfg), atol=1e-4)
