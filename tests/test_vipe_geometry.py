"""VIPE* training data geometry: canonical features, procedural poses, cameras, chirality."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.vipe import canonical, synthetic
from offline_train.vipe.cameras import CameraConfig, augment_views, project, sample_cameras
from offline_train.vipe.synthetic import LIMITS, PARAM_NAMES, SyntheticConfig, SyntheticPoses
from vpd_stream.models.vipe import normalize_batch
from vpd_stream.skeleton import FLIP_PERM, JOINT


def _yaw(t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _relaxed(n: int = 1) -> np.ndarray:
    angles = np.tile([LIMITS[k][2] for k in PARAM_NAMES], (n, 1))
    lengths = {k: np.full(n, v) for k, v in synthetic.BONE_LENGTHS.items()}
    return synthetic.forward_kinematics(angles, lengths, np.tile(np.eye(3), (n, 1, 1)))


def test_relaxed_pose_faces_plus_z_with_left_at_plus_x():
    p = _relaxed()[0]
    assert p[JOINT["left_shoulder"], 0] > 0 > p[JOINT["right_shoulder"], 0]
    assert p[JOINT["nose"], 2] > 0  # the face points where the torso normal does
    np.testing.assert_allclose(canonical.torso_normal(p[None])[0], [0, 0, 1], atol=1e-6)


def test_canonical_features_ignore_heading_and_position():
    rng = np.random.default_rng(0)
    poses = SyntheticPoses().sample(rng, 64)
    moved = np.stack([p @ _yaw(rng.uniform(-np.pi, np.pi)).T + rng.normal(size=3) for p in poses])
    f, g = canonical.canonical_features(poses), canonical.canonical_features(moved)
    assert f.shape == (64, canonical.FEATURE_DIM)
    np.testing.assert_allclose(f, g, atol=1e-4)
    # ... but not a tilt: lying down is a different pose for the decoder.
    tilted = poses @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T
    assert np.abs(canonical.canonical_features(tilted) - f).max() > 0.5


def test_canonical_features_parts_are_unit_vectors_and_cosines():
    f = canonical.canonical_features(SyntheticPoses().sample(np.random.default_rng(1), 32))
    nb, nj = canonical.NUM_BONES, 13
    bones = f[:, :3 * nb].reshape(-1, nb, 3)
    hips = f[:, 3 * nb:3 * (nb + nj)].reshape(-1, nj, 3)
    np.testing.assert_allclose(np.linalg.norm(bones, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(hips, axis=-1), 1.0, atol=1e-5)
    assert np.all(np.abs(f[:, -len(canonical.ANGLES):]) <= 1.0 + 1e-6)


def test_elbow_and_knee_angles_follow_the_parameters():
    n = 50
    rng = np.random.default_rng(2)
    angles = synthetic.sample_angles(rng, n, SyntheticConfig())
    lengths = synthetic.sample_lengths(rng, n, 0.1)
    p = synthetic.forward_kinematics(angles, lengths, synthetic.random_rotations(rng, n))
    for side, name in (("l", "left"), ("r", "right")):
        for joint, a, b, param in (("elbow", "shoulder", "wrist", "elbow"), ("knee", "hip", "ankle", "knee")):
            j = p[:, JOINT[f"{name}_{joint}"]]
            u = p[:, JOINT[f"{name}_{a}"]] - j
            v = p[:, JOINT[f"{name}_{b}"]] - j
            cos = (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
            np.testing.assert_allclose(np.degrees(np.arccos(np.clip(cos, -1, 1))),
                                       180.0 - angles[:, PARAM_NAMES.index(f"{side}_{param}")], atol=1e-4)


def test_sampled_angles_stay_within_limits_and_motions_are_smooth():
    rng = np.random.default_rng(3)
    cfg = SyntheticConfig()
    a = synthetic.sample_angles(rng, 2000, cfg)
    lo = np.array([LIMITS[k][0] for k in PARAM_NAMES])
    hi = np.array([LIMITS[k][1] for k in PARAM_NAMES])
    assert np.all(a >= lo) and np.all(a <= hi)
    assert np.all(a.max(0) - a.min(0) > 0.8 * (hi - lo))  # the whole range is explored
    m = synthetic.sample_motions(rng, 10, cfg)
    assert m.shape == (10, cfg.motion_length, len(PARAM_NAMES))
    step = np.abs(np.diff(m, axis=1)).max()
    assert step < (hi - lo).max() * 2.0 / cfg.motion_length * (cfg.motion_keys - 1)
    assert np.all(m >= lo - 1e-9) and np.all(m <= hi + 1e-9)


def test_generator_is_deterministic_per_seed():
    a = SyntheticPoses().sample(np.random.default_rng(7), 16)
    b = SyntheticPoses().sample(np.random.default_rng(7), 16)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()


def test_mirror_is_an_involution_and_keeps_handedness():
    p = SyntheticPoses().sample(np.random.default_rng(4), 16)
    np.testing.assert_allclose(canonical.mirror_poses(canonical.mirror_poses(p)), p)
    # A real pose (left on the person's left) stays real: canonical features of a mirrored
    # relaxed pose equal the relaxed pose's own (it is left/right symmetric).
    r = _relaxed()
    np.testing.assert_allclose(canonical.canonical_features(canonical.mirror_poses(r)),
                               canonical.canonical_features(r), atol=1e-5)


def test_max_bone_angle():
    b = canonical.bone_directions(canonical.canonicalize(SyntheticPoses().sample(np.random.default_rng(5), 8)))
    d = canonical.max_bone_angle_deg(b, b)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-3)
    np.testing.assert_allclose(d, d.T, atol=1e-6)
    assert (d[~np.eye(8, dtype=bool)] > 0).all() and d.max() <= 180.0


def _fixed(az: float, el: float, roll: float) -> CameraConfig:
    return CameraConfig(azimuth_deg=(az, az), elevation_deg=(el, el), roll_deg=(roll, roll),
                        focal_px=(1000.0, 1000.0), distance_m=(4.0, 4.0), target_jitter_m=0.0)


def test_frontal_camera_sees_left_shoulder_on_image_right():
    p = _relaxed()
    rng = np.random.default_rng(0)
    front = project(p, sample_cameras(rng, p, _fixed(0, 0, 0)))[0]
    back = project(p, sample_cameras(rng, p, _fixed(180, 0, 0)))[0]
    assert front[JOINT["left_shoulder"], 0] > front[JOINT["right_shoulder"], 0]
    assert back[JOINT["left_shoulder"], 0] < back[JOINT["right_shoulder"], 0]
    assert front[JOINT["nose"], 1] < front[JOINT["left_ankle"], 1]  # image y points down


def test_camera_rotations_are_proper_and_projection_is_pinhole():
    rng = np.random.default_rng(1)
    p = SyntheticPoses().sample(rng, 32)
    cams = sample_cameras(rng, p, CameraConfig())
    np.testing.assert_allclose(cams.rotation @ cams.rotation.transpose(0, 2, 1), np.tile(np.eye(3), (32, 1, 1)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(cams.rotation), 1.0, atol=1e-9)
    cam = np.einsum("ij,kj->ki", cams.rotation[0], p[0] - cams.centre[0])
    assert (cam[:, 2] > 0).all()
    np.testing.assert_allclose(project(p, cams)[0], cams.focal[0] * cam[:, :2] / cam[:, 2:], rtol=1e-9)


def test_mirrored_pose_from_mirrored_camera_is_the_flipped_image():
    """The chain behind the flip property: mirror the world, get the mirror image."""
    rng = np.random.default_rng(2)
    p = SyntheticPoses().sample(rng, 16)
    img = normalize_batch(project(p, sample_cameras(rng, p, _fixed(35, 20, 10))))
    img_m = normalize_batch(project(canonical.mirror_poses(p),
                                    sample_cameras(rng, p, _fixed(-35, 20, -10))))
    flipped = img[:, FLIP_PERM].copy()
    flipped[..., 0] *= -1
    np.testing.assert_allclose(img_m, flipped, atol=1e-9)


def test_augmented_views_drop_and_score_joints():
    rng = np.random.default_rng(3)
    p = SyntheticPoses().sample(rng, 400)
    cfg = CameraConfig(drop_prob=0.2)
    x = augment_views(project(p, sample_cameras(rng, p, cfg)), rng, cfg)
    assert x.shape == (400, 39) and x.dtype == np.float32
    xy, scores = x[:, :26].reshape(-1, 13, 2), x[:, 26:]
    dropped = scores == 0
    assert 0.15 < dropped.mean() < 0.25
    assert np.all(xy[dropped] == 0)
    assert np.all((scores >= 0) & (scores <= 1))
    clean = augment_views(project(p, sample_cameras(rng, p, cfg)), rng,
                          CameraConfig(noise_std=(0, 0), drop_prob=0, low_score_prob=0))
    assert np.all(clean[:, 26:] >= 0.5)


def test_invalid_joint_count_is_rejected():
    with pytest.raises(ValueError):
        from vpd_stream.models.vipe import pose_inputs
        pose_inputs(np.zeros((5, 12, 2)))
