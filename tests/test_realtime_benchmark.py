"""The real-time benchmark (offline_train.benchmarks.realtime): which rows it runs by
default (the issue-16 clips, both players on the broadcast rally, the pooled default and
the sequential path of the default chain side by side), and one real child row."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from offline_train.benchmarks import realtime
from vpd_stream.testing import make_clip


def _args(**kw) -> argparse.Namespace:
    base = dict(max_frames=250, chains={"default"}, workers=[1], sequential=True, student=None)
    return argparse.Namespace(**{**base, **kw})


def test_default_clips_are_the_issue_clips_and_the_720p_one():
    assert realtime.CLIPS.split(",") == ["lunge_cam01.mp4", "tennis_forehand_backhand_davis.mp4",
                                         "tennis_broadcast_rally.mp4", "sprint_start_sports2d.mp4"]


def test_default_chain_rows_pooled_and_sequential_with_both_players():
    clips = [Path("/v") / c for c in ("lunge_cam01.mp4", "tennis_broadcast_rally.mp4")]
    specs = realtime.specs_for(clips, _args())
    labels = [(clip, label) for clip, label, _ in specs]
    assert labels == [
        ("lunge_cam01.mp4", "decode only (framerecord)"),
        ("lunge_cam01.mp4", "default chain, pools (the default)"),
        ("lunge_cam01.mp4", "default chain, sequential"),
        ("tennis_broadcast_rally.mp4", "decode only (framerecord)"),
        ("tennis_broadcast_rally.mp4", "default chain, 2 athletes, pools (the default)"),
        ("tennis_broadcast_rally.mp4", "default chain, 2 athletes, sequential"),
    ]
    by_label = {label: spec for _, label, spec in specs}
    pooled = by_label["default chain, 2 athletes, pools (the default)"]
    sequential = by_label["default chain, 2 athletes, sequential"]
    assert pooled["chain"] == sequential["chain"] == realtime.DEFAULT_CHAIN
    assert pooled["plugins"] == {"tracker": {"max_athletes": 2}}  # the pools as configured by default
    assert sequential["plugins"] == {"tracker": {"max_athletes": 2, "detect_workers": 1}, "pose": {"workers": 1}}
    assert by_label["default chain, sequential"]["plugins"]["tracker"]["max_athletes"] == 1


def test_vpd_rows_keep_the_clip_s_athletes_and_replicas_are_opt_in():
    clips = [Path("/v/tennis_broadcast_rally.mp4")]
    specs = realtime.specs_for(clips, _args(chains={"vpd"}, sequential=False), {"detector": {"weights": "d"}},
                               "int8.onnx", Path("/c"))
    assert [label for _, label, _ in specs][1:] == ["VPD chain, 2 athletes, ResNet-34 fp32 (random weights)",
                                                    "VPD chain, 2 athletes, ResNet-34 int8 (random weights, speed only)"]
    assert all(spec["plugins"]["tracker"] == {"max_athletes": 2} for _, _, spec in specs[1:])
    assert specs[2][2]["plugins"]["student"]["model"] == "int8.onnx"
    replicas = realtime.specs_for(clips, _args(workers=[1, 0]))
    assert [(label, spec.get("workers")) for _, label, spec in replicas[1:]] == [
        ("default chain, 2 athletes, pools (the default)", 1), ("default chain, 2 athletes, sequential", 1),
        ("default chain, 2 athletes, pools (the default), replicas", 0),
        ("default chain, 2 athletes, sequential, replicas", 0)]


def test_bad_chains_option_is_one_error_line():
    with pytest.raises(SystemExit, match="error: --chains takes default, vpd or both"):
        realtime.main(["--chains", "fast"])


def test_a_child_row_measures_a_real_run(tmp_path):
    clip = make_clip(tmp_path / "figure.mp4", frames=12, size=(320, 240))
    result = realtime.child({"clip": str(clip), "chain": ["tracker", "pose"], "max_frames": 12,
                             "plugins": {"tracker": {"max_athletes": 1}}})
    assert result["frames"] == 12
    assert sum(result["posed"].values()) == 12 and result["athletes"] == 1
    assert set(result["stages"]) == {"tracker", "pose"}
    assert result["rtf"] > 0 and result["rss_mb"] > 0
