"""VPD pose normalization on hand-made skeletons."""
from __future__ import annotations

import numpy as np
import pytest

from vpd_stream import skeleton as sk

# A person standing in image pixels (x right, y down), COCO-13 order.
STANDING = np.array([
    [100, 40],  # nose
    [80, 70], [120, 70],  # shoulders (left is on the image left here)
    [70, 100], [130, 100],  # elbows
    [65, 130], [135, 130],  # wrists
    [88, 140], [112, 140],  # hips
    [86, 190], [114, 190],  # knees
    [85, 240], [115, 240],  # ankles
], dtype=np.float32)


def test_joint_tables():
    assert len(sk.COCO13_NAMES) == 13 and sk.FEATURE_DIM == 26
    assert sk.BLAZEPOSE_TO_COCO13 == (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
    for a, b in sk.FLIP_PAIRS:
        assert sk.COCO13_NAMES[a].replace("left", "right") == sk.COCO13_NAMES[b]
    assert sorted(sk.FLIP_PERM.tolist()) == list(range(13))


def test_centred_on_mid_hip_and_scaled_to_half():
    norm = sk.normalize_pose(STANDING)
    mid_hip = (norm[sk.JOINT["left_hip"]] + norm[sk.JOINT["right_hip"]]) / 2
    np.testing.assert_allclose(mid_hip, 0.0, atol=1e-6)
    torso = norm[list(sk.TORSO)]
    largest = max(np.linalg.norm(a - b) for a in torso for b in torso)
    assert largest == pytest.approx(0.5, abs=1e-6)
    # The shoulder-to-opposite-hip diagonal is the largest torso distance here.
    diag = np.linalg.norm(STANDING[1] - STANDING[8])
    np.testing.assert_allclose(norm, (STANDING - STANDING[7:9].mean(0)) * 0.5 / diag, atol=1e-5)


@pytest.mark.parametrize("scale,shift", [(0.25, (0, 0)), (3.0, (500, -20)), (1.0, (-1e3, 7.5))])
def test_translation_and_scale_invariance(scale, shift):
    moved = STANDING * scale + np.array(shift, np.float32)
    np.testing.assert_allclose(sk.normalize_pose(moved), sk.normalize_pose(STANDING), atol=1e-5)


def test_scores_are_ignored_by_normalization_and_averaged_by_mean_score():
    with_scores = np.concatenate([STANDING, np.linspace(0, 1, 13, dtype=np.float32)[:, None]], axis=1)
    np.testing.assert_allclose(sk.normalize_pose(with_scores), sk.normalize_pose(STANDING))
    assert sk.mean_score(with_scores) == pytest.approx(0.5)
    assert sk.pose_features(with_scores).shape == (26,)


def test_flip_twice_is_identity_and_swaps_sides():
    norm = sk.normalize_pose(STANDING)
    flipped = sk.flip_normalized(norm)
    np.testing.assert_allclose(sk.flip_normalized(flipped), norm)
    lw, rw = sk.JOINT["left_wrist"], sk.JOINT["right_wrist"]
    assert flipped[lw][0] == pytest.approx(-norm[rw][0]) and flipped[lw][1] == pytest.approx(norm[rw][1])
    feats = np.stack([norm.reshape(26), flipped.reshape(26)])
    np.testing.assert_allclose(sk.flip_features(feats)[0], flipped.reshape(26))
    np.testing.assert_allclose(sk.flip_features(sk.flip_features(feats)), feats)


def test_mirrored_image_gives_flipped_features():
    """Normalizing a mirrored image's keypoints = flipping the normalized pose."""
    mirrored = sk.flip_keypoints_image(STANDING, width=640)
    np.testing.assert_allclose(sk.normalize_pose(mirrored), sk.flip_normalized(sk.normalize_pose(STANDING)), atol=1e-5)


def test_degenerate_torso_gives_zeros_and_bad_shape_raises():
    assert not sk.normalize_pose(np.ones((13, 2))).any()
    with pytest.raises(ValueError):
        sk.normalize_pose(np.zeros((17, 2)))
