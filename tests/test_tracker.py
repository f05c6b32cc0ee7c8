"""Tracker: athlete selection rules, identities with sparse detections, and real footage."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from plugins.tracker import TrackerPlugin
from vpd_stream.annotations import Track
from plugins.athlete_selection import AthleteSelector, SelectionParams, roi_overlap
from plugins.person_detector import PersonDetection
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import EndOfStream, Frame


def _track(tid: int, box, age: int = 100) -> Track:
    return Track(tid, np.array(box, np.float32), 0.9, age=age)


def test_bigger_moving_established_track_is_the_athlete():
    sel = AthleteSelector(SelectionParams())
    for t in range(30):
        tracks = {1: _track(1, [10, 10, 60, 110]),  # spectator: smaller, still
                  2: _track(2, [200 + 5 * t, 50, 300 + 5 * t, 250])}  # athlete: big, moving
        assert sel.update(tracks, 640, 480) == [2]


def test_hysteresis_keeps_the_athlete_until_a_challenger_clearly_wins():
    p = SelectionParams(hysteresis=1.5, switch_frames=5, centre_weight=0.0)  # positions do not matter here
    sel = AthleteSelector(p)
    sel.update({1: _track(1, [0, 0, 100, 200])}, 640, 480)
    # A slightly bigger person appears: not enough to take over, ever.
    for _ in range(40):
        assert sel.update({1: _track(1, [0, 0, 100, 200]), 2: _track(2, [300, 0, 410, 220])}, 640, 480) == [1]
    # A much bigger one takes over, but only after switch_frames consecutive wins.
    history = [sel.update({1: _track(1, [0, 0, 100, 200]), 3: _track(3, [300, 0, 500, 400])}, 640, 480)[0]
               for _ in range(40)]
    first = history.index(3)
    assert first >= p.switch_frames - 1 and all(h == 3 for h in history[first:])


def test_fresh_tracks_do_not_outrank_established_ones_and_lost_athletes_are_replaced():
    sel = AthleteSelector(SelectionParams(age_frames=25))
    assert sel.update({1: _track(1, [0, 0, 100, 200], age=50), 2: _track(2, [300, 0, 500, 400], age=0)}, 640, 480) == [1]
    assert sel.update({2: _track(2, [300, 0, 500, 400], age=1)}, 640, 480) == [2]  # athlete 1 is gone


def test_roi_and_two_athletes():
    p = SelectionParams(max_athletes=2, roi=(0.25, 0.0, 1.0, 1.0))
    sel = AthleteSelector(p)
    tracks = {1: _track(1, [0, 0, 150, 300]),  # the biggest, but outside the court
              2: _track(2, [300, 100, 380, 260]), 3: _track(3, [450, 50, 520, 200])}
    assert sorted(sel.update(tracks, 640, 480)) == [2, 3]
    assert roi_overlap(np.array([0, 0, 150, 300]), p.roi, 640, 480) == 0.0


class ScriptedDetector:
    """Stands in for the person detector in the tracking-logic tests: returns given boxes."""

    def __init__(self, script) -> None:
        self.script = script
        self.calls = 0

    def detect(self, rgb):
        boxes = self.script(self.calls)
        self.calls += 1
        return [PersonDetection(np.array(b, np.float32), 0.9) for b in boxes]

    def close(self):
        pass


def _run(plugin: TrackerPlugin, n: int, stream: str = "s") -> list[dict[int, Track]]:
    out = []
    for i in range(n):
        frame = Frame(stream, i, i / 25, np.zeros((480, 640, 3), np.uint8))
        plugin.process([frame])
        out.append(frame.annotations["tracks"])
    return out


@pytest.mark.parametrize("every", [1, 3])
def test_identities_persist_between_and_across_missed_detections(every):
    def script(call):  # two walkers; person B is missed by the detector on every 4th call
        a = [50 + 4 * call * every, 100, 130 + 4 * call * every, 300]
        b = [500 - 3 * call * every, 120, 570 - 3 * call * every, 300]
        return [a] if call % 4 == 3 else [a, b]

    plugin = TrackerPlugin(TrackerPlugin.Options(detect_every=every))
    plugin._detector = ScriptedDetector(script)
    frames = _run(plugin, 45)
    assert plugin._detector.calls == -(-45 // every)  # detection on every Nth frame only
    ids = collections.Counter(tid for tracks in frames for tid in tracks)
    assert len(ids) == 2  # no identity switch, no duplicate
    assert all(len(tracks) == 2 for tracks in frames[2 * every:])  # boxes carried between detections
    described = plugin.describe(Frame("s", 0, 0, np.zeros((1, 1, 3), np.uint8), annotations={"tracks": frames[-1]}))
    record = next(iter(described["tracks"].values()))
    assert set(record) == {"track_id", "box", "score", "is_athlete", "athlete_reason"} and len(record["box"]) == 4
    assert all(r["athlete_reason"].startswith("athlete:") == r["is_athlete"] for r in described["tracks"].values())
    assert sum(r["is_athlete"] for r in described["tracks"].values()) == 1


def test_streams_are_independent_and_end_stream_drops_state():
    plugin = TrackerPlugin()
    plugin._detector = ScriptedDetector(lambda call: [[100, 100, 200, 300]])
    a = _run(plugin, 6, "a")
    b = _run(plugin, 6, "b")
    assert list(a[-1]) == list(b[-1]) == [1]  # ids start at 1 in every stream
    plugin.end_stream(EndOfStream("a"))
    assert "a" not in plugin._streams and "b" in plugin._streams


def test_config_errors():
    with pytest.raises(ConfigError, match="detector 'yolo'"):
        TrackerPlugin(TrackerPlugin.Options(detector="yolo"))
    with pytest.raises(ConfigError, match="confirm_detections"):
        TrackerPlugin(TrackerPlugin.Options(confirm_detections=3))
    with pytest.raises(ConfigError, match="onnx_layout 'yolo9'"):
        TrackerPlugin(TrackerPlugin.Options(onnx_layout="yolo9"))
    with pytest.raises(ConfigError, match="scan_seconds"):
        TrackerPlugin(TrackerPlugin.Options(scan_seconds=0))
    with pytest.raises(ConfigError, match="tile_overlap"):
        TrackerPlugin(TrackerPlugin.Options(tile_overlap=0.95))
    with pytest.raises(ConfigError, match="roi"):
        TrackerPlugin(TrackerPlugin.Options(roi=[0.5, 0.0, 0.2, 1.0]))
    with pytest.raises(ConfigError, match="onnx_model"):
        TrackerPlugin(TrackerPlugin.Options(detector="onnx")).setup(TrackerPlugin().context)
    with pytest.raises(ModelError, match="does not exist"):
        TrackerPlugin(TrackerPlugin.Options(detector="onnx", onnx_model="/nonexistent.onnx")).setup(
            TrackerPlugin().context)


def test_onnx_detector_io(tmp_path):
    """A tiny ONNX model with the documented I/O: boxes in input pixels, class column."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    rows = np.array([[[10, 20, 110, 220, 0.9, 0], [0, 0, 50, 50, 0.95, 2], [5, 5, 9, 9, 0.1, 0]]], np.float32)
    const = helper.make_tensor("rows", TensorProto.FLOAT, rows.shape, rows.flatten().tolist())
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
         helper.make_node("Mul", ["total", "zero"], ["nothing"]),
         helper.make_node("Add", ["rows", "nothing"], ["detections"])],
        "det", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, "K", 6])],
        initializer=[const, helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "det.onnx"
    onnx.save(model, str(path))
    from plugins.person_detector import OnnxDetector

    dets = OnnxDetector(str(path), min_score=0.5).detect(np.zeros((640, 960, 3), np.uint8))
    assert len(dets) == 1  # the non-person and the low score are dropped
    np.testing.assert_allclose(dets[0].box, [30, 40, 330, 440])  # scaled from 320×320 to 960×640


def _lunge_tracks(videos_dir, cam: int):
    from offline_train.benchmarks.perception import decode

    plugin = TrackerPlugin()
    plugin.setup(plugin.context)
    per_frame = []
    for frame in decode(videos_dir / f"lunge_cam{cam:02d}.mp4"):
        plugin.process([frame])
        per_frame.append(frame.annotations["tracks"])
    plugin.close()
    return per_frame


@pytest.mark.parametrize("cam", [1, 2, 3, 4])
def test_lunge_athlete_keeps_one_track_id(videos_dir, cam):
    frames = _lunge_tracks(videos_dir, cam)
    athletes = [[tid for tid, t in tracks.items() if t.is_athlete] for tracks in frames]
    ids = {tid for a in athletes for tid in a}
    assert len(ids) == 1, f"athlete ids {ids}"
    assert sum(1 for a in athletes if a) >= 0.9 * len(frames)
    # the box follows a person-sized region inside the (portrait) frame
    tid = ids.pop()
    heights = [tracks[tid].box[3] - tracks[tid].box[1] for tracks in frames if tid in tracks]
    assert 400 < np.median(heights) < 1920


def test_camera_motion_compensation_keeps_a_panned_person():
    """A panning camera: the background texture and the person shift together by 6 px/frame."""
    rng = np.random.default_rng(0)
    import cv2

    world = cv2.GaussianBlur(rng.uniform(0, 255, (480, 1400)).astype(np.float32), (0, 0), 3)
    world = cv2.cvtColor(((world - world.min()) / np.ptp(world) * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    plugin = TrackerPlugin(TrackerPlugin.Options(camera_motion=True, detect_every=2))
    plugin._detector = ScriptedDetector(lambda call: [[300 - 12 * call, 100, 380 - 12 * call, 300]])
    seen = collections.Counter()
    for i in range(20):
        frame = Frame("pan", i, i / 25, np.ascontiguousarray(world[:, 6 * i:6 * i + 640]))
        plugin.process([frame])
        seen.update(frame.annotations["tracks"].keys())
        if i >= 3:
            (tid, track), = frame.annotations["tracks"].items()
            assert abs(track.box[0] - (300 - 6 * i)) < 8  # follows the person in image coordinates
    assert len(seen) == 1


def test_tracks_without_detection_support_are_not_chosen():
    """A big box the detector confirms only now and then (a false detection, or a ghost
    coasting on its Kalman prediction) loses to a smaller, steadily detected person."""
    sel = AthleteSelector(SelectionParams(switch_frames=3))
    chosen = []
    for t in range(40):
        tracks = {1: _track(1, [0, 0, 300, 400]), 2: _track(2, [400, 100, 460, 260])}
        chosen.append(sel.update(tracks, 640, 480, matched={1: t % 5 == 0, 2: True})[0])
    assert chosen[-1] == 2 and chosen[-20:] == [2] * 20


def test_pedestrians_keep_identities_and_one_athlete(videos_dir):
    """Many people (HOG detector): several long tracks, and one athlete held throughout."""
    from offline_train.benchmarks.perception import decode

    plugin = TrackerPlugin(TrackerPlugin.Options(detector="hog"))
    plugin.setup(plugin.context)
    lengths = collections.Counter()
    athletes = []
    for frame in decode(videos_dir / "pedestrians_vtest.avi", limit=40):
        plugin.process([frame])
        tracks = frame.annotations["tracks"]
        lengths.update(tracks.keys())
        athletes.append([tid for tid, t in tracks.items() if t.is_athlete])
    plugin.close()
    assert sum(1 for n in lengths.values() if n >= 10) >= 3, lengths
    assert all(len(a) <= 1 for a in athletes)
    chosen = [a[0] for a in athletes if a]
    assert len(chosen) >= 0.8 * len(athletes)
    assert sum(1 for x, y in zip(chosen, chosen[1:]) if x != y) <= 1, chosen


class _PeopleByContent:
    """A stateless detector: one box per bright blob of the image (a person), so a region sees
    exactly the people drawn inside it; counts its calls and the sizes of what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        import cv2

        self.seen.append(rgb.shape[:2])
        n, _, stats, _ = cv2.connectedComponentsWithStats((rgb[..., 0] > 200).astype(np.uint8))
        return [PersonDetection(np.array([x, y, x + w, y + h], np.float32), 0.9) for x, y, w, h, _ in stats[1:n]]

    def close(self) -> None:
        pass


def _scene(i: int, poster_frames: range) -> np.ndarray:
    rgb = np.zeros((720, 1280, 3), np.uint8)
    rgb[300:500, 600 + 2 * i:680 + 2 * i, 0] = 255  # the athlete, 200 px tall, walking right
    if i in poster_frames:
        rgb[100:220, 100:150, 0] = 255  # somebody (or something) else, seen on these frames only
    return rgb


@pytest.mark.parametrize("looks", [0, 3])
def test_a_fresh_track_dies_after_fresh_looks_that_find_nothing(looks):
    plugin = TrackerPlugin(TrackerPlugin.Options(tile=240, fresh_looks=looks))
    detector = _PeopleByContent()
    plugin._detector = detector
    ids, blob, since = collections.Counter(), True, None
    for i in range(40):
        frame = Frame("s", i, i / 25, _scene(i, range(4, 40) if blob else range(0)))
        plugin.process([frame])
        ids.update(list(frame.annotations["tracks"]))
        fresh = [o for o in plugin._streams["s"].tracker.tracked_objects if o.is_initializing]
        if blob and fresh:  # the sweep found the second blob once: from now on it is gone
            blob, since = False, len(detector.seen)
    assert since is not None and list(ids) == [1] and ids[1] == 40  # the athlete alone, on every frame
    windows = sum(1 for h, w in detector.seen[since:] if (h, w) == (300, 300))  # 2.5 × the blob's 120 px
    if looks:
        assert windows == looks  # searched around `looks` times in a row, then forgotten
    else:
        assert windows > 10  # searched on every pass for its whole life


@pytest.mark.parametrize("looks", [2, 3])
def test_a_fresh_track_found_again_within_fresh_looks_is_kept(looks):
    plugin = TrackerPlugin(TrackerPlugin.Options(tile=240, fresh_looks=looks))
    plugin._detector = _PeopleByContent()
    found, confirmed = None, None
    for i in range(40):
        missed = found is not None and i in (found + 1, found + 2)  # the detector misses it twice
        frame = Frame("s", i, i / 25, _scene(i, range(4, 40) if not missed else range(0)))
        plugin.process([frame])
        if found is None and any(o.is_initializing for o in plugin._streams["s"].tracker.tracked_objects):
            found = i
        if confirmed is None and len(frame.annotations["tracks"]) == 2:
            confirmed = i
    assert found is not None
    if looks == 3:
        assert confirmed is not None and confirmed <= found + 3  # two misses, fewer than fresh_looks
    else:
        assert confirmed is None or confirmed > found + 3  # forgotten after two; only a later sweep may find it
