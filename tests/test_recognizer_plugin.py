"""The recognizer plugin labels the detector's events from the track's feature history."""
from __future__ import annotations

import numpy as np
import torch

from plugins.recognizer import RecognizerPlugin
from vpd_stream.annotations import Pose, Track
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.models.head_io import HeadBundle, save_heads
from vpd_stream.models.heads import HeadConfig, Recognizer
from vpd_stream.plugin import PluginContext

RGB = np.zeros((4, 4, 3), dtype=np.uint8)


def test_labels_events_with_class_and_score(tmp_path) -> None:
    torch.manual_seed(0)
    model = Recognizer(HeadConfig("recognizer", 26, 3, hidden=16)).eval()
    save_heads(tmp_path / "rec", HeadBundle(model.cfg, [model], {"classes": ["a", "b", "c"], "features": "pose"}))
    plugin = RecognizerPlugin(RecognizerPlugin.Options(weights=str(tmp_path / "rec")))
    plugin.setup(PluginContext())
    feats = np.random.default_rng(0).normal(size=(40, 26)).astype(np.float32)
    frames = []
    for i, f in enumerate(feats):
        ann = {"tracks": {3: Track(3, np.zeros(4, np.float32), 1.0)}}
        if i != 15:  # one missing pose: held from the frame before
            ann["pose"] = {3: Pose(np.zeros((13, 3), np.float32), f, 1.0)}
        frames.append(Frame("s", i, i / 25, RGB, annotations=ann))
    frames[30].events.append(Event("s", 3, "swing", 0.8, 10, 25, 0.4, 1.0, emitted_frame=30))
    plugin.process(frames[:20])
    plugin.process(frames[20:])
    eos = EndOfStream("s", 40, events=[Event("s", 3, "swing", 0.7, 30, 39, 1.2, 1.56)])
    plugin.end_stream(eos)
    for ev, (s, e) in [(frames[30].events[0], (10, 25)), (eos.events[0], (30, 39))]:
        assert ev.label in ("a", "b", "c") and ev.extra["detector_label"] == "swing"
        assert 0.0 < ev.extra["label_score"] <= 1.0
        seq = feats[s:e + 1].copy()
        seq[15 - s:16 - s] = feats[14] if s <= 15 <= e else seq[15 - s:16 - s]
        from offline_train.recognition import predict_proba
        from vpd_stream.skeleton import flip_features
        p = predict_proba([model], [seq], flip_features)[0]
        assert ev.label == ["a", "b", "c"][int(np.argmax(p))]
    assert frames[30].annotations["label"] == {3: frames[30].events[0].label}
    assert "s" not in plugin.history
