"""Every core busy (issue 16): the default chain with its model pools (the tracker's
detector pool, the pose pool: the default on a multi-core machine) writes the JSONL of the
sequential configuration (``detect_workers = 1``, ``workers = 1``), record for record, on
real clips: the sliced broadcast path with both players (search windows and tiles of a
frame detected side by side), the unsliced path (a batch's whole-frame detections run
ahead) with two streams interleaved, and a close-view portrait clip. Frame order is kept,
and a stopped, a failing and a finished run leave no pool thread behind. Correctness
only: no timing."""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from vpd_stream.config import config_from_dict
from vpd_stream.frame import Frame
from vpd_stream.plugin import Plugin
from vpd_stream.runner import build_pipeline, build_plugins
from vpd_stream.sinks import JsonlSink

DEFAULT_CHAIN = ["tracker", "pose", "crop", "flow", "detector", "recognizer"]
SEQUENTIAL = {"tracker": {"detect_workers": 1}, "pose": {"workers": 1}}
POOLED = {"tracker": {"detect_workers": 2}, "pose": {"workers": 2}}  # 2 even on a 1-core machine


def _config(chain: list[str], plugins: dict):
    return config_from_dict({"pipeline": {"chain": chain, "fps": 25.0}, "plugins": plugins})


def _run(clips: list[Path], out: Path, plugins: dict, max_frames: int | None, chain=DEFAULT_CHAIN) -> list[dict]:
    config = _config(chain, plugins)
    names = [f"s{i}" for i in range(len(clips))]
    pipeline = build_pipeline(config, [str(c) for c in clips], [JsonlSink(str(out))], max_frames=max_frames,
                              names=names)
    summary = pipeline.run()
    assert summary.ok, (summary.error, [s.error for s in summary.streams])
    return [json.loads(line) for line in out.read_text().splitlines()]


def _merged(plugins: dict, extra: dict) -> dict:
    out = {k: dict(v) for k, v in plugins.items()}
    for k, v in extra.items():
        out[k] = {**out.get(k, {}), **v}
    return out


def assert_same_records(a, b, path: str = "") -> None:
    """Equal JSON values; numbers within a tolerance (CPUs differ in their last bits)."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        assert type(a) is type(b), f"{path}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same_records(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_records(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-3), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def _per_stream(records: list[dict]) -> dict[str, list[dict]]:
    """Each stream's records in order (how the streams interleave in the file depends on timing)."""
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["stream"], []).append(r)
    return out


def _compare(clips: list[Path], tmp_path: Path, plugins: dict, max_frames: int | None) -> list[dict]:
    sequential = _per_stream(_run(clips, tmp_path / "sequential.jsonl", _merged(plugins, SEQUENTIAL), max_frames))
    pooled_records = _run(clips, tmp_path / "pooled.jsonl", _merged(plugins, POOLED), max_frames)
    pooled = _per_stream(pooled_records)
    assert sequential.keys() == pooled.keys() == {f"s{i}" for i in range(len(clips))}
    for stream in sequential:
        assert len(sequential[stream]) == len(pooled[stream])
        for i, (a, b) in enumerate(zip(sequential[stream], pooled[stream])):
            assert_same_records(a, b, f"{stream} record {i}")
    return pooled_records


def _frames(records: list[dict], stream: str) -> list[dict]:
    return [r for r in records if r["type"] == "frame" and r["stream"] == stream]


def test_broadcast_rally_both_players_pooled_equals_sequential(videos_dir, tmp_path):
    clip = videos_dir / "tennis_broadcast_rally.mp4"
    records = _compare([clip], tmp_path, {"tracker": {"max_athletes": 2}}, max_frames=24)
    frames = _frames(records, "s0")
    assert [f["frame"] for f in frames] == list(range(24))  # every frame, in order
    posed = [sum(1 for t in f.get("tracks", []) if t.get("is_athlete") and "pose" in t) for f in frames]
    assert sum(p == 2 for p in posed) >= 20  # both players tracked and posed: the pools had work


def test_unsliced_clip_two_streams_pooled_equals_sequential(videos_dir, tmp_path):
    clip = videos_dir / "tennis_forehand_backhand_davis.mp4"  # 854×480: whole-frame detection, run ahead
    records = _compare([clip, clip], tmp_path, {}, max_frames=20)
    one, two = _frames(records, "s0"), _frames(records, "s1")
    assert [f["frame"] for f in one] == [f["frame"] for f in two] == list(range(20))
    for a, b in zip(one, two):  # the same clip twice: the same boxes and poses in each stream
        assert_same_records([(t["box"], t.get("pose")) for t in a.get("tracks", [])],
                            [(t["box"], t.get("pose")) for t in b.get("tracks", [])], f"frame {a['frame']}")
    assert sum(any("pose" in t for t in f.get("tracks", [])) for f in one) >= 15


@pytest.mark.slow
@pytest.mark.parametrize("clip,athletes", [("tennis_broadcast_rally.mp4", 2), ("lunge_cam01.mp4", 1),
                                           ("tennis_forehand_backhand_davis.mp4", 1)])
def test_whole_issue_clips_pooled_equals_sequential(videos_dir, tmp_path, clip, athletes):
    records = _compare([videos_dir / clip], tmp_path, {"tracker": {"max_athletes": athletes}}, max_frames=None)
    assert records[-1]["type"] == "end" and records[-1]["frames"] == len(_frames(records, "s0")) > 40


def _pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pool:")]


class _FailAt(Plugin):
    """Raises on a given frame: the pipeline must fail cleanly with pools running upstream."""

    name = "failat"
    provides = ("failat",)
    batch_size = 1

    def process(self, batch: list[Frame]) -> None:
        for frame in batch:
            if frame.index == 6:
                raise RuntimeError("boom on frame 6")
            frame.annotations["failat"] = frame.index


def test_pools_shut_down_on_end_stop_and_error(videos_dir, tmp_path):
    clip = str(videos_dir / "tennis_forehand_backhand_davis.mp4")
    # End of stream: the pools' threads are gone once the run returns.
    _run([Path(clip)], tmp_path / "end.jsonl", POOLED, 8, chain=["tracker", "pose"])
    assert _pool_threads() == []
    # A stage failing downstream: one error, nothing left running.
    config = _config(["tracker", "pose"], POOLED)
    plugins = build_plugins(config) + [_FailAt()]
    pipeline = build_pipeline(config, [clip], [JsonlSink(str(tmp_path / "fail.jsonl"))], plugins=plugins)
    summary = pipeline.run()
    assert summary.error and "boom on frame 6" in summary.error
    assert _pool_threads() == []
    # stop() (what SIGTERM does through runner.run): the frames decoded are drained, in order.
    # Queues of 2 frames bound what is in flight, so the run ends well before the clip does.
    config = config_from_dict({"pipeline": {"chain": ["tracker", "pose"], "fps": 25.0, "queue_size": 2},
                               "plugins": POOLED})
    out = tmp_path / "stop.jsonl"
    stopper = _StopAt()
    pipeline = build_pipeline(config, [clip], [JsonlSink(str(out))], plugins=build_plugins(config) + [stopper])
    stopper.pipeline = pipeline
    summary = pipeline.run()
    assert summary.ok
    records = [json.loads(line) for line in out.read_text().splitlines()]
    frames = [r["frame"] for r in records if r["type"] == "frame"]
    assert frames == list(range(len(frames))) and 10 < len(frames) < 60  # drained, in order, cut short
    assert records[-1]["type"] == "end"
    assert _pool_threads() == []


class _StopAt(Plugin):
    """Stops its pipeline's sources when frame 10 comes by, as the first SIGTERM does."""

    name = "stopper"
    provides = ("stopper",)
    pipeline = None

    def process(self, batch: list[Frame]) -> None:
        for frame in batch:
            if frame.index == 10:
                self.pipeline.stop()
