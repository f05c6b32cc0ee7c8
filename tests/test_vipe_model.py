"""VIPE* model API: inputs, flips, the 64-d mode, saving and loading."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vpd_stream.errors import ModelError
from vpd_stream.models.vipe import (INPUT_DIM, Vipe, VipeConfig, VipeTeacher, embed_poses, load_vipe,
                                    normalize_batch, pose_inputs, save_vipe, vflip_inputs)
from vpd_stream.skeleton import flip_keypoints_image, normalize_pose


def _model(**kw) -> Vipe:
    torch.manual_seed(0)
    return Vipe(VipeConfig(hidden=64, **kw)).eval()


def _keypoints(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(100, 500, (n, 13, 2))
    return np.concatenate([xy, rng.uniform(0, 1, (n, 13, 1))], axis=-1).astype(np.float32)


def test_normalize_batch_matches_the_skeleton_module():
    kp = _keypoints(20)
    kp[3, :] = 7.0  # degenerate: every joint at one point
    ref = np.stack([normalize_pose(k) for k in kp])
    np.testing.assert_allclose(normalize_batch(kp), ref, atol=1e-5)
    assert np.all(normalize_batch(kp)[3] == 0)


def test_inputs_from_pixels_features_and_scores_agree():
    kp = _keypoints(5)
    kp[..., 2] = 0.05 + 0.95 * kp[..., 2]  # every joint present (score >= VIPE_MIN_SCORE)
    x = pose_inputs(kp)
    assert x.shape == (5, INPUT_DIM) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 26:], kp[..., 2], atol=1e-6)
    feats = normalize_batch(kp).reshape(5, 26)
    np.testing.assert_allclose(pose_inputs(feats, kp[..., 2]), x, atol=1e-5)  # idempotent normalization
    np.testing.assert_allclose(pose_inputs(kp[..., :2])[:, 26:], 1.0)  # no scores: all 1
    assert pose_inputs(kp.reshape(1, 5, 13, 3)).shape == (1, 5, INPUT_DIM)


def test_missing_joints_get_the_training_convention():
    """Score below VIPE_MIN_SCORE or NaN coordinates: hip centre (0, 0) and score 0, as
    offline_train/vipe/cameras.py drops joints; the present joints are unchanged."""
    from vpd_stream.models.vipe import VIPE_MIN_SCORE as MIN_JOINT_SCORE
    kp = _keypoints(4, seed=3)
    kp[..., 2] = 0.9
    ref = pose_inputs(kp)
    kp[0, 5, 2] = 0.0  # a wrist marked missing, stale coordinates kept
    kp[1, 9, :2] = np.nan  # a knee with no coordinates at all
    kp[2, 12, 2] = MIN_JOINT_SCORE - 0.01  # unreliable: below the threshold
    kp[3, 0, :2] = (1e4, -1e4)  # a far-off stale head with score 0
    kp[3, 0, 2] = 0.0
    x = pose_inputs(kp)
    assert np.isfinite(x).all()
    for frame, joint in ((0, 5), (1, 9), (2, 12), (3, 0)):
        assert x[frame, 2 * joint] == 0 and x[frame, 2 * joint + 1] == 0 and x[frame, 26 + joint] == 0
        keep = np.ones(INPUT_DIM, bool)
        keep[[2 * joint, 2 * joint + 1, 26 + joint]] = False
        np.testing.assert_allclose(x[frame, keep], ref[frame, keep], atol=1e-5)
    # the mirrored input keeps the missing joint missing, at its mirrored slot
    xf = pose_inputs(kp, flip=True)
    assert xf[0, 26 + 6] == 0 and xf[0, 2 * 6] == 0


def test_embeddings_are_unit_deterministic_and_batched():
    m = _model()
    kp = _keypoints(50)
    e = embed_poses(m, kp)
    assert e.shape == (50, 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e, embed_poses(m, kp))
    np.testing.assert_allclose(embed_poses(m, kp, batch_size=7), e, atol=1e-6)
    assert embed_poses(m, kp.reshape(5, 10, 13, 3)).shape == (5, 10, 32)


def test_flipped_embedding_is_the_embedding_of_the_mirrored_image():
    m = _model()
    kp = _keypoints(8)
    width = 640
    mirrored = np.stack([flip_keypoints_image(k, width) for k in kp])
    np.testing.assert_allclose(embed_poses(m, kp, flip=True), embed_poses(m, mirrored), atol=1e-5)
    np.testing.assert_allclose(embed_poses(m, mirrored, flip=True), embed_poses(m, kp), atol=1e-5)


def test_vflip_mode_concatenates_the_upside_down_pose():
    m32 = _model()
    m64 = _model(vflip=True)
    m64.load_state_dict(m32.state_dict())
    kp = _keypoints(6)
    e = embed_poses(m64, kp)
    assert e.shape == (6, 64) and m64.output_dim == 64
    np.testing.assert_allclose(e[:, :32], embed_poses(m32, kp), atol=1e-6)
    upside = kp.copy()
    upside[..., 1] = 1000.0 - upside[..., 1]
    np.testing.assert_allclose(e[:, 32:], embed_poses(m32, upside), atol=1e-5)
    x = torch.from_numpy(pose_inputs(kp))
    torch.testing.assert_close(vflip_inputs(vflip_inputs(x)), x)


def test_save_load_roundtrip_and_errors(tmp_path):
    m = _model(vflip=True)
    path = save_vipe(m, tmp_path / "v.safetensors", extra={"note": "test"})
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["format"] == "vpd-stream/vipe" and meta["output_dim"] == 64
    loaded = load_vipe(path)
    kp = _keypoints(4)
    np.testing.assert_allclose(embed_poses(loaded, kp), embed_poses(m, kp), atol=1e-6)
    assert load_vipe(path, vflip=False).output_dim == 32
    teacher = VipeTeacher.load(path)
    e, ef = teacher(kp)
    assert teacher.dim == 64 and e.shape == ef.shape == (4, 64)

    with pytest.raises(ModelError, match="not found"):
        load_vipe(tmp_path / "missing.safetensors")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_vipe(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="sidecar"):
        load_vipe(path)
