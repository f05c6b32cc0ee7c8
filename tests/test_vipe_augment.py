"""Pose-space augmentation of MSR Action3D skeletons (offline_train/vipe/augment.py)."""
from __future__ import annotations

import numpy as np

from offline_train.vipe.augment import LIMBS, UPPER, AugmentedPoses, PoseAugmentConfig, augment_poses
from offline_train.vipe.canonical import bone_directions, canonicalize, max_bone_angle_deg
from offline_train.vipe.synthetic import SyntheticPoses
from vpd_stream.skeleton import JOINT

LOWER = tuple(j for j in range(13) if j not in UPPER)


def _poses(n: int = 300, seed: int = 0) -> np.ndarray:
    return SyntheticPoses().sample(np.random.default_rng(seed), n)


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return max_bone_angle_deg(bone_directions(canonicalize(a)), bone_directions(canonicalize(b))).diagonal()


def _bone_lengths(p: np.ndarray) -> np.ndarray:
    return np.stack([np.linalg.norm(p[:, m] - p[:, r], axis=-1) for r, m, _ in LIMBS]
                    + [np.linalg.norm(p[:, e] - p[:, m], axis=-1) for _, m, e in LIMBS], -1)


def test_no_operation_only_recentres_and_turns_the_pose():
    p = _poses()
    q = augment_poses(p, np.random.default_rng(1), PoseAugmentConfig())
    assert not PoseAugmentConfig().active
    np.testing.assert_allclose(_angles(p, q), 0.0, atol=1e-3)
    np.testing.assert_allclose(_bone_lengths(q), _bone_lengths(p), rtol=1e-9)
    hips = 0.5 * (q[:, JOINT["left_hip"]] + q[:, JOINT["right_hip"]])
    np.testing.assert_allclose(hips, 0.0, atol=1e-9)


def test_mixing_puts_one_poses_upper_body_on_anothers_legs():
    p = _poses()
    q = augment_poses(p, np.random.default_rng(2), PoseAugmentConfig(mix_prob=1.0))
    c, cq = canonicalize(p)[:, :13], canonicalize(q)[:, :13]
    # the legs are each pose's own (relative to its hips) ...
    legs = [JOINT[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")]
    hip_d = lambda x: x[:, legs] - x[:, [JOINT["left_hip"]]]  # noqa: E731
    own_legs = np.linalg.norm(hip_d(c) - hip_d(cq), axis=-1).max(1) < 0.15
    assert own_legs.mean() > 0.6  # the torso may face another way after mixing: most keep their legs
    # ... while the whole pose mostly changes by a large angle
    assert np.median(_angles(p, q)) > 30.0


def test_jitter_turns_limbs_and_keeps_bone_lengths():
    p = _poses()
    q = augment_poses(p, np.random.default_rng(3), PoseAugmentConfig(jitter_prob=1.0, jitter_deg=15.0))
    np.testing.assert_allclose(_bone_lengths(q), _bone_lengths(p), rtol=1e-6)
    a = _angles(p, q)
    assert 5.0 < np.median(a) < 60.0


def test_length_variation_stays_within_its_range_and_keeps_directions():
    p = _poses()
    q = augment_poses(p, np.random.default_rng(4), PoseAugmentConfig(length_prob=1.0, length_jitter=0.1))
    ratio = _bone_lengths(q) / _bone_lengths(p)
    assert ratio.min() >= 0.9 - 1e-9 and ratio.max() <= 1.1 + 1e-9 and ratio.std() > 0.03
    np.testing.assert_allclose(_angles(p, q), 0.0, atol=1e-2)


def test_augmented_source_wraps_a_source():
    src = AugmentedPoses(SyntheticPoses(), PoseAugmentConfig(mix_prob=0.5))
    out = src.sample(np.random.default_rng(5), 17)
    assert out.shape == (17, 13, 3) and np.isfinite(out).all() and src.name == "synthetic+augment"
