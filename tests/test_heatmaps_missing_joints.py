"""JMRN heatmaps follow the one missing-joint rule (issue 15): a missing joint adds nothing
to its channel in the frames where it is missing, and takes no part in the crop box.

Pinned on synthetic poses, on real Penn Action clips with invisible joints (stale
coordinates) and on BlazePose teacher output with low-score joints; the training data
(``offline_train.jmrn.evaluate.load_penn_maps``) is rendered by the same function.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vpd_stream import skeleton as sk
from vpd_stream.heatmaps import HeatmapConfig, clip_heatmaps, time_encoding

STANDING = np.array([
    [0.0, -1.7], [-0.2, -1.4], [0.2, -1.4], [-0.3, -1.1], [0.3, -1.1], [-0.35, -0.8], [0.35, -0.8],
    [-0.15, -0.9], [0.15, -0.9], [-0.15, -0.5], [0.15, -0.5], [-0.15, 0.0], [0.15, 0.0],
], dtype=np.float32) * 100 + np.float32([320, 400])
CFG = HeatmapConfig(height=32, width=32, sigma=1.0)


def _clip(t: int = 12, score: float = 0.9) -> np.ndarray:
    kp = np.zeros((t, 13, 3), np.float32)
    kp[..., :2] = STANDING
    kp[..., 2] = score
    return kp


def test_the_rule_is_the_default_and_the_training_preset() -> None:
    from offline_train.jmrn.evaluate import CPU_HEATMAP

    assert HeatmapConfig().min_score == sk.MIN_JOINT_SCORE
    assert CPU_HEATMAP.min_score == sk.MIN_JOINT_SCORE


def test_low_score_nan_and_non_finite_joints_are_not_drawn_and_do_not_move_the_box() -> None:
    kp = _clip()
    kp[:, 3, 2] = sk.MIN_JOINT_SCORE - 1e-3  # missing
    kp[:, 4, 2] = sk.MIN_JOINT_SCORE  # at the threshold: present
    kp[:, 5, 2] = np.nan  # a NaN score is missing
    ref = clip_heatmaps(kp, CFG)
    assert not ref[3].any() and not ref[5].any()
    assert ref[4].max() > 0.5 and (ref[[0, 1, 2, 6, 7, 8, 9, 10, 11, 12]].max(axis=(1, 2, 3)) > 0.5).all()
    for stale in ((1e4, -1e4), (0.0, 0.0), (np.nan, np.nan), (np.inf, 5.0)):
        moved = kp.copy()
        moved[:, 3, :2] = stale
        moved[:, 5, :2] = stale
        np.testing.assert_allclose(clip_heatmaps(moved, CFG), ref, atol=1e-6)
    # non-finite coordinates are missing whatever the score (and with 2-column input)
    nan_xy = kp.copy()
    nan_xy[:, 3, :2] = np.nan
    nan_xy[:, 3, 2] = 1.0
    assert not clip_heatmaps(nan_xy, CFG)[3].any()
    two = nan_xy[..., :2]
    assert not clip_heatmaps(two, CFG)[3].any() and clip_heatmaps(two, CFG)[4].max() > 0.5
    # the old convention (min_score 0) draws the stale joint where it was left
    stale = clip_heatmaps(kp, replace(CFG, min_score=0.0))
    assert stale[3].max() > 0.5


def test_a_joint_missing_in_some_frames_keeps_only_the_time_weight_of_its_present_frames() -> None:
    t = 11
    kp = _clip(t)
    absent = np.zeros(t, bool)
    absent[[1, 2, 7, 8, 9]] = True
    kp[absent, 6, 2] = 0.1
    kp[absent, 6, :2] = (0.0, 0.0)  # stale coordinates far outside the athlete
    maps = clip_heatmaps(kp, CFG)
    full = clip_heatmaps(_clip(t), CFG)
    enc = time_encoding(t)
    expected = enc[~absent].sum(0) / enc.sum(0)  # the share of each time channel left
    np.testing.assert_allclose(maps[6].sum(axis=(1, 2)) / full[6].sum(axis=(1, 2)), expected, atol=1e-5)
    np.testing.assert_allclose(maps[6] / expected[:, None, None], full[6], atol=1e-5)  # same place
    np.testing.assert_allclose(np.delete(maps, 6, 0), np.delete(full, 6, 0), atol=1e-6)


def test_a_clip_with_no_present_joint_gives_empty_maps() -> None:
    maps = clip_heatmaps(_clip(score=0.2), CFG)
    assert maps.shape == (13, 3, 32, 32) and not maps.any()


# --- real Penn Action clips -------------------------------------------------------------

@pytest.fixture(scope="module")
def penn_clips(data_dir: Path):
    from offline_train.penn_action import load_clip

    labels = data_dir / "penn_action" / "labels"
    if not labels.is_dir():
        pytest.skip(f"Penn Action labels not found under {labels}")
    return [load_clip(p) for p in sorted(labels.glob("*.mat"))[:3]]


def test_penn_invisible_joints_leave_their_channels_empty_whatever_their_stale_positions(penn_clips) -> None:
    from offline_train.jmrn.evaluate import CPU_HEATMAP

    clip = penn_clips[0]  # 0001 (baseball pitch): invisible joints in most frames
    kp = clip.keypoints
    invisible = kp[..., 2] == 0
    assert 0.05 < invisible.mean() < 0.9
    maps = clip_heatmaps(kp, CPU_HEATMAP)
    rng = np.random.default_rng(0)
    scrambled = kp.copy()
    scrambled[invisible, :2] = rng.uniform(-1e3, 1e3, (int(invisible.sum()), 2))
    scrambled[invisible & (rng.random(invisible.shape) < 0.3), :2] = np.nan
    np.testing.assert_allclose(clip_heatmaps(scrambled, CPU_HEATMAP), maps, atol=1e-6)
    # each joint's map carries exactly the time weight of the frames where it is visible
    enc = time_encoding(len(kp))
    share = np.einsum("tj,tc->jc", (~invisible).astype(np.float64), enc) / enc.sum(0)
    never = ~(~invisible).any(0)
    assert not maps[never].any()
    stale = clip_heatmaps(kp[..., :2], CPU_HEATMAP)  # the old convention: every joint drawn
    changed = invisible.any(0)
    assert changed.any()
    diff = np.abs(stale - maps).max(axis=(1, 2, 3))
    assert (diff[changed] > 1e-3).all() and share[changed].min() < 1.0
    np.testing.assert_allclose(np.abs(stale - maps)[~changed], 0.0, atol=1e-6)  # same box: always-visible joints agree


def test_training_maps_are_clip_heatmaps_of_penn_keypoints_with_visibility(penn_clips, data_dir, tmp_path) -> None:
    from offline_train.jmrn.evaluate import CPU_HEATMAP, load_penn_maps

    data = load_penn_maps(data_dir / "penn_action", CPU_HEATMAP, cache_dir=tmp_path, limit=len(penn_clips))
    assert data.ids == [c.clip_id for c in penn_clips]
    for clip, maps in zip(penn_clips, data.maps):
        np.testing.assert_allclose(maps.astype(np.float32), clip_heatmaps(clip.keypoints, CPU_HEATMAP), atol=2e-3)
    invisible_everywhere = (penn_clips[0].keypoints[..., 2] == 0).all(0)
    if invisible_everywhere.any():
        assert not data.maps[0][invisible_everywhere].any()


# --- the BlazePose teacher -------------------------------------------------------------

@pytest.fixture(scope="module")
def golf_teacher_poses(videos_dir: Path) -> np.ndarray:
    """BlazePose on the first 8 frames of the golf address (side view): the far arm is
    hidden behind the body and scored far below the threshold."""
    import av

    from plugins.pose import PosePlugin
    from vpd_stream.annotations import Track
    from vpd_stream.frame import Frame

    path = videos_dir / "golf_swing_golfdb.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    plugin = PosePlugin()
    plugin.setup(plugin.context)
    frames = []
    try:
        with av.open(str(path)) as container:
            for i, f in enumerate(container.decode(video=0)):
                if i == 8:
                    break
                frame = Frame("golf", i, i / 25.0, f.to_ndarray(format="rgb24"))
                frame.annotations["tracks"] = {1: Track(1, np.array([19.4, 116.0, 250.0, 480.1], np.float32), 1.0, True)}
                frames.append(frame)
        plugin.process(frames)
    finally:
        plugin.close()
    return np.stack([f.annotations["pose"][1].keypoints for f in frames]).astype(np.float32)


def test_teacher_low_score_joints_are_left_out_of_the_heatmaps(golf_teacher_poses) -> None:
    from offline_train.jmrn.evaluate import CPU_HEATMAP

    kp = golf_teacher_poses
    low = kp[..., 2] < sk.MIN_JOINT_SCORE
    hidden = [sk.JOINT["left_elbow"], sk.JOINT["left_wrist"]]
    assert low[:, hidden].all(), kp[:, hidden, 2]
    assert low.mean() < 0.5  # the hidden arm, not the whole body
    maps = clip_heatmaps(kp, CPU_HEATMAP)
    assert not maps[hidden].any()
    present_always = (~low).all(0)
    assert (maps[present_always].max(axis=(1, 2, 3)) > 0.5).all()
    moved = kp.copy()
    moved[low, :2] += 300.0  # wherever BlazePose put the hidden joints, nothing changes
    np.testing.assert_allclose(clip_heatmaps(moved, CPU_HEATMAP), maps, atol=1e-6)
    # the scores themselves do not weight the maps: any score at or above the threshold draws fully
    sure = kp.copy()
    sure[~low, 2] = 1.0
    np.testing.assert_allclose(clip_heatmaps(sure, CPU_HEATMAP), maps, atol=1e-6)
    assert np.abs(clip_heatmaps(kp, replace(CPU_HEATMAP, min_score=0.0)) - maps).max() > 0.1
