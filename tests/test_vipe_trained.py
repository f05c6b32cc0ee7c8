"""The committed VIPE* model: view invariance and chirality on held-out poses."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.vipe.cameras import CameraConfig, augment_views, project, sample_cameras
from offline_train.vipe.canonical import bone_directions, canonicalize, max_bone_angle_deg, mirror_poses
from offline_train.vipe.synthetic import SyntheticPoses
from offline_train.vipe.train import cross_view_hits
from vpd_stream.models.vipe import DEFAULT_WEIGHTS, embed_poses, load_vipe
from vpd_stream.skeleton import FLIP_PERM

CLEAN = CameraConfig(noise_std=(0.0, 0.0), drop_prob=0.0, low_score_prob=0.0)


@pytest.fixture(scope="module")
def model():
    return load_vipe(DEFAULT_WEIGHTS)


def _views(poses: np.ndarray, seed: int) -> np.ndarray:
    """(n, 13, 3) world poses → (n, 13, 3) pixel keypoints (score 1) from random cameras."""
    rng = np.random.default_rng(seed)
    xy = project(poses, sample_cameras(rng, poses, CLEAN))
    return np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)


def _held_out(n: int) -> np.ndarray:
    return SyntheticPoses().sample(np.random.default_rng(123_456), n)  # a seed training never uses


def test_committed_model_loads_with_its_training_record(model):
    import json

    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert meta["extra"]["train"]["data"] == "both" and model.output_dim == 32


def test_views_of_one_pose_beat_normalized_2d_joints(model):
    poses = _held_out(600)
    bones = bone_directions(canonicalize(poses))
    rng = np.random.default_rng(5)
    a = augment_views(project(poses, sample_cameras(rng, poses, CameraConfig())), rng, CameraConfig())
    b = augment_views(project(poses, sample_cameras(rng, poses, CameraConfig())), rng, CameraConfig())
    vipe = cross_view_hits(embed_poses(model, a[:, :26], a[:, 26:]), embed_poses(model, b[:, :26], b[:, 26:]), bones, 30.0)
    joints = cross_view_hits(a[:, :26], b[:, :26], bones, 30.0)
    assert vipe > joints + 0.1, (vipe, joints)


def test_same_pose_is_closer_than_a_different_pose(model):
    poses = _held_out(400)
    e1, e2 = embed_poses(model, _views(poses, 1)), embed_poses(model, _views(poses, 2))
    other = np.roll(e2, 1, axis=0)
    bones = bone_directions(canonicalize(poses))
    different = max_bone_angle_deg(bones, np.roll(bones, 1, axis=0)).diagonal() >= 45.0
    same_d = np.linalg.norm(e1 - e2, axis=1)[different]
    other_d = np.linalg.norm(e1 - other, axis=1)[different]
    assert (same_d < other_d).mean() > 0.85


def test_flipped_embedding_is_the_mirrored_pose_not_the_same_pose(model):
    """Chirality: E(flip p) ≈ E(the mirrored 3D pose seen from anywhere), ≠ E(p)."""
    poses = _held_out(400)
    bones = bone_directions(canonicalize(poses))
    asymmetric = max_bone_angle_deg(bones, bone_directions(canonicalize(mirror_poses(poses)))).diagonal() >= 45.0
    p = _views(poses, 3)
    flipped = embed_poses(model, p, flip=True)
    mirrored_elsewhere = embed_poses(model, _views(mirror_poses(poses), 4))
    d_mirror = np.linalg.norm(flipped - mirrored_elsewhere, axis=1)[asymmetric]
    d_self = np.linalg.norm(flipped - embed_poses(model, p), axis=1)[asymmetric]
    assert asymmetric.mean() > 0.5
    assert (d_mirror < d_self).mean() > 0.75
    # The image-level identity the student's flip augmentation relies on holds exactly.
    img = p.copy()
    img = img[:, FLIP_PERM]
    img[..., 0] = 1000.0 - img[..., 0]
    np.testing.assert_allclose(embed_poses(model, img), flipped, atol=1e-5)
