"""Sliced person detection, search windows and athlete selection on generated scenes (issue 13).

The scenes are drawn images: people are solid rectangles in a colour of their own on a
textured court. ``ScaleLimitedDetector`` is a real detector for such images (connected
components of the person colour) with the one limit that matters here, the one BlazePose's
detector has: it sees the image resized to 224 px and misses people shorter than 24 px
there. A 100-px player in a 1920×1080 frame is 12 px at that scale: found only in a tile.
"""
from __future__ import annotations

import collections

import cv2
import numpy as np
import pytest

from plugins.athlete_selection import AthleteSelector, SelectionParams
from plugins.person_detector import (PersonDetection, SlicedDetector, _parse_onnx_rows, box_iou,
                                     merge_detections, region_sees, search_window, tile_grid)
from plugins.tracker import TrackerPlugin
from vpd_stream.annotations import Track
from vpd_stream.frame import Frame

PERSON = (250, 30, 200)  # the colour people are drawn in


class ScaleLimitedDetector:
    """Finds PERSON-coloured blobs at least ``least`` px tall once the image is seen at ``side`` px."""

    def __init__(self, side: int = 224, least: float = 24.0) -> None:
        self.side, self.least, self.calls = side, least, 0

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        self.calls += 1
        scale = self.side / max(rgb.shape[:2])
        mask = np.all(rgb == np.array(PERSON, np.uint8), axis=-1).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        out = []
        for x, y, w, h, area in stats[1:n]:
            if h * scale >= self.least and area >= 0.5 * w * h:
                out.append(PersonDetection(np.array([x, y, x + w, y + h], np.float32), 0.9))
        return out

    def close(self) -> None:
        pass


def _scene(width: int, height: int, people: list[list[float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 120, (height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in people:
        img[int(y1):int(y2), int(x1):int(x2)] = PERSON
    return img


# -- tiles, windows, merging -----------------------------------------------------------------

@pytest.mark.parametrize("w,h,tile", [(1920, 1080, 360), (1280, 720, 240), (1080, 1920, 360), (1000, 700, 333)])
def test_tile_grid_covers_the_frame_with_overlap(w, h, tile):
    tiles = tile_grid(w, h, tile, overlap=0.25)
    covered = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in tiles:
        assert (x2 - x1, y2 - y1) == (tile, tile) and 0 <= x1 and x2 <= w and 0 <= y1 and y2 <= h
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 0.75 * tile + 1 for a, b in zip(xs, xs[1:]))  # neighbours overlap ≥ 25 %
    # A person up to a quarter tile tall lies wholly inside some tile, wherever they stand.
    rng = np.random.default_rng(1)
    for _ in range(200):
        side = tile // 4
        x, y = rng.integers(0, w - side), rng.integers(0, h - side)
        assert any(t[0] <= x and x + side <= t[2] and t[1] <= y and y + side <= t[3] for t in tiles)


def test_no_tiles_when_the_frame_fits_one():
    assert tile_grid(320, 240, 360) == [] and tile_grid(1920, 1080, 0) == []


def test_search_window_is_scaled_and_kept_inside_the_frame():
    assert search_window(np.array([900, 500, 940, 600]), 1920, 1080, 2.5, 224) == (795, 425, 1045, 675)
    x1, y1, x2, y2 = search_window(np.array([1890, 1000, 1920, 1080]), 1920, 1080, 2.5, 224)
    assert (x2, y2) == (1920, 1080) and (x2 - x1, y2 - y1) == (224, 224)  # at least the detector's input
    assert search_window(np.array([0, 0, 1000, 1000]), 640, 480, 2.5, 224) == (0, 0, 640, 480)  # the whole frame
    # a close-up athlete in a portrait frame: the window is the frame, not a square cutting them
    assert search_window(np.array([100, 200, 900, 1800]), 1080, 1920, 2.5, 224) == (0, 0, 1080, 1920)


def test_region_sees_only_people_it_can_resolve():
    region = (0, 0, 1920, 1080)
    assert region_sees(region, np.array([100, 100, 200, 400]), 0.08)
    assert not region_sees(region, np.array([100, 100, 140, 200]), 0.08)  # 100 px in a 1920-px view
    assert region_sees((0, 0, 360, 360), np.array([100, 100, 140, 200]), 0.08)
    assert not region_sees((400, 0, 760, 360), np.array([100, 100, 140, 200]), 0.08)  # elsewhere


def test_merge_detections():
    d = lambda box, s=0.9: PersonDetection(np.array(box, np.float32), s)  # noqa: E731
    merged = merge_detections([
        d([100, 100, 160, 260], 0.8), d([104, 98, 162, 262], 0.95),  # one player seen by two tiles
        d([170, 100, 230, 260]),  # a second player beside the first: kept
        d([500, 100, 600, 500]), d([530, 110, 570, 160], 0.99),  # a head found in a tile of a tall person
        d([800, 100, 860, 260]), d([805, 120, 855, 240], 0.7),  # one person boxed at two scales
    ])
    boxes = sorted(tuple(int(v) for v in m.box) for m in merged)
    assert boxes == [(104, 98, 162, 262), (170, 100, 230, 260), (500, 100, 600, 500), (800, 100, 860, 260)]


def test_small_people_are_found_in_tiles_and_once_each():
    people = [[300, 200, 340, 300], [1200, 150, 1245, 260], [800, 300, 1000, 900]]  # 100, 110, 600 px tall
    rgb = _scene(1920, 1080, people)
    base = ScaleLimitedDetector()
    whole = base.detect(rgb)
    assert len(whole) == 1  # the whole frame at 224 px shows only the tall person
    sliced = SlicedDetector(base)
    regions = [(0, 0, 1920, 1080)] + tile_grid(1920, 1080, 360)
    found = sliced.detect_regions(rgb, regions)
    assert sliced.calls == len(regions)
    iou = box_iou(np.array(people, np.float32), np.stack([f.box for f in found]))
    assert len(found) == 3 and (iou.max(axis=1) > 0.95).all(), [f.box for f in found]


def _broadcast(n: int, width: int = 1920, height: int = 1080):
    """Two small players running along their baselines, two still officials at the edges."""
    for i in range(n):
        near = [700 + 6 * i, 700, 760 + 6 * i, 860]
        far = [1300 - 5 * i, 150, 1340 - 5 * i, 250]
        officials = [[40, 300, 80, 400], [1850, 120, 1890, 220]]
        yield i, [near, far], _scene(width, height, [near, far] + officials, seed=i)


def test_tracker_finds_and_follows_small_players_through_windows():
    plugin = TrackerPlugin(TrackerPlugin.Options(max_athletes=2))
    base = ScaleLimitedDetector()
    plugin._detector = base  # the tracker slices it (tile 360 at 1080p)
    ids = collections.Counter()
    calls = []
    athletes = []
    for i, players, rgb in _broadcast(60):
        before = base.calls
        frame = Frame("tv", i, i / 25, rgb, source_fps=25.0, target_fps=25.0)
        plugin.process([frame])
        calls.append(base.calls - before)
        tracks = frame.annotations["tracks"]
        ids.update(tracks.keys())
        athletes.append(sorted(t for t, tr in tracks.items() if tr.is_athlete))
        # Both players reported from the first frame (the cold-start sweep and a second look
        # in their windows); the Kalman boxes settle on them within a few frames.
        found = np.stack([t.box for t in tracks.values()])
        assert (box_iou(np.array(players, np.float32), found).max(axis=1) > (0.7 if i >= 10 else 0.5)).all(), i
    state = plugin._streams["tv"]
    assert isinstance(plugin._detector, SlicedDetector)
    assert calls[0] == len(state.sweep) + 4  # nobody followed yet: the whole sweep, then a window per person
    # Later passes: a window per athlete (max_athletes) and a share of the sweep.
    assert max(calls[4:]) <= 2 + state.per_pass and sum(c == 0 for c in calls[4:]) >= 20
    assert len(ids) == 4, ids  # two players and two officials, no identity switch
    assert all(a == athletes[-1] for a in athletes[3:]) and len(athletes[-1]) == 2
    final = frame.annotations["tracks"]
    players = {t for t in athletes[-1]}
    assert {final[t].side for t in players} == {"near", "far"}
    assert all(final[t].reason.startswith("athlete:") for t in players)
    assert all(final[t].reason.startswith("not an athlete") for t in final if t not in players)


def test_sliced_detection_is_off_for_small_frames_and_for_hog():
    plugin = TrackerPlugin()
    assert plugin.tile_side(1920, 1080) == 360 and plugin.tile_side(1280, 720) == 240
    assert plugin.tile_side(854, 480) == 0 and plugin.tile_side(320, 240) == 0
    assert TrackerPlugin(TrackerPlugin.Options(detector="hog")).tile_side(1920, 1080) == 0
    assert TrackerPlugin(TrackerPlugin.Options(tile=0)).tile_side(1920, 1080) == 0


# -- athlete selection -----------------------------------------------------------------------

def _track(tid: int, box, age: int = 100) -> Track:
    return Track(tid, np.array(box, np.float32), 0.9, age=age)


def test_a_person_cut_by_the_frame_edge_loses_to_a_whole_one():
    """A line judge in the foreground, half out of the frame, is bigger than the far player."""
    sel = AthleteSelector(SelectionParams(centre_weight=0.0))
    for _ in range(20):
        chosen = sel.update({1: _track(1, [900, 950, 1040, 1230]),  # 280 px tall, half in view
                             2: _track(2, [1200, 150, 1250, 270])}, 1920, 1080)
    assert chosen == [2]
    assert "in_view 0.46" in sel.reasons[1] and sel.reasons[1].startswith("not an athlete")


def test_central_people_beat_those_at_the_edges():
    sel = AthleteSelector(SelectionParams(max_athletes=2))
    tracks = {1: _track(1, [20, 300, 80, 450]),  # umpire's chair side
              2: _track(2, [900, 500, 960, 650]), 3: _track(3, [1100, 150, 1150, 275]),
              4: _track(4, [1850, 300, 1910, 450])}  # ball kid at the far side
    for _ in range(5):
        chosen = sel.update(tracks, 1920, 1080)
    assert sorted(chosen) == [2, 3]
    for tid in (1, 4):
        assert sel.reasons[tid].startswith("not an athlete: below the 2 athlete(s)")
        assert "centre 0.2" in sel.reasons[tid]


def test_motion_is_net_displacement_not_jitter():
    """A still official whose box jitters by ±6 px does not count as moving."""
    sel = AthleteSelector(SelectionParams(max_athletes=1, centre_weight=0.0))
    rng = np.random.default_rng(0)
    for t in range(30):
        j = rng.uniform(-6, 6, 2)
        sel.update({1: _track(1, [400 + j[0], 200 + j[1], 450 + j[0], 320 + j[1]]),
                    2: _track(2, [1000 + 4 * t, 200, 1050 + 4 * t, 320])}, 1920, 1080)
    assert sel._stats[1].motion < 0.3 * sel._stats[2].motion


# -- ONNX output layouts ---------------------------------------------------------------------

def test_onnx_layouts_are_parsed_to_person_rows():
    size = (640, 640)
    # two anchors: a person (class 0 score 0.9) and a car (class 0 score 0.05)
    filler = 40  # anchors with nothing in them: real exports have thousands
    cxcywh = np.array([[320, 320, 100, 200], [100, 100, 50, 50]] + [[10, 10, 4, 4]] * filler, np.float32)
    classes = np.array([[0.9, 0.1, 0.0], [0.05, 0.95, 0.0]] + [[0.0, 0.0, 0.0]] * filler, np.float32)  # 3 classes
    want = np.array([[270, 220, 370, 420, 0.9]], np.float32)
    yolov8 = np.concatenate([cxcywh, classes], axis=1).T[None]  # 1 × (4 + C) × N
    np.testing.assert_allclose(_parse_onnx_rows(yolov8, "auto", size, 0.5), want, atol=1e-4)
    yolov5 = np.concatenate([cxcywh, np.ones((len(cxcywh), 1), np.float32), classes], axis=1)[None]  # 1 × N × (5 + C)
    np.testing.assert_allclose(_parse_onnx_rows(yolov5, "yolov5", size, 0.5), want, atol=1e-4)
    rtdetr = np.concatenate([cxcywh / 640.0, classes], axis=1)[None]  # normalized boxes
    np.testing.assert_allclose(_parse_onnx_rows(rtdetr, "auto", size, 0.5), want, atol=1e-3)
    xyxy = np.array([[[270, 220, 370, 420, 0.9, 0], [0, 0, 9, 9, 0.99, 3]]], np.float32)
    np.testing.assert_allclose(_parse_onnx_rows(xyxy, "auto", size, 0.5), want, atol=1e-4)


def test_onnx_yolov8_model_through_the_engine(tmp_path):
    """A tiny ONNX graph with a YOLOv8-style output: transposed rows, duplicates removed by NMS."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from plugins.person_detector import OnnxDetector

    rows = np.array([[160, 160, 80, 160, 0.9, 0.0], [162, 158, 80, 164, 0.8, 0.0],  # one person, twice
                     [40, 40, 20, 40, 0.7, 0.1], [250, 60, 30, 30, 0.02, 0.9]]
                    + [[5, 5, 2, 2, 0.0, 0.0]] * 20, np.float32).T[None]
    const = helper.make_tensor("rows", TensorProto.FLOAT, rows.shape, rows.flatten().tolist())
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
         helper.make_node("Mul", ["total", "zero"], ["nothing"]),
         helper.make_node("Add", ["rows", "nothing"], ["output0"])],
        "yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 24])],
        initializer=[const, helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    path = tmp_path / "yolo.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    dets = OnnxDetector(str(path), min_score=0.5).detect(np.zeros((640, 960, 3), np.uint8))
    boxes = sorted(d.box.round().tolist() for d in dets)
    assert boxes == [[90.0, 40.0, 150.0, 120.0], [360.0, 160.0, 600.0, 480.0]]  # scaled 320 → 960×640
