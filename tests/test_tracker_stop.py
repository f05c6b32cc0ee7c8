"""A player who sprints and then stops keeps his track id (issue 13 follow-up).

The near player of tennis_broadcast_rally runs to a wide ball and stops to walk to the
net: norfair's constant-velocity prediction overshoots, and matching by IoU with the
prediction alone started a new track on him while the old one coasted off as a ghost
athlete. The tracker's distance (plugins.tracker.PredictionOrLastBox) also accepts the box
the track was last detected at. Generated boxes, the real norfair tracker.
"""
from __future__ import annotations

import numpy as np

from plugins.tracker import PredictionOrLastBox


def _run(ours: bool, speed: float = 12.0, run_frames: int = 12, missed: int = 4, stop_frames: int = 6) -> list[int]:
    """A player runs left at ``speed`` px/frame, is missed by the detector for ``missed``
    frames while he stops (the prediction coasts on), then is detected standing where he
    stopped. Returns, per detection, the id of the track it continued."""
    from norfair import Detection, Tracker

    tracker = Tracker(distance_function="iou", distance_threshold=0.7, hit_counter_max=30, initialization_delay=0)
    if ours:
        tracker.distance_function = PredictionOrLastBox()  # as TrackerPlugin sets it
    ids = []
    x = 600.0
    for i in range(run_frames + missed + stop_frames):
        if i < run_frames:
            x -= speed
        if run_frames <= i < run_frames + missed:
            tracker.update([], period=1)
            continue
        box = np.array([[x, 460.0], [x + 80.0, 600.0]])
        objects = tracker.update([Detection(points=box, data=0.9)], period=1)
        ids.extend(int(o.id) for o in objects if o.last_detection.points is box)
    return ids


def test_prediction_alone_loses_a_player_who_stops():
    """The control: norfair's IoU against the Kalman prediction only starts a new id at the stop."""
    ids = _run(ours=False)
    assert ids[:12] == [ids[0]] * 12 and len(set(ids)) == 2, ids


def test_last_detected_box_keeps_the_id():
    ids = _run(ours=True)
    assert len(ids) == 18 and len(set(ids)) == 1, ids


def test_distance_is_the_better_of_prediction_and_last_box():
    class _Obj:
        def __init__(self, estimate, last):
            self.estimate = np.array(estimate, float)
            self.last_detection = None if last is None else type("D", (), {"points": np.array(last, float)})()

    det = type("D", (), {"points": np.array([[100.0, 100.0], [200.0, 300.0]])})()
    far = [[400.0, 100.0], [500.0, 300.0]]
    same = [[100.0, 100.0], [200.0, 300.0]]
    half = [[150.0, 100.0], [250.0, 300.0]]  # IoU 1/3 with the detection
    objects = [_Obj(far, same), _Obj(same, far), _Obj(far, far), _Obj(far, half), _Obj(half, None)]
    d = PredictionOrLastBox().get_distances(objects, [det])
    assert d.shape == (1, 5)
    np.testing.assert_allclose(d[0], [0.0, 0.0, 1.0, 2.0 / 3.0, 2.0 / 3.0], atol=1e-6)
    assert PredictionOrLastBox().get_distances(objects, []).shape == (0, 5)
