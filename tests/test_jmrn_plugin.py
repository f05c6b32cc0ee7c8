"""The JMRN recognizer plugin: labels detected intervals from a track's teacher poses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plugins.jmrn_recognizer import DEFAULT_WEIGHTS, JmrnRecognizerPlugin
from vpd_stream.annotations import Pose, Track
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.models.jmrn import JMRN, JmrnConfig, save_jmrn
from vpd_stream.plugin import PluginContext

CLASSES = ["a", "b", "c"]


@pytest.fixture()
def tiny_weights(tmp_path) -> Path:
    torch.manual_seed(0)
    model = JMRN(JmrnConfig(num_classes=3, height=16, width=16, extractor=(4, 4, 8, 8), c_dim=4,
                            selector_hidden=8, cls_width=8, proj_hidden=8, proj_dim=4)).eval()
    hm = {"height": 16, "width": 16, "sigma": 1.0, "pad": 0.1, "normalization": "area", "min_score": 0.0}
    return save_jmrn(tmp_path / "tiny.safetensors", model, hm, CLASSES)


def _frames(keypoints: np.ndarray, stream: str = "s", tracks: tuple[int, ...] = (1,)) -> list[Frame]:
    frames = []
    for i, kp in enumerate(keypoints):
        f = Frame(stream, i, i / 25.0, np.zeros((4, 4, 3), np.uint8))
        f.annotations["tracks"] = {t: Track(t, np.zeros(4, np.float32), 1.0) for t in tracks}
        f.annotations["pose"] = {t: Pose(kp + 50 * t, np.zeros(26, np.float32), 1.0) for t in tracks}
        frames.append(f)
    return frames


def _walk(t: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    kp = np.zeros((t, 13, 3), np.float32)
    kp[..., :2] = rng.uniform(0, 100, (13, 2)) + np.linspace(0, 30, t)[:, None, None]
    kp[..., 2] = 0.9
    return kp


def test_labels_events_in_frames_and_at_end_of_stream(tiny_weights) -> None:
    plugin = JmrnRecognizerPlugin(JmrnRecognizerPlugin.Options(weights=str(tiny_weights)))
    plugin.setup(PluginContext())
    frames = _frames(_walk(30), tracks=(1, 2))
    ev = Event("s", 1, "action", 0.9, 5, 20, 0.2, 0.8)
    frames[20].events.append(ev)
    plugin.process(frames[:25])
    assert ev.label in CLASSES and ev.detector_label == "action"
    assert ev.label_score == ev.extra["jmrn"]["prob"]
    assert frames[20].annotations["label"] == {1: ev.label}
    assert plugin.describe(frames[20]) == {"tracks": {1: {"label": ev.label}}}
    info = ev.extra["jmrn"]
    assert info["frames"] == 16 and info["label"] == ev.label and len(info["top3"]) == 3
    assert abs(sum(p for _, p in info["top3"]) - 1.0) < 1e-4  # 3 classes: top-3 is everything
    # The same interval on another track, classified directly, gives the same answer as the plugin.
    kp = plugin.interval_keypoints("s", ev)
    assert np.allclose(plugin.classify(kp), plugin.classify(_walk(30)[5:21]), atol=1e-4)
    plugin.process(frames[25:])
    late = Event("s", None, "action", 0.5, 26, 29, 1.0, 1.2)
    short = Event("s", 2, "action", 0.5, 29, 29, 1.2, 1.2)
    eos = EndOfStream("s", 30, events=[late, short])
    plugin.end_stream(eos)
    assert late.label in CLASSES and late.extra["jmrn"]["frames"] == 4
    assert short.extra["jmrn"] is None and short.label == "action"  # 1 pose < min_frames
    assert "s" not in plugin._poses  # the stream's state is dropped


def test_keep_label_option_and_errors(tiny_weights, tmp_path) -> None:
    plugin = JmrnRecognizerPlugin(JmrnRecognizerPlugin.Options(weights=str(tiny_weights), set_label=False))
    plugin.setup(PluginContext())
    frames = _frames(_walk(10))
    ev = Event("s", 1, "swing", 0.9, 0, 9, 0.0, 0.4)
    frames[-1].events.append(ev)
    plugin.process(frames)
    assert ev.label == "swing" and ev.extra["jmrn"]["label"] in CLASSES
    with pytest.raises(ModelError, match="missing"):
        JmrnRecognizerPlugin(JmrnRecognizerPlugin.Options(weights=str(tmp_path / "x.safetensors"))).setup(PluginContext())
    with pytest.raises(ConfigError):
        JmrnRecognizerPlugin.Options(min_frames=0)


def test_bundled_model_recognizes_penn_action(data_dir) -> None:
    """The committed weights, on real Penn Action test clips, through the plugin."""
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("bundled JMRN weights not trained yet")
    import json

    from offline_train.jmrn.sides import reads_anatomical_sides
    from offline_train.penn_action import load_clip
    from offline_train.penn_action import penn_anatomical

    plugin = JmrnRecognizerPlugin()
    plugin.setup(PluginContext())
    anatomical = reads_anatomical_sides(json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text()))
    files = sorted((data_dir / "penn_action" / "labels").glob("*.mat"))[::25]
    clips = [c for c in (load_clip(f) for f in files) if not c.train]
    correct = 0
    for n, clip in enumerate(clips):
        stream = f"clip{n}"
        poses = penn_anatomical(clip).keypoints if anatomical else clip.keypoints
        frames = _frames(poses, stream)
        for f, kp in zip(frames, poses):
            f.annotations["pose"][1] = Pose(kp, np.zeros(26, np.float32), 1.0)
        ev = Event(stream, 1, "action", 1.0, 0, len(frames) - 1, 0.0, 1.0)
        frames[-1].events.append(ev)
        plugin.process(frames)
        plugin.end_stream(EndOfStream(stream))
        correct += ev.label == clip.action
    assert len(clips) >= 20
    assert correct / len(clips) > 0.5, f"{correct}/{len(clips)} Penn Action test clips right"


def test_missing_joint_rule_comes_from_the_weights_unless_configured(tiny_weights, tmp_path) -> None:
    """A sidecar records the rule its model was trained with; the plugin renders with it."""
    import json

    plugin = JmrnRecognizerPlugin(JmrnRecognizerPlugin.Options(weights=str(tiny_weights)))
    plugin.setup(PluginContext())
    assert plugin.heatmap.min_score == 0.0  # the tiny model's sidecar: every finite joint drawn
    kp = _walk(10)
    kp[:, 5, 2] = 0.2  # a low-score wrist
    assert plugin.heatmaps(kp)[5].any()
    plugin = JmrnRecognizerPlugin(JmrnRecognizerPlugin.Options(weights=str(tiny_weights), min_score=0.5))
    plugin.setup(PluginContext())
    assert plugin.heatmap.min_score == 0.5 and not plugin.heatmaps(kp)[5].any()
    # a sidecar from before the rule (no min_score) keeps drawing every joint
    sidecar = tiny_weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    del meta["heatmap"]["min_score"]
    sidecar.write_text(json.dumps(meta))
    plugin = JmrnRecognizerPlugin(JmrnRecognizerPlugin.Options(weights=str(tiny_weights)))
    plugin.setup(PluginContext())
    assert plugin.heatmap.min_score == 0.0
    with pytest.raises(ConfigError):
        JmrnRecognizerPlugin.Options(min_score=1.5)


def test_bundled_model_sees_the_heatmaps_it_was_trained_on(data_dir, tmp_path) -> None:
    """Live = offline: Penn poses passed through the stream (on the person's own sides, as
    the teacher names them) give the very maps training used (``load_penn_maps``, Penn's
    sides: the joint channels exchanged), invisible joints left out by the one rule."""
    import json
    from dataclasses import asdict

    from offline_train.jmrn.evaluate import CPU_HEATMAP, load_penn_maps
    from offline_train.jmrn.sides import reads_anatomical_sides
    from offline_train.penn_action import penn_anatomical
    from vpd_stream.skeleton import FLIP_PERM, MIN_JOINT_SCORE

    labels = data_dir / "penn_action" / "labels"
    if not labels.is_dir():
        pytest.skip(f"Penn Action labels not found under {labels}")
    plugin = JmrnRecognizerPlugin()
    plugin.setup(PluginContext())
    assert asdict(plugin.heatmap) == asdict(CPU_HEATMAP) and plugin.heatmap.min_score == MIN_JOINT_SCORE
    data = load_penn_maps(data_dir / "penn_action", CPU_HEATMAP, cache_dir=tmp_path, limit=1)
    from offline_train.penn_action import load_clip

    clip = load_clip(sorted(labels.glob("*.mat"))[0])
    assert clip.clip_id == data.ids[0] and (clip.keypoints[..., 2] == 0).mean() > 0.05
    assert reads_anatomical_sides(json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text()))
    poses = penn_anatomical(clip).keypoints
    frames = _frames(poses)
    for f, kp in zip(frames, poses):
        f.annotations["pose"][1] = Pose(kp, np.zeros(26, np.float32), 1.0)
    ev = Event("s", 1, "action", 1.0, 0, len(frames) - 1, 0.0, 1.0)
    plugin.process(frames)
    live = plugin.heatmaps(plugin.interval_keypoints("s", ev))
    trained = data.maps[0].astype(np.float32)[FLIP_PERM]
    np.testing.assert_allclose(live, trained, atol=2e-3)  # the cache is float16
    never = (poses[..., 2] == 0).all(0)
    assert not live[never].any()
    from vpd_stream.heatmaps import clip_heatmaps

    assert np.abs(clip_heatmaps(poses[..., :2], CPU_HEATMAP) - live).max() > 1e-2  # stale joints would show


@pytest.mark.slow
def test_stream_on_a_real_clip_classifies_the_offline_heatmaps_of_its_poses(videos_dir, tmp_path) -> None:
    """`vpd-stream run` on the golf clip with jmrn: the teacher poses written to the JSONL,
    rendered offline by training's preset and classified by the bundled model, give the
    event's JMRN probabilities (to the JSONL's rounding of the poses)."""
    import json

    from cli_helpers import jsonl_records, run_cli
    from offline_train.jmrn.evaluate import CPU_HEATMAP
    from vpd_stream.heatmaps import clip_heatmaps, flip_heatmaps
    from vpd_stream.models.jmrn import load_jmrn
    from vpd_stream.skeleton import MIN_JOINT_SCORE

    clip = videos_dir / "golf_swing_golfdb.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    out = tmp_path / "golf.jsonl"
    result = run_cli("run", str(clip), "--chain", "tracker,pose,crop,flow,detector,jmrn", "-o", str(out), timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    records = jsonl_records(out)
    events = [r for r in records if r["type"] == "event" and r.get("jmrn")]
    assert events, "the swing detector found no swing to label"
    model, meta = load_jmrn(DEFAULT_WEIGHTS)
    checked_low = False
    for ev in events:
        poses = {r["frame"]: t["pose"] for r in records if r["type"] == "frame"
                 for t in r.get("tracks", []) if t["track_id"] == ev["track_id"] and t.get("pose")}
        kp = np.array([poses[i] for i in sorted(poses) if ev["start"] <= i <= ev["end"]], np.float32)
        assert len(kp) == ev["jmrn"]["frames"]
        maps = clip_heatmaps(kp, CPU_HEATMAP)
        low = (kp[..., 2] < MIN_JOINT_SCORE).all(0)
        assert not maps[low].any()
        checked_low |= bool(low.any())
        with torch.no_grad():
            probs = model(torch.from_numpy(np.stack([maps, flip_heatmaps(maps)]))).softmax(-1).mean(0).numpy()
        for name, p in ev["jmrn"]["top3"]:
            assert abs(probs[meta["classes"].index(name)] - p) < 5e-3, json.dumps(ev["jmrn"])
        assert meta["classes"][int(probs.argmax())] == ev["jmrn"]["label"]
    assert checked_low  # the hidden arm: a joint scored below the rule all through an event
