"""VIPE* training views that miss joints like Penn Action: self-occlusion, truncation, box inputs."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.vipe import synthetic
from offline_train.vipe.cameras import (CameraConfig, augment_views, camera_coordinates, project, render_views,
                                        sample_cameras, self_occluded)
from offline_train.vipe.synthetic import LIMITS, PARAM_NAMES, SyntheticPoses
from offline_train.vipe.variant import config_from_json
from vpd_stream.models.vipe import Vipe, VipeConfig, embed_poses, load_vipe, pose_inputs, save_vipe
from vpd_stream.skeleton import JOINT, box_features


def _relaxed() -> np.ndarray:
    angles = np.array([[LIMITS[k][2] for k in PARAM_NAMES]])
    lengths = {k: np.full(1, v) for k, v in synthetic.BONE_LENGTHS.items()}
    return synthetic.forward_kinematics(angles, lengths, np.eye(3)[None])


def _camera(az: float) -> CameraConfig:
    return CameraConfig(azimuth_deg=(az, az), elevation_deg=(5.0, 5.0), roll_deg=(0.0, 0.0),
                        focal_px=(1000.0, 1000.0), distance_m=(4.0, 4.0), target_jitter_m=0.0)


def _occluded(pose: np.ndarray, az: float) -> np.ndarray:
    cams = sample_cameras(np.random.default_rng(0), pose, _camera(az))
    return self_occluded(camera_coordinates(pose, cams))[0]


def test_a_frontal_view_of_a_relaxed_stance_hides_no_joint():
    assert not _occluded(_relaxed(), 0.0).any()
    assert not _occluded(_relaxed(), 180.0).any()  # from behind: the arms hang beside the torso


def test_a_side_view_hides_the_far_shoulder_and_hip_not_the_near_ones():
    p = _relaxed()  # faces +z, left at +x; a camera at azimuth +90 sits on the person's left
    occ = _occluded(p, 90.0)
    assert occ[JOINT["right_shoulder"]] and occ[JOINT["right_hip"]]
    assert not occ[JOINT["left_shoulder"]] and not occ[JOINT["left_hip"]] and not occ[JOINT["nose"]]
    mirror = _occluded(p, -90.0)
    assert mirror[JOINT["left_shoulder"]] and mirror[JOINT["left_hip"]]
    assert not mirror[JOINT["right_shoulder"]] and not mirror[JOINT["right_hip"]]


def test_occlusion_and_truncation_drop_joints_at_about_the_configured_rates():
    rng = np.random.default_rng(1)
    p = SyntheticPoses().sample(rng, 2000)
    cfg = CameraConfig(drop_prob=0.0, low_score_prob=0.0, occlusion_prob=1.0, truncate_prob=0.0)
    cams = sample_cameras(rng, p, cfg)
    occ = self_occluded(camera_coordinates(p, cams))
    x = augment_views(project(p, cams), rng, cfg, occ)
    assert np.array_equal(x[:, 26:] == 0, occ)  # every occluded joint dropped, nothing else
    assert 0.05 < occ.mean() < 0.4
    cut = augment_views(project(p, cams), rng, CameraConfig(drop_prob=0.0, truncate_prob=1.0))
    ankles = [JOINT["left_ankle"], JOINT["right_ankle"]]
    knees = [JOINT["left_knee"], JOINT["right_knee"]]
    assert np.all(cut[:, 26:][:, ankles] == 0)
    assert 0.4 < (cut[:, 26:][:, knees] == 0).all(1).mean() < 0.6


def test_the_default_cameras_draw_exactly_as_before_the_occlusion_options():
    # occlusion_prob = truncate_prob = 0 draw no extra random numbers: old configs reproduce.
    p = SyntheticPoses().sample(np.random.default_rng(2), 64)
    a = render_views(p, np.random.default_rng(3), CameraConfig())
    rng = np.random.default_rng(3)
    b = augment_views(project(p, sample_cameras(rng, p, CameraConfig())), rng, CameraConfig())
    np.testing.assert_array_equal(a, b)


def test_box_inputs_take_the_box_and_centre_of_the_kept_joints_only():
    rng = np.random.default_rng(4)
    p = SyntheticPoses().sample(rng, 300)
    cfg = CameraConfig(noise_std=(0.0, 0.0), drop_prob=0.3, low_score_prob=0.0)
    cams = sample_cameras(rng, p, cfg)
    img = project(p, cams)
    x = augment_views(img, np.random.default_rng(5), cfg, inputs="box")
    kept = x[:, 26:] > 0
    ref = box_features(np.concatenate([img, kept[..., None].astype(float)], -1))
    np.testing.assert_allclose(x[:, :26], ref, atol=1e-5)
    # the same inputs at test time: pose_inputs with the model's box normalization
    kp = np.concatenate([img, x[:, 26:, None]], -1)
    np.testing.assert_allclose(pose_inputs(kp, inputs="box"), x, atol=1e-5)


def test_box_inputs_ignore_stale_coordinates_of_missing_joints_and_survive_save_load(tmp_path):
    model = Vipe(VipeConfig(hidden=32, inputs="box"))
    rng = np.random.default_rng(6)
    kp = np.concatenate([rng.uniform(100, 400, (8, 13, 2)), np.ones((8, 13, 1))], -1)
    kp[:, JOINT["left_hip"], 2] = 0.0  # missing, with a stale far-away position
    moved = kp.copy()
    moved[:, JOINT["left_hip"], :2] = 5000.0
    np.testing.assert_allclose(embed_poses(model, kp), embed_poses(model, moved), atol=1e-6)
    path = save_vipe(model, tmp_path / "box.safetensors")
    loaded = load_vipe(path)
    assert loaded.cfg.inputs == "box"
    np.testing.assert_allclose(embed_poses(loaded, kp), embed_poses(model, kp), atol=1e-6)
    # a torso-input model reads the same keypoints differently
    torso = Vipe(VipeConfig(hidden=32))
    torso.load_state_dict(model.state_dict())
    assert np.abs(embed_poses(torso, kp) - embed_poses(model, kp)).max() > 1e-3


def test_unknown_input_normalization_is_refused():
    with pytest.raises(ValueError, match="inputs"):
        VipeConfig(inputs="pixels")
    with pytest.raises(ValueError, match="inputs"):
        pose_inputs(np.zeros((2, 13, 3)), inputs="pixels")


def test_variant_json_sets_nested_configs_and_rejects_unknown_keys():
    cfg = config_from_json({"steps": 7, "model": {"inputs": "box", "dim": 64},
                            "cameras": {"occlusion_prob": 0.5, "elevation_deg": [0, 30]}})
    assert cfg.steps == 7 and cfg.model.inputs == "box" and cfg.model.dim == 64
    assert cfg.cameras.occlusion_prob == 0.5 and cfg.cameras.elevation_deg == (0, 30)
    with pytest.raises(TypeError):
        config_from_json({"cameras": {"no_such_option": 1}})
