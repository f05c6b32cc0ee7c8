"""The recognizer plugin labels the detector's events from the track's feature history."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from plugins.recognizer import RecognizerPlugin
from vpd_stream.annotations import Pose, Track
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.models.head_io import HeadBundle, save_heads
from vpd_stream.models.heads import HeadConfig, Recognizer
from vpd_stream.plugin import PluginContext

RGB = np.zeros((4, 4, 3), dtype=np.uint8)


def _track_frames(feats: np.ndarray, stream: str = "s", missing: frozenset = frozenset()) -> list[Frame]:
    """Frames of one track (id 3) whose pose features are ``feats``; ``missing`` frames have none."""
    frames = []
    for i, f in enumerate(feats):
        ann = {"tracks": {3: Track(3, np.zeros(4, np.float32), 1.0)}}
        if i not in missing:
            ann["pose"] = {3: Pose(np.zeros((13, 3), np.float32), f, 1.0)}
        frames.append(Frame(stream, i, i / 25, RGB, annotations=ann))
    return frames


def _tiny_recognizer(tmp_path, seed: int) -> RecognizerPlugin:
    torch.manual_seed(seed)
    model = Recognizer(HeadConfig("recognizer", 26, 3, hidden=16)).eval()
    save_heads(tmp_path / "rec", HeadBundle(model.cfg, [model], {"classes": ["a", "b", "c"], "features": "pose"}))
    plugin = RecognizerPlugin(RecognizerPlugin.Options(weights=str(tmp_path / "rec")))
    plugin.setup(PluginContext(engine="torch"))  # the PyTorch reference (ONNX Runtime: tests/test_engines_heads.py)
    return plugin


def test_labels_events_with_class_and_score(tmp_path) -> None:
    plugin = _tiny_recognizer(tmp_path, seed=0)
    model = plugin.engines[0].module
    feats = np.random.default_rng(0).normal(size=(40, 26)).astype(np.float32)
    frames = _track_frames(feats, missing=frozenset({15}))  # one missing pose: held from the frame before
    frames[30].events.append(Event("s", 3, "swing", 0.8, 10, 25, 0.4, 1.0, emitted_frame=30))
    plugin.process(frames[:20])
    plugin.process(frames[20:])
    eos = EndOfStream("s", 40, events=[Event("s", 3, "swing", 0.7, 30, 39, 1.2, 1.56)])
    plugin.end_stream(eos)
    for ev, (s, e) in [(frames[30].events[0], (10, 25)), (eos.events[0], (30, 39))]:
        assert ev.label in ("a", "b", "c") and ev.detector_label == "swing"
        assert 0.0 < ev.label_score <= 1.0
        seq = feats[s:e + 1].copy()
        seq[15 - s:16 - s] = feats[14] if s <= 15 <= e else seq[15 - s:16 - s]
        from vpd_stream.heads.ensemble import predict_proba
        from vpd_stream.skeleton import flip_features
        p = predict_proba([model], [seq], flip_features)[0]
        assert ev.label == ["a", "b", "c"][int(np.argmax(p))]
    assert frames[30].annotations["label"] == {3: frames[30].events[0].label}
    assert "s" not in plugin.history


def test_bigru_runs_through_the_torch_engine(tmp_path) -> None:
    plugin = _tiny_recognizer(tmp_path, seed=1)
    assert [e.backend for e in plugin.engines] == ["torch"]


def test_nns_method_labels_by_nearest_index_sequence(tmp_path) -> None:
    from vpd_stream.heads.nns import flip_min_costs, nns_predict
    from vpd_stream.models.nns_index import NnsIndex, save_nns_index
    from vpd_stream.skeleton import flip_features

    rng = np.random.default_rng(3)
    protos = [rng.normal(size=(30, 26)).astype(np.float32) for _ in range(3)]  # one motion per class
    seqs, labels = [], []
    for c, p in enumerate(protos):
        for _ in range(4):  # four noisy, time-warped examples per class
            t = np.sort(rng.uniform(0, 29, size=int(rng.integers(20, 40))))
            seqs.append((np.stack([np.interp(t, np.arange(30), p[:, j]) for j in range(26)], 1)
                         + rng.normal(0, 0.05, (len(t), 26))).astype(np.float32))
            labels.append(c)
    save_nns_index(tmp_path / "idx", NnsIndex(seqs, np.array(labels), ["a", "b", "c"], {"features": "pose"}))
    plugin = RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(tmp_path / "idx.safetensors")))
    plugin.setup(PluginContext())

    # The track performs class b (flipped: the flip combinations must find it), then class c.
    acts = [flip_features(protos[1]), protos[2]]
    feats = np.concatenate([a + rng.normal(0, 0.05, a.shape).astype(np.float32) for a in acts])
    frames = _track_frames(feats)
    frames[35].events.append(Event("s", 3, "swing", 0.9, 0, 29, 0.0, 1.16, emitted_frame=35))
    frames[59].events.append(Event("s", 3, "swing", 0.9, 30, 59, 1.2, 2.36, emitted_frame=59))
    plugin.process(frames)
    evs = [frames[35].events[0], frames[59].events[0]]
    assert [ev.label for ev in evs] == ["b", "c"]
    expected = nns_predict(flip_min_costs([feats[:30], feats[30:]], seqs, flip_features), np.array(labels))
    assert [ev.label for ev in evs] == [["a", "b", "c"][i] for i in expected]
    for ev in evs:
        assert ev.detector_label == "swing" and 0.2 <= ev.label_score <= 1.0


def test_nns_bad_options_and_index(tmp_path) -> None:
    import json

    from vpd_stream.errors import ConfigError, ModelError
    from vpd_stream.models.nns_index import NnsIndex, save_nns_index

    with pytest.raises(ConfigError, match="needs `index`"):
        RecognizerPlugin(RecognizerPlugin.Options(method="nns"))
    with pytest.raises(ConfigError, match="method must be"):
        RecognizerPlugin(RecognizerPlugin.Options(method="knn"))
    plugin = RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(tmp_path / "nope")))
    with pytest.raises(ModelError, match="not found"):
        plugin.setup(PluginContext())
    path = save_nns_index(tmp_path / "emb", NnsIndex([np.ones((5, 8), np.float32)], np.array([0]), ["a"],
                                                     {"features": "embedding"}))
    with pytest.raises(ConfigError, match="trained on embedding features"):
        RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(path), features="pose")).setup(PluginContext())
    # By default the plugin consumes what the index was built on, so the chain check asks for it.
    assert RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(path))).requires[1] == "embedding"
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["classes"] = []
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="labels outside"):
        RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(path), features="embedding")).setup(PluginContext())


@pytest.mark.slow
def test_nns_index_command_and_plugin_on_penn_action(tmp_path, data_dir) -> None:
    """`train nns-index` on the real Penn Action train split; the plugin then labels a real
    test clip exactly as the offline NNS-DTW does."""
    from cli_helpers import assert_clean_error, run_cli

    from offline_train.features import get_feature_set
    from vpd_stream.heads.nns import flip_min_costs, nns_predict
    from offline_train.penn_action import CLASSES, load_penn_action
    from offline_train.penn_action import penn_anatomical
    from vpd_stream.models.nns_index import load_nns_index

    out = tmp_path / "penn_nns"
    result = run_cli("train", "nns-index", "--data", str(data_dir / "penn_action"), "--out", str(out),
                     "--features", "pose2d", timeout=300)
    assert result.returncode == 0, result.stderr
    index = load_nns_index(out)
    assert len(index.seqs) == 1258 and index.classes == list(CLASSES) and index.dim == 26
    fs = get_feature_set("pose2d")
    # The index holds Penn's clips with the person's own sides, as the stream's joints are.
    clips = [penn_anatomical(c) for c in load_penn_action(data_dir / "penn_action", limit=60) if not c.train][:3]
    assert index.meta["penn_sides"] == "anatomical"
    plugin = RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(out), spans=False))
    plugin.setup(PluginContext())
    feats = [fs.extract(c) for c in clips]
    frames = _track_frames(np.concatenate(feats))
    ends = np.cumsum([len(f) for f in feats])
    for start, end in zip(np.r_[0, ends[:-1]], ends):
        frames[end - 1].events.append(Event("s", 3, "act", 1.0, int(start), int(end - 1), 0.0, 1.0))
    plugin.process(frames)
    got = [ev.label for f in frames for ev in f.events]
    want = nns_predict(flip_min_costs(feats, index.seqs, fs.flip), index.labels)
    assert got == [CLASSES[i] for i in want]
    assert sum(g == CLASSES[c.label] for g, c in zip(got, clips)) >= 2  # NNS-DTW is ~89 % top-1 here
    bad = run_cli("train", "nns-index", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x"))
    assert_clean_error(bad, "missing")


def test_embedding_features_use_their_carried_flipped_view(tmp_path) -> None:
    """Student embeddings flip by the student's own flipped output, for the BiGRU and for NNS."""
    from vpd_stream.heads.nns import exact_flip_min_costs, nns_predict
    from vpd_stream.heads.ensemble import predict_proba
    from vpd_stream.annotations import Embedding
    from vpd_stream.models.nns_index import NnsIndex, save_nns_index

    rng = np.random.default_rng(5)
    vec, flipped = rng.normal(size=(2, 50, 8)).astype(np.float32)
    frames = []
    for i in range(50):
        ann = {"tracks": {3: Track(3, np.zeros(4, np.float32), 1.0)}, "embedding": {3: Embedding(vec[i], flipped[i])}}
        frames.append(Frame("s", i, i / 25, RGB, annotations=ann))

    torch.manual_seed(2)
    model = Recognizer(HeadConfig("recognizer", 8, 3, hidden=16)).eval()
    save_heads(tmp_path / "rec", HeadBundle(model.cfg, [model], {"classes": ["a", "b", "c"], "features": "embedding"}))
    index = NnsIndex([rng.normal(size=(n, 8)).astype(np.float32) for n in (20, 30, 40)], np.array([0, 1, 2]),
                     ["a", "b", "c"], {"features": "embedding"},
                     [rng.normal(size=(n, 8)).astype(np.float32) for n in (20, 30, 40)])
    idx_path = save_nns_index(tmp_path / "idx", index)
    for opts in (RecognizerPlugin.Options(weights=str(tmp_path / "rec"), features="embedding"),
                 RecognizerPlugin.Options(method="nns", index=str(idx_path), features="embedding")):
        plugin = RecognizerPlugin(opts)
        plugin.setup(PluginContext())
        batch = [Frame(f.stream_id, f.index, f.pts, RGB, annotations=f.annotations) for f in frames]
        batch[49].events.append(Event("s", 3, "swing", 0.9, 5, 44, 0.2, 1.76, emitted_frame=49))
        plugin.process(batch)
        ev = batch[49].events[0]
        if opts.method == "nns":
            want = nns_predict(exact_flip_min_costs([vec[5:45]], [flipped[5:45]], index.seqs, index.flipped), index.labels)[0]
        else:
            p = predict_proba([model], [vec[5:45]], None, flipped=[flipped[5:45]])[0]  # summed over both views
            want = int(np.argmax(p))
            assert ev.label_score == pytest.approx(float(p[want]) / 2, abs=1e-5)
        assert ev.label == "abc"[want]

    no_flip = save_nns_index(tmp_path / "noflip", NnsIndex(index.seqs, index.labels, index.classes, {"features": "embedding"}))
    with pytest.raises(Exception, match="no flipped embeddings"):
        RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(no_flip), features="embedding")).setup(PluginContext())
