"""The generic labelled-clip path (issue 14): labels, keypoint clips, heads, few-shot eval.

A generated labelled set (synthetic skeletons: a "jump" raises the arms and tucks the legs)
for the fast suite; Penn Action (a few clips) for the adapter; the real skating clips in
the slow test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_clean_error, run_cli

from offline_train.keypoints import load_pose_clip, load_pose_dir, write_pose_clip
from offline_train.labels import load_labels, resolve_spans
from vpd_stream.errors import ConfigError, InputError

# A standing figure in image pixels (COCO-13: nose, l/r shoulder, elbow, wrist, hip, knee, ankle).
STAND = np.array([[0, -160], [-30, -130], [30, -130], [-40, -90], [40, -90], [-45, -50], [45, -50],
                  [-20, -40], [20, -40], [-22, 20], [22, 20], [-24, 80], [24, 80]], np.float32)
JUMP = STAND.copy()
JUMP[[5, 6], 1] = -220  # wrists above the head
JUMP[[3, 4], 1] = -190
JUMP[[9, 10], 1] = -10  # knees tucked
JUMP[[11, 12], 1] = 20


def _clip(rng, n: int, spans: list[tuple[int, int]], shape=JUMP) -> np.ndarray:
    kp = np.zeros((n, 13, 3), np.float32)
    w = np.zeros(n, np.float32)
    for s, e in spans:
        w[s:e + 1] = 1.0
    for t in range(n):
        xy = (1 - w[t]) * STAND + w[t] * shape + rng.normal(0, 3, STAND.shape)
        kp[t, :, :2] = xy + np.array([200 + 2 * t, 300])  # the skater glides
        kp[t, :, 2] = 0.9
    return kp


def make_set(folder: Path, n_clips: int = 8, seed: int = 0) -> Path:
    """Pose clips with one or two jumps each and their labels.csv."""
    rng = np.random.default_rng(seed)
    rows = ["video,start_frame,end_frame,label"]
    for i in range(n_clips):
        n = int(rng.integers(50, 80))
        s = int(rng.integers(8, n - 30))
        spans = [(s, s + 12)]
        write_pose_clip(folder, f"clip{i}", _clip(rng, n, spans), 30.0)
        rows += [f"clip{i}.mp4,{a},{b},jump" for a, b in spans]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


# -- labels -------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "labels.csv"
    p.write_text(text)
    return p


def test_labels_formats(tmp_path) -> None:
    lab = load_labels(_write(tmp_path, "video,start_frame,end_frame,label,judge\na.mp4,3,9,jump,x\na.mp4,20,30,spin,y\n"))
    assert [(s.video, s.start, s.end, s.label, s.extra) for s in lab.spans] == [
        ("a", 3, 9, "jump", {"judge": "x"}), ("a", 20, 30, "spin", {"judge": "y"})]
    assert lab.classes() == ["jump", "spin"]
    secs = resolve_spans(load_labels(_write(tmp_path, "video,start_s,end_s,label\nb,0.5,1.0,jump\n")),
                         {"b": 60}, {"b": 30.0})
    assert (secs.spans[0].start, secs.spans[0].end) == (15, 30)
    trimmed = resolve_spans(load_labels(_write(tmp_path, "video,label\nc.avi,golf\n")), {"c": 40})
    assert (trimmed.spans[0].start, trimmed.spans[0].end) == (0, 39)


@pytest.mark.parametrize("text, needle", [
    ("video,label_x\na,b\n", ":1: the header needs"),
    ("video,start_frame,end_frame,label\na,9,3,jump\n", ":2: end_frame 3 is before start_frame 9"),
    ("video,start_frame,end_frame,label\na,1,3,jump\na,x,3,jump\n", ":3: start_frame 'x' is not a number"),
    ("video,start_frame,end_frame,label\na,1,3,jump\nb,1,4,jump\na,1,3,jump\n", ":4: duplicate of the span on line 2"),
    ("video,start_frame,end_frame,label\na,1,3\n", ":2: 3 fields"),
])
def test_label_format_errors_name_file_and_line(tmp_path, text, needle) -> None:
    with pytest.raises(InputError) as err:
        load_labels(_write(tmp_path, text))
    assert str(tmp_path / "labels.csv") in str(err.value) and needle in str(err.value)


def test_label_errors_against_the_videos(tmp_path) -> None:
    lab = load_labels(_write(tmp_path, "video,start_frame,end_frame,label\na,1,3,jump\nzz.mp4,1,3,jump\n"))
    with pytest.raises(InputError, match=r"labels.csv:3: unknown video 'zz'"):
        resolve_spans(lab, {"a": 10})
    lab = load_labels(_write(tmp_path, "video,start_frame,end_frame,label\na,5,12,jump\n"))
    with pytest.raises(InputError, match=r"labels.csv:2: span 5-12 of 'a' ends after its last frame \(9\)"):
        resolve_spans(lab, {"a": 10})
    with pytest.raises(InputError, match="does not exist"):
        load_labels(tmp_path / "nope.csv")


# -- keypoint clips -----------------------------------------------------------------------


def test_keypoint_clips_roundtrip_and_checks(tmp_path) -> None:
    kp = _clip(np.random.default_rng(0), 10, [])
    kp[3, 5, 2] = 0.0  # a missing joint: score 0
    write_pose_clip(tmp_path, "c", kp, 25.0)
    clip = load_pose_clip(tmp_path / "c.npz")
    assert clip.fps == 25.0 and clip.keypoints.shape == (10, 13, 3) and clip.keypoints[3, 5, 2] == 0.0
    np.testing.assert_allclose(clip.keypoints, kp)
    assert list(load_pose_dir(tmp_path)) == ["c"]
    with pytest.raises(InputError, match=r"\(T >= 1, 13, 3\)"):
        write_pose_clip(tmp_path, "bad", np.zeros((4, 17, 3)), 25.0)
    bad = kp.copy()
    bad[0, 0, 2] = -1
    with pytest.raises(InputError, match="scores must be finite and >= 0"):
        write_pose_clip(tmp_path, "bad", bad, 25.0)


# -- heads and plugins --------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return make_set(tmp_path_factory.mktemp("poses"))


def test_train_detector_records_its_features_and_threshold(generated, tmp_path) -> None:
    from plugins.detector import DetectorPlugin
    from vpd_stream.models.head_io import head_meta
    from vpd_stream.plugin import PluginContext

    out = tmp_path / "jump"
    r = run_cli("train", "detector", "--labels", str(generated), "--poses", str(generated.parent), "--features", "pose",
                "--steps", "30", "--folds", "2", "-o", str(out), timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    meta = head_meta(out)
    assert meta["features"] == "pose" and meta["fps"] == 30.0 and meta["action"] == "jump"
    assert meta["command"].startswith("vpd-stream train detector --labels")
    assert 0.05 <= meta["threshold"] <= 0.95 and "best F1" in meta["threshold_calibration"]["rule"]
    assert meta["threshold_calibration"]["validation_clips"] == 8
    plugin = DetectorPlugin(DetectorPlugin.Options(weights=str(out)))
    assert plugin.requires[1] == "pose"
    plugin.setup(PluginContext(target_fps=30.0))
    assert plugin.threshold == pytest.approx(meta["threshold"])  # the calibrated threshold is the default
    with pytest.raises(ConfigError, match="trained on features at 30 fps, the pipeline runs at 25 fps"):
        DetectorPlugin(DetectorPlugin.Options(weights=str(out))).setup(PluginContext(target_fps=25.0))
    with pytest.raises(ConfigError, match="trained on pose features"):
        DetectorPlugin(DetectorPlugin.Options(weights=str(out), features="embedding")).setup(PluginContext(target_fps=30.0))


def test_embedding_head_is_refused_by_a_chain_without_a_student(generated, tmp_path) -> None:
    from plugins.detector import DetectorPlugin
    from vpd_stream.models.head_io import HeadBundle, save_heads
    from vpd_stream.models.heads import Detector, HeadConfig
    from vpd_stream.plugin import PluginContext

    cfg = HeadConfig("detector", 8)
    save_heads(tmp_path / "emb", HeadBundle(cfg, [Detector(cfg)], {"features": "embedding", "fps": 25.0}))
    plugin = DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "emb")))
    assert plugin.requires[1] == "embedding"  # so the chain check rejects tracker,pose,detector
    with pytest.raises(ConfigError, match="trained on embedding features"):
        DetectorPlugin(DetectorPlugin.Options(weights=str(tmp_path / "emb"), features="pose")).setup(PluginContext())
    from vpd_stream.errors import PluginError
    from vpd_stream.plugin import load_plugin_class, validate_chain

    with pytest.raises(PluginError, match=r"\[plugins.detector\] requires embedding, which no earlier plugin"):
        validate_chain([load_plugin_class("tracker"), load_plugin_class("pose"), plugin])


def test_nns_index_unknown_outside_training(generated, tmp_path) -> None:
    from offline_train.clip_dataset import load_dataset
    from offline_train.sport_heads import build_nns_head
    from plugins.recognizer import RecognizerPlugin
    from vpd_stream.frame import Event
    from vpd_stream.plugin import PluginContext

    # Two classes: the labelled jumps and a "glide" span of each clip's first frames.
    lab = generated.read_text().splitlines()
    lab += [f"clip{i}.mp4,0,7,glide" for i in range(8)]
    labels = tmp_path / "two.csv"
    labels.write_text("\n".join(lab) + "\n")
    ds = load_dataset(labels, poses=str(generated.parent), features="pose")
    meta = build_nns_head(ds, tmp_path / "idx", "test", log=lambda m: None)
    assert np.isfinite(meta["unknown_above"]) and meta["unknown_above"] > 0
    plugin = RecognizerPlugin(RecognizerPlugin.Options(method="nns", index=str(tmp_path / "idx")))
    plugin.setup(PluginContext(target_fps=30.0))
    rng = np.random.default_rng(5)
    odd = STAND.copy()
    odd[:, 0] *= -3.0  # arms and legs far out to the side: like nothing in the index
    seqs = [ds.clips["clip1"].features[ds.clips["clip1"].spans[0][0]:ds.clips["clip1"].spans[0][1] + 1]]
    from vpd_stream.skeleton import normalize_keypoints

    seqs.append(normalize_keypoints(_clip(rng, 12, [(0, 11)], shape=odd)))
    labels_, scores, unknown = plugin._classify_nns(seqs, None)
    assert plugin.classes[labels_[0]] == "jump" and not unknown[0]
    assert unknown[1]
    ev = Event("s", 1, "jump", 0.9, 0, 11, 0.0, 0.4)
    plugin.history = {"s": {1: {f: seqs[1][f] for f in range(12)}}}
    plugin._label("s", [ev])
    assert ev.label == "unknown" and ev.detector_label == "jump" and ev.extra["nearest_class"] in ("jump", "glide")


def test_train_recognizer_records_classes_and_unknown_bound(generated, tmp_path) -> None:
    from plugins.recognizer import RecognizerPlugin
    from vpd_stream.models.head_io import head_meta
    from vpd_stream.plugin import PluginContext

    lab = generated.read_text().splitlines() + [f"clip{i}.mp4,0,7,glide" for i in range(8)]
    two = tmp_path / "two.csv"
    two.write_text("\n".join(lab) + "\n")
    r = run_cli("train", "recognizer", "--labels", str(two), "--poses", str(generated.parent), "--epochs", "5",
                "-o", str(tmp_path / "rec"), timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    meta = head_meta(tmp_path / "rec")
    assert meta["classes"] == ["glide", "jump"] and meta["features"] == "pose" and meta["fps"] == 30.0
    assert 0.0 < meta["unknown_below"] <= 1.0 and meta["unknown_calibration"]["validation"] == 4
    plugin = RecognizerPlugin(RecognizerPlugin.Options(weights=str(tmp_path / "rec")))
    plugin.setup(PluginContext(target_fps=30.0))
    assert plugin.unknown_below == pytest.approx(meta["unknown_below"]) and plugin.classes == ["glide", "jump"]
    r = run_cli("train", "recognizer", "--labels", str(generated), "--poses", str(generated.parent), "-o", str(tmp_path / "x"))
    assert_clean_error(r, "at least two classes")


def test_few_shot_detection_and_recognition_tables(generated, tmp_path) -> None:
    splits = tmp_path / "splits.json"
    out = tmp_path / "det.md"
    args = ["eval", "few-shot", "--labels", str(generated), "--poses", str(generated.parent), "--features", "pose",
            "--task", "detection", "--k", "all", "--splits", "1", "--folds", "2", "--steps", "100",
            "--ensemble", "2", "--splits-file", str(splits), "-o", str(out)]
    r = run_cli(*args, timeout=900)
    assert r.returncode == 0, r.stderr.decode()
    text = out.read_text()
    assert "tIoU 0.3" in text and "| all (4) |" in text and out.with_suffix(".png").stat().st_size > 1000
    saved = json.loads(splits.read_text())
    assert len(saved["folds"]) == 2 and all(len(f["train"]["all"][0]) == 4 for f in saved["folds"])
    assert not set(saved["folds"][0]["test_videos"]) & set(saved["folds"][0]["train"]["all"][0])  # clips held out
    row = next(line for line in text.splitlines() if line.startswith("| all"))
    assert float(row.split("|")[3]) > 50.0  # AP at tIoU 0.5 on a set this easy (100 measured here)

    rec = tmp_path / "rec.md"
    lab = generated.read_text().splitlines() + [f"clip{i}.mp4,0,7,glide" for i in range(8)]
    two = tmp_path / "two.csv"
    two.write_text("\n".join(lab) + "\n")
    r = run_cli("eval", "few-shot", "--labels", str(two), "--poses", str(generated.parent), "--task", "recognition",
                "--k", "1,all", "--splits", "2", "--folds", "2", "--no-bigru", "-o", str(rec), timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    row = next(line for line in rec.read_text().splitlines() if line.startswith("| all"))
    assert float(row.split("|")[2]) == pytest.approx(100.0)  # jump vs glide: NNS-DTW gets every one
    saved = json.loads((tmp_path / "two.fewshot-recognition.json").read_text())
    assert all(len(d) == 2 for f in saved["folds"] for d in f["train"]["1"][0:1])  # k = 1 per class, 2 classes
    assert (tmp_path / "two.fewshot-recognition.json").is_file()  # saved beside the labels


def test_cli_errors_are_one_line(generated, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("video,start_frame,end_frame,label\nclip0,5,2,jump\n")
    r = run_cli("train", "detector", "--labels", str(bad), "--poses", str(generated.parent), "-o", str(tmp_path / "h"))
    assert_clean_error(r, "bad.csv:2", "before start_frame")
    r = run_cli("train", "detector", "--labels", str(generated), "--poses", str(generated.parent),
                "--features", "embedding:/nope", "-o", str(tmp_path / "h"))
    assert_clean_error(r, "--poses gives keypoints only")
    r = run_cli("eval", "few-shot", "--labels", str(generated), "--task", "detection")
    assert_clean_error(r, "exactly one of --store")


# -- Penn Action through the generic path -------------------------------------------------


def test_penn_action_adapter_matches_the_penn_path(data_dir, tmp_path) -> None:
    from offline_train.clip_dataset import load_dataset
    from offline_train.features import get_feature_set
    from offline_train.penn_action import export_poses, load_penn_action
    from offline_train.sport_heads import span_sequences

    penn = data_dir / "penn_action"
    if not penn.is_dir():
        pytest.skip(f"Penn Action not found under {penn}")
    n, labels = export_poses(penn, tmp_path, limit=30)
    assert n == 30
    clips = load_penn_action(penn, limit=30)
    ds = load_dataset(labels, poses=str(tmp_path), features="pose")
    xs, _, ys, vids = span_sequences(ds)
    fs = get_feature_set("pose2d")
    by_id = {c.clip_id: c for c in clips}
    for x, y, v in zip(xs, ys, vids):
        np.testing.assert_allclose(x, fs.extract(by_id[v]), atol=1e-6)
        assert y == by_id[v].action
    invisible = [(c.clip_id, np.argwhere(c.keypoints[..., 2] == 0)) for c in clips]
    cid, where = next((c, w) for c, w in invisible if len(w))
    assert load_pose_clip(tmp_path / f"{cid}.npz").keypoints[where[0][0], where[0][1], 2] == 0.0
    splits = {s.video: s.extra["split"] for s in ds.labels.spans}
    assert {splits[c.clip_id] for c in clips} <= {"train", "test"}
    assert all(splits[c.clip_id] == ("train" if c.train else "test") for c in clips)


# -- the real skating clips (slow) ----------------------------------------------------------


@pytest.mark.slow
def test_skating_jumps_end_to_end(data_dir, tmp_path) -> None:
    """prepare the 40 clips, train the jump detector without skating_a11, and the stream
    emits a11's jump online, as an event overlapping the label (tIoU >= 0.5)."""
    from offline_train.clip_dataset import load_dataset

    sk = data_dir / "skating_jumps"
    if not (sk / "labels.csv").is_file():
        pytest.skip(f"skating clips not found under {sk}")
    store = tmp_path / "store"
    r = run_cli("prepare", *sorted(str(p) for p in sk.glob("*.mp4")), "--out", str(store), "--fps", "none", "-q",
                timeout=3600)
    assert r.returncode == 0, r.stderr.decode()
    ds = load_dataset(sk / "labels.csv", store=str(store), features="pose")
    assert len(ds.clips) == 40 and sum(len(c.spans) for c in ds.clips.values()) == 47
    assert ds.clips["skating_a11"].spans == [(19, 33, "jump")]  # --fps none: store frames are source frames
    labels = tmp_path / "train.csv"
    labels.write_text("".join(line for line in (sk / "labels.csv").read_text().splitlines(keepends=True)
                              if not line.startswith("skating_a11.mp4")))
    head = tmp_path / "jump"
    r = run_cli("train", "detector", "--labels", str(labels), "--store", str(store), "--features", "pose",
                "-o", str(head), timeout=3600)
    assert r.returncode == 0, r.stderr.decode()
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[plugins.detector]\nweights = "{head}"\nstride = 5\nlookahead = 12\n')
    out = tmp_path / "a11.jsonl"
    r = run_cli("run", str(sk / "skating_a11.mp4"), "--fps", "30", "--chain", "tracker,pose,detector",
                "--config", str(cfg), "-o", str(out), "-q", timeout=1800)
    assert r.returncode == 0, r.stderr.decode()
    events = [json.loads(line) for line in out.read_text().splitlines() if '"event"' in line]
    from offline_train.action_detection import tiou

    best = max(events, key=lambda e: tiou((e["start"], e["end"]), (19, 33)))
    assert tiou((best["start"], best["end"]), (19, 33)) >= 0.5, events
    assert best["emitted_frame"] < 61  # online: before the clip's last frame
