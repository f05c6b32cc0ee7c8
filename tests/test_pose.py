"""The BlazePose teacher on real images and footage."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from plugins.pose import PosePlugin
from plugins.tracker import TrackerPlugin
from vpd_stream import skeleton as sk
from vpd_stream.annotations import Track
from vpd_stream.frame import Frame


@pytest.fixture(scope="module")
def pose_plugin():
    plugin = PosePlugin()
    plugin.setup(plugin.context)
    yield plugin
    plugin.close()


def _messi(videos_dir) -> np.ndarray:
    bgr = cv2.imread(str(videos_dir / "messi5.jpg"))
    if bgr is None:
        pytest.skip("messi5.jpg missing from the real data")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _pose_on(plugin: PosePlugin, rgb: np.ndarray, box, athlete: bool = True):
    frame = Frame("img", 0, 0.0, rgb)
    frame.annotations["tracks"] = {1: Track(1, np.array(box, np.float32), 1.0, athlete)}
    plugin.process([frame])
    return frame, frame.annotations["pose"].get(1)


def test_single_image_pose(videos_dir, pose_plugin):
    rgb = _messi(videos_dir)
    h, w = rgb.shape[:2]
    frame, pose = _pose_on(pose_plugin, rgb, [0, 0, w, h])
    assert pose is not None
    assert pose.keypoints.shape == (13, 3) and pose.keypoints.dtype == np.float32
    assert pose.mean_score >= 0.5
    confident = pose.keypoints[pose.keypoints[:, 2] >= 0.5]
    assert (confident[:, 0] >= -5).all() and (confident[:, 0] <= w + 5).all()
    assert (confident[:, 1] >= -5).all() and (confident[:, 1] <= h + 5).all()
    np.testing.assert_allclose(pose.features, sk.pose_features(pose.keypoints))
    record = pose_plugin.describe(frame)["tracks"][1]
    assert len(record["pose"]) == 13 and all(len(j) == 3 for j in record["pose"])
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    before = image.copy()
    pose_plugin.draw(frame, image)
    assert (image != before).any()


@pytest.mark.parametrize("mode, median_err", [("detect", 0.02), ("roi", 0.03)])
def test_mirrored_image_gives_the_mirrored_pose(videos_dir, mode, median_err):
    """On the tracker's box (the BlazePose detector's body box), as the chain runs it."""
    from plugins.person_detector import BlazePoseDetector

    rgb = _messi(videos_dir)
    w = rgb.shape[1]
    detector = BlazePoseDetector()
    (found,) = detector.detect(rgb)
    detector.close()
    box = found.box
    plugin = PosePlugin(PosePlugin.Options(mode=mode))
    plugin.setup(plugin.context)
    _, pose = _pose_on(plugin, rgb, box)
    _, mirrored = _pose_on(plugin, np.ascontiguousarray(rgb[:, ::-1]), [w - box[2], box[1], w - box[0], box[3]])
    plugin.close()
    assert pose is not None and mirrored is not None
    expected = sk.flip_normalized(pose.features.reshape(13, 2))
    # BlazePose is not exactly mirror-equivariant (the legs move by up to ~0.08 normalized
    # units; "roi" mode, without BlazePose's own rotated alignment, a little more), but most
    # joints agree within 0.05; a wrong joint mapping or flip would not.
    err = np.linalg.norm(mirrored.features.reshape(13, 2) - expected, axis=1)
    assert np.median(err) < median_err and (err < 0.05).sum() >= 10, err.round(3)


def test_pose_modes_agree_on_the_tracker_box(videos_dir):
    """The landmark model on the track's crop ("roi") and BlazePose with its own detector
    ("detect") find the same joints on a real image."""
    from plugins.person_detector import BlazePoseDetector

    rgb = _messi(videos_dir)
    detector = BlazePoseDetector()
    (found,) = detector.detect(rgb)
    detector.close()
    poses = {}
    for mode in ("roi", "detect"):
        plugin = PosePlugin(PosePlugin.Options(mode=mode))
        plugin.setup(plugin.context)
        poses[mode] = _pose_on(plugin, rgb, found.box)[1]
        plugin.close()
    assert all(p is not None and p.mean_score >= 0.5 for p in poses.values())
    height = float(found.box[3] - found.box[1])
    dist = np.linalg.norm(poses["roi"].keypoints[:, :2] - poses["detect"].keypoints[:, :2], axis=1) / height
    assert np.median(dist) < 0.05, dist.round(3)


def test_unknown_mode_is_a_config_error():
    from vpd_stream.errors import ConfigError

    with pytest.raises(ConfigError, match="mode 'fast'"):
        PosePlugin(PosePlugin.Options(mode="fast"))


def test_non_athletes_are_skipped_unless_all_tracks(videos_dir, pose_plugin):
    rgb = _messi(videos_dir)
    _, pose = _pose_on(pose_plugin, rgb, [0, 0, rgb.shape[1], rgb.shape[0]], athlete=False)
    assert pose is None


def test_lunge_poses_are_confident_on_most_frames(videos_dir, pose_plugin):
    from offline_train.benchmarks.perception import decode

    fractions = {}
    for cam in (1, 2, 3, 4):
        tracker = TrackerPlugin()
        tracker.setup(tracker.context)
        scores = []
        for frame in decode(videos_dir / f"lunge_cam{cam:02d}.mp4", limit=24):
            tracker.process([frame])
            pose_plugin.process([frame])
            poses = frame.annotations["pose"]
            assert set(poses) <= {t for t, tr in frame.annotations["tracks"].items() if tr.is_athlete}
            scores.append(max([p.mean_score for p in poses.values()], default=0.0))
        tracker.close()
        fractions[cam] = float(np.mean(np.array(scores) >= 0.5))
    assert all(f > 0.5 for f in fractions.values()), fractions


def test_teacher_is_deterministic(videos_dir, pose_plugin):
    rgb = _messi(videos_dir)
    box = [0, 0, rgb.shape[1], rgb.shape[0]]
    _, first = _pose_on(pose_plugin, rgb, box)
    _pose_on(pose_plugin, np.ascontiguousarray(rgb[::-1]), box)  # something else in between
    _, again = _pose_on(pose_plugin, rgb, box)
    np.testing.assert_array_equal(first.keypoints, again.keypoints)
