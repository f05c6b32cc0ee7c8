"""Both players at once (issue 13): the detector and recognizer run per athlete track.

Two athletes carry real pose sequences (Penn Action test clips: tennis serves for one, golf
swings for the other), a third track (an official) carries poses too but is no athlete.
Run together, each athlete gets exactly the activations and events it gets alone: the
heads keep their state per track id, and events carry the track id and the tracker's
near/far side.
"""
from __future__ import annotations

import numpy as np
import pytest

from plugins.detector import DetectorPlugin
from plugins.recognizer import RecognizerPlugin
from vpd_stream.annotations import Pose, Track
from vpd_stream.frame import EndOfStream, Frame
from vpd_stream.plugin import PluginContext
from vpd_stream.skeleton import pose_features

RGB = np.zeros((4, 4, 3), dtype=np.uint8)
SERVES = ("2143", "2150", "2178", "2185")  # Penn Action test clips, tennis_serve
SWINGS = ("0792", "0820", "0834", "0883")  # golf_swing
NEAR, FAR, OFFICIAL = 4, 9, 2


def _features(data_dir, ids) -> np.ndarray:
    from offline_train.penn_action import load_clip

    labels = data_dir / "penn_action" / "labels"
    if not labels.is_dir():
        pytest.skip(f"Penn Action labels not found under {labels}")
    seqs = []
    for cid in ids:
        kp = load_clip(labels / f"{cid}.mat").keypoints
        seqs.append(np.stack([pose_features(k) for k in kp]).astype(np.float32))
    return np.concatenate(seqs)


def _frames(seqs: dict[int, np.ndarray], athletes: set[int]) -> list[Frame]:
    n = max(len(s) for s in seqs.values())
    frames = []
    for i in range(n):
        tracks, poses = {}, {}
        for tid, s in seqs.items():
            if i < len(s):
                tracks[tid] = Track(tid, np.array([0, 0, 4, 4], np.float32), 0.9, tid in athletes,
                                    side="near" if tid == NEAR else "far" if tid == FAR else None)
                poses[tid] = Pose(np.zeros((13, 3), np.float32), s[i], 1.0)
        frames.append(Frame("court", i, i / 25, RGB, annotations={"tracks": tracks, "pose": poses}))
    return frames


def _run(seqs: dict[int, np.ndarray], athletes: set[int]):
    detector, recognizer = DetectorPlugin(), RecognizerPlugin()
    for p in (detector, recognizer):
        p.setup(PluginContext(target_fps=25.0))
    frames = _frames(seqs, athletes)
    for s in range(0, len(frames), 8):
        batch = frames[s:s + 8]
        detector.process(batch)
        recognizer.process(batch)
    eos = EndOfStream("court", len(frames))
    detector.end_stream(eos)
    recognizer.end_stream(eos)
    events = [e for f in frames for e in f.events] + eos.events
    acts = {tid: [f.annotations.get("activation", {}).get(tid) for f in frames] for tid in seqs}
    return frames, events, acts


def test_detector_and_recognizer_run_per_athlete_track(data_dir):
    near, far = _features(data_dir, SERVES), _features(data_dir, SWINGS)
    official = near[::-1].copy()  # poses too, but not an athlete: must be ignored
    _, events, acts = _run({NEAR: near, FAR: far, OFFICIAL: official}, athletes={NEAR, FAR})

    assert all(a is None for a in acts[OFFICIAL])
    for tid, seq in ((NEAR, near), (FAR, far)):
        got = [a for a in acts[tid] if a is not None]
        assert len(got) >= 0.5 * len(seq), f"track {tid}: activations on {len(got)} of {len(seq)} frames"
    assert {e.track_id for e in events} <= {NEAR, FAR}
    assert {e.track_id for e in events} == {NEAR, FAR}, [(e.track_id, e.label) for e in events]
    assert all(e.labelled for e in events)  # the recognizer labelled each athlete's events
    assert all(e.extra.get("side") == ("near" if e.track_id == NEAR else "far") for e in events)

    # Each athlete alone gets the same activations and events as in the two-athlete run.
    for tid, seq in ((NEAR, near), (FAR, far)):
        _, alone_events, alone_acts = _run({tid: seq}, athletes={tid})
        both = np.array([np.nan if a is None else a for a in acts[tid][:len(seq)]], np.float64)
        alone = np.array([np.nan if a is None else a for a in alone_acts[tid]], np.float64)
        assert np.array_equal(np.isnan(both), np.isnan(alone))
        np.testing.assert_allclose(both[~np.isnan(both)], alone[~np.isnan(alone)], atol=1e-5)
        mine = sorted((e.start_frame, e.end_frame, e.label) for e in events if e.track_id == tid)
        assert mine == sorted((e.start_frame, e.end_frame, e.label) for e in alone_events)
