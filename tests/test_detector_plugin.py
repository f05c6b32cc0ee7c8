"""The online detector plugin: streaming equals the offline sliding windows, events, latency."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from offline_train.action_detection import activations, ap_table
from vpd_stream.heads.intervals import proposals, runs_above, shape_interval
from plugins.detector import DEFAULT_DETECTOR, DetectorPlugin, ensemble_engine, sliding_window_activations
from vpd_stream.heads.windows import final_after, tail_span, window_spans, window_weights
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


@pytest.mark.parametrize("n,window,stride,lookahead,weighting", [
    (137, 40, 10, -1, "mean"), (33, 40, 10, -1, "mean"), (120, 30, 30, -1, "mean"), (91, 25, 7, -1, "mean"),
    (137, 40, 10, -1, "taper"), (33, 40, 10, 12, "taper"), (120, 30, 30, 5, "taper"), (91, 25, 7, 9, "taper"),
    (200, 50, 10, 14, "mean"), (200, 50, 10, 0, "taper"), (61, 60, 25, 20, "taper")])
def test_streaming_equals_offline_sliding_windows(tmp_path, n: int, window: int, stride: int,
                                                  lookahead: int, weighting: str) -> None:
    """Streaming activations (frame by frame, in batches) equal the batch reference exactly."""
    _tiny_detector(tmp_path / "det")
    plugin = DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "det"), window=window, stride=stride,
                                                   lookahead=lookahead, weighting=weighting))
    plugin.setup(PluginContext(engine="torch"))  # the PyTorch reference: bit-exact below
    feats = np.random.default_rng(n).normal(size=(n, 26)).astype(np.float32)
    finals = []
    real_step = plugin._step_interval
    plugin._step_interval = lambda st, f, a: (finals.append(a), real_step(st, f, a))[-1]  # record each final activation
    frames, events = _stream(plugin, feats)
    # The plugin runs one window per engine call here (one track, one window end per frame);
    # run the reference one window per call too and it matches bit for bit (same windows,
    # weights and summation order). Batched, only the BiGRU's rounding differs.
    offline = sliding_window_activations(ensemble_engine(plugin.models, max_batch=1), feats, window, stride,
                                         lookahead, weighting)
    assert len(finals) == n
    assert np.array_equal(np.array(finals), offline)
    batched = sliding_window_activations(plugin.engine, feats, window, stride, lookahead, weighting)
    assert np.allclose(batched, offline, rtol=0, atol=1e-6)
    want = proposals(offline, plugin.mean_len, plugin.threshold)
    got = [(e.start_frame, e.end_frame, e.score) for e in events]
    assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in want]
    assert np.allclose([g[2] for g in got], [w[2] for w in want], atol=1e-12)
    # Each event is emitted on the frame where the frame after its run became final (at most
    # the look-ahead later, or the stream's end) or its stretched end arrived, whichever is later.
    look = window - 1 if lookahead < 0 else lookahead
    need = final_after(n, window, stride, look)
    runs = [(s, e) for s, e in runs_above(offline, plugin.threshold) if e - s + 1 >= 3]
    expected = []
    for s, e in runs:
        close = n - 1 if e == n - 1 or need[e + 1] > n else int(need[e + 1]) - 1
        assert close <= e + 1 + look or close == n - 1
        ns, ne = shape_interval(s, e, plugin.mean_len)
        expected.append((ns, min(ne, n - 1), min(n - 1, max(close, ne))))
    assert sorted((e.start_frame, e.end_frame, e.emitted_frame) for e in events) == sorted(expected)
    assert all(e.label == "swing" for e in events)
    assert "activation" in frames[-1].annotations


def test_weights_trust_the_window_centre_and_the_stream_edges() -> None:
    w = window_weights(9, 9, "taper", first=False, last=False)
    assert w.argmax() == 4 and np.allclose(w, w[::-1]) and w[0] < w[1] < w[4]
    assert w[4] == pytest.approx((5 / 9) ** 4, rel=1e-12)  # the CPU's pow may round differently
    head = window_weights(5, 9, "taper", first=True, last=False)  # [0, 5) of the stream: left edge is the stream's
    assert np.all(np.diff(head) < 0) and head[0] == pytest.approx((5 / 9) ** 4, rel=1e-12)
    assert np.allclose(window_weights(9, 9, "taper", first=True, last=True), np.ones(9), rtol=1e-12)
    assert np.array_equal(window_weights(7, 9, "mean", first=False, last=False), np.ones(7))
    assert window_spans(12, 5, 3) == [(0, 2), (0, 5), (3, 8), (6, 11)]
    assert tail_span(12, 5, 3) == (7, 12) and tail_span(11, 5, 3) is None and tail_span(3, 5, 3) == (0, 3)


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
    with pytest.raises(ConfigError, match="weighting"):
        DetectorPlugin(DetectorPlugin.Options(weighting="median"))
    with pytest.raises(ConfigError, match="lookahead"):
        DetectorPlugin(DetectorPlugin.Options(lookahead=-2))
    with pytest.raises(ConfigError, match="max_batch"):
        DetectorPlugin(DetectorPlugin.Options(max_batch=0))
    with pytest.raises(ModelError):
        DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "none"))).setup(PluginContext())
    assert DetectorPlugin(DetectorPlugin.Options(features="embedding")).requires == ("tracks", "embedding")


@pytest.mark.slow  # minutes of BiGRU inference on 2 shared cores
def test_online_ap_matches_offline_on_penn_sequences(data_dir) -> None:
    """The default plugin on all 40 concatenated Penn Action test sequences: AP within 1 point
    of one offline pass over each whole sequence, at every tIoU; event latency reported."""
    if not DEFAULT_DETECTOR.with_suffix(".safetensors").is_file():
        pytest.skip("default detector weights not trained yet (vpd-stream train detector)")
    from offline_train.action_detection import SWING_CLASSES, concat_sequences
    from offline_train.features import get_feature_set
    from offline_train.penn_action import load_penn_action
    from offline_train.penn_action import penn_anatomical

    root = data_dir / "penn_action"
    if not (root / "labels").is_dir():
        pytest.skip(f"Penn Action not found under {root}")
    torch.set_num_threads(1)
    fs = get_feature_set("pose2d")
    test = [penn_anatomical(c) for c in load_penn_action(root) if not c.train]  # the head's sides (its sidecar)
    seqs = concat_sequences([fs.extract(c) for c in test], [c.action in SWING_CLASSES for c in test],
                            [c.clip_id for c in test], 40, seed=0)
    assert len(seqs) == 40
    plugin = DetectorPlugin()  # the defaults under test
    plugin.setup(PluginContext(engine="torch"))  # plugin.models: the PyTorch reference
    o = plugin.options
    print(f"window {o.window} stride {o.stride} lookahead {o.lookahead} weighting {o.weighting}")
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
    p50, p95 = np.percentile(latencies, [50, 95])
    print("online AP", {t: round(100 * a, 1) for t, a in on.items()},
          "offline AP", {t: round(100 * a, 1) for t, a in off.items()}, f"latency p50 {p50:.0f} p95 {p95:.0f}")
    assert off[0.3] > 0.3  # the head detects swings at all (56.6 % at the time of writing)
    for t in on:
        assert abs(on[t] - off[t]) <= 0.01, (t, on[t], off[t])
