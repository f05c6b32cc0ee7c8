"""The recognizer's span events (vpd_stream.heads.spans) and Penn Action's sides."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from offline_train.penn_action import penn_anatomical
from offline_train.recognition import feature_side_permutation, swap_input_sides
from plugins.recognizer import DEFAULT_SPAN_INDEX, RecognizerPlugin
from vpd_stream.annotations import Pose, Track
from vpd_stream.errors import ConfigError
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.heads.spans import SpanGroup, close_all, merge_candidates, span_events, windows_ending
from vpd_stream.models.head_io import HeadBundle, save_heads
from vpd_stream.models.heads import Detector, HeadConfig, Recognizer
from vpd_stream.models.nns_index import NnsIndex, load_nns_index, save_nns_index
from vpd_stream.plugin import PluginContext
from vpd_stream.skeleton import FLIP_PERM, box_features

RGB = np.zeros((4, 4, 3), dtype=np.uint8)


# -- the arithmetic ---------------------------------------------------------------------


def test_windows_ending_on_the_stride_grid() -> None:
    assert windows_ending(24, (50, 100), 25) == []
    assert windows_ending(25, (50, 100), 25) == []  # no full window yet
    assert windows_ending(50, (100, 50), 25) == [(0, 50)]
    assert windows_ending(100, (50, 100, 50), 25) == [(50, 100), (0, 100)]


def test_merge_extends_overlapping_same_class_and_closes_the_rest() -> None:
    groups: list[SpanGroup] = []
    assert merge_candidates(groups, [(1, 0, 50, 0.8)]) == []
    assert merge_candidates(groups, [(1, 25, 75, 1.0), (2, 25, 75, 0.6)]) == []  # extends class 1, opens class 2
    assert [(g.label, g.start, g.end, g.score) for g in groups] == [(1, 0, 74, 1.0), (2, 25, 74, 0.6)]
    closed = merge_candidates(groups, [(2, 50, 100, 0.8)])  # class 1 not extended: closed
    assert [(g.label, g.start, g.end) for g in closed] == [(1, 0, 74)]
    assert [(g.label, g.start, g.end, g.score) for g in groups] == [(2, 25, 99, 0.8)]
    # A candidate that only touches (no shared frame) is a new group.
    merge_candidates(groups, [(2, 100, 150, 0.8)])
    assert [(g.start, g.end) for g in groups] == [(100, 149)]
    end = close_all(groups, (2, 0, 160, 1.0))  # the whole span merges into it
    assert [(g.label, g.start, g.end, g.score) for g in end] == [(2, 0, 159, 1.0)] and groups == []


def test_span_events_offline_reference() -> None:
    # A classifier that knows class 0 on spans inside [100, 200) and nothing else.
    def classify(spans):
        return [(0, 1.0, not (s >= 100 and e <= 200)) for s, e in spans]

    out = span_events(300, (50,), 25, classify, min_whole=25)
    assert [(g.label, g.start, g.end, k) for g, k in out] == [(0, 100, 199, 225)]  # closed by [175, 225)


# -- the plugin -------------------------------------------------------------------------


def _frames(feats: np.ndarray, stream: str = "s", athlete: bool = True, tid: int = 3) -> list[Frame]:
    frames = []
    for i, f in enumerate(feats):
        ann = {"tracks": {tid: Track(tid, np.zeros(4, np.float32), 1.0, is_athlete=athlete)},
               "pose": {tid: Pose(np.zeros((13, 3), np.float32), f, 1.0)}}
        frames.append(Frame(stream, i, i / 25, RGB, annotations=ann))
    return frames


def _plugin(tmp_path, rng: np.random.Generator, **options) -> tuple[RecognizerPlugin, list[np.ndarray]]:
    """A tiny BiGRU head (VPD pose features) and a 3-class index of 12 random-walk sequences."""
    torch.manual_seed(0)
    model = Recognizer(HeadConfig("recognizer", 26, 3, hidden=8)).eval()
    save_heads(tmp_path / "rec", HeadBundle(model.cfg, [model], {"classes": ["a", "b", "c"], "features": "pose"}))
    seqs = [np.cumsum(rng.normal(size=(int(rng.integers(30, 90)), 26)), 0).astype(np.float32) for _ in range(12)]
    save_nns_index(tmp_path / "idx", NnsIndex(seqs, np.arange(12) % 3, ["a", "b", "c"],
                                              {"features": "pose", "span_unknown_above": 0.35}), storage="int8")
    opts = {"weights": str(tmp_path / "rec"), "span_index": str(tmp_path / "idx"), "span_lengths": (30, 60),
            "span_stride": 10, "neighbours": 1, "span_vote": 1.0, **options}
    plugin = RecognizerPlugin(RecognizerPlugin.Options(**opts))
    plugin.setup(PluginContext(engine="torch"))
    return plugin, seqs


def test_plugin_span_events_equal_the_offline_reference(tmp_path) -> None:
    rng = np.random.default_rng(1)
    plugin, seqs = _plugin(tmp_path, rng)
    # The track plays index sequences 4 and 7 with noise, between random walks: spans there are known.
    noise = lambda n: np.cumsum(rng.normal(size=(n, 26)), 0).astype(np.float32) * 3
    feats = np.concatenate([noise(40), seqs[4] + rng.normal(0, 0.05, seqs[4].shape), noise(50),
                            seqs[7] + rng.normal(0, 0.05, seqs[7].shape), noise(35)]).astype(np.float32)
    frames = _frames(feats)
    for k in range(0, len(frames), 7):
        plugin.process(frames[k:k + 7])
    eos = EndOfStream("s", len(frames))
    plugin.end_stream(eos)
    got = [(ev.label, ev.start_frame, ev.end_frame, ev.label_score, ev.emitted_frame)
           for f in frames for ev in f.events] + \
          [(ev.label, ev.start_frame, ev.end_frame, ev.label_score, ev.emitted_frame) for ev in eos.events]

    def classify(spans):
        return plugin._classify_spans([feats[s:e] for s, e in spans])

    want = [(plugin.span_classes[g.label], g.start, g.end, round(g.score, 6), k - 1)
            for g, k in span_events(len(feats), (30, 60), 10, classify, min_whole=25)]
    assert got == want
    assert got, "the planted index sequences give span events"
    for f in frames:
        for ev in f.events:
            assert ev.detector_label == "span" and ev.extra["source"] == "span" and ev.track_id == 3
            assert f.annotations["label"][3] == ev.label


def test_plugin_spans_follow_athletes_and_skip_covered_detector_events(tmp_path) -> None:
    rng = np.random.default_rng(2)
    plugin, seqs = _plugin(tmp_path, rng)
    feats = np.concatenate([seqs[5]] * 2).astype(np.float32)
    # Another track that is not the athlete: no spans for it while an athlete is marked.
    frames = _frames(feats)
    for f in frames:
        f.annotations["tracks"][9] = Track(9, np.zeros(4, np.float32), 1.0)
        f.annotations["pose"][9] = Pose(np.zeros((13, 3), np.float32), feats[0], 1.0)
    plugin.process(frames)
    eos = EndOfStream("s", len(frames))
    plugin.end_stream(eos)
    events = [ev for f in frames for ev in f.events] + eos.events
    assert events and {ev.track_id for ev in events} == {3}


def test_spans_need_an_index_for_a_head_of_ones_own(tmp_path) -> None:
    rng = np.random.default_rng(3)
    plugin, _ = _plugin(tmp_path, rng, span_index="")
    assert plugin.span_dtw is None  # its own head, no span_index: no span events
    feats = rng.normal(size=(80, 26)).astype(np.float32)
    frames = _frames(feats)
    plugin.process(frames)
    eos = EndOfStream("s", 80)
    plugin.end_stream(eos)
    assert not any(f.events for f in frames) and not eos.events
    with pytest.raises(ConfigError, match="span_lengths"):
        RecognizerPlugin(RecognizerPlugin.Options(span_lengths=(1,)))
    with pytest.raises(ConfigError, match="history"):
        RecognizerPlugin(RecognizerPlugin.Options(span_lengths=(50, 2000)))


def test_event_class_must_be_one_the_detector_finds(tmp_path) -> None:
    rng = np.random.default_rng(4)
    plugin, _ = _plugin(tmp_path, rng, spans=False)
    frames = _frames(rng.normal(size=(30, 26)).astype(np.float32))
    plugin.process(frames)
    events = [Event("s", 3, "swing", 0.9, 2, 20, 0.08, 0.8, extra={"detector_classes": classes})
              for classes in (["a", "b", "c"], ["zzz"], [])]
    eos = EndOfStream("s", 30, events=events)
    plugin.end_stream(eos)
    known, other, unnamed = eos.events
    assert known.label in ("a", "b", "c") and "nearest_class" not in known.extra
    assert other.label == "unknown" and other.extra["nearest_class"] == known.label
    assert unnamed.label == known.label  # a detector that names no classes: no check


def test_float16_index_reads_as_float32(tmp_path) -> None:
    seqs = [np.arange(26 * 4, dtype=np.float32).reshape(4, 26) / 7]
    save_nns_index(tmp_path / "i", NnsIndex(seqs, np.array([0]), ["a"], {"features": "pose"}), storage="float16")
    back = load_nns_index(tmp_path / "i")
    assert back.seqs[0].dtype == np.float32
    np.testing.assert_allclose(back.seqs[0], seqs[0], rtol=1e-3)


def test_int8_index_reads_as_float32_within_half_a_step(tmp_path) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.normal(0, 0.2, (int(n), 26)).astype(np.float32) for n in (5, 9)]
    flipped = [s[:, ::-1].copy() * 1.5 for s in seqs]
    path = save_nns_index(tmp_path / "i", NnsIndex(seqs, np.array([0, 1]), ["a", "b"], {"features": "embedding"},
                                                   flipped), storage="int8")
    back = load_nns_index(tmp_path / "i")
    scale = np.abs(np.concatenate(seqs + flipped)).max(0) / 127
    for got, want in zip(back.seqs + back.flipped, seqs + flipped):
        assert got.dtype == np.float32
        assert np.all(np.abs(got - want) <= scale / 2 + 1e-7)
    assert path.stat().st_size < 0.5 * sum(s.nbytes for s in seqs + flipped)


def test_committed_span_index() -> None:
    index = load_nns_index(DEFAULT_SPAN_INDEX)
    assert len(index.seqs) == 1258 and index.meta["features"] == "pose_box"
    assert index.meta["penn_sides"] == "anatomical"
    assert 0.2 < index.meta["span_unknown_above"] < index.meta["unknown_above"]


# -- Penn's sides -----------------------------------------------------------------------


def test_swap_input_sides_is_the_same_function_on_swapped_joints() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(2, 17, 26)).astype(np.float32))
    perm = torch.as_tensor(feature_side_permutation())
    for arch in ("bigru", "cnn"):
        det = Detector(HeadConfig("detector", 26, 1, hidden=8, arch=arch)).eval()
        before = det(x).detach()
        swap_input_sides([det])
        torch.testing.assert_close(det(x[..., perm]).detach(), before, atol=1e-6, rtol=1e-5)
    rec = Recognizer(HeadConfig("recognizer", 26, 4, hidden=8)).eval()
    lengths = torch.tensor([17, 17])
    before = rec(x, lengths).detach()
    swap_input_sides([rec])
    torch.testing.assert_close(rec(x[..., perm], lengths).detach(), before, atol=1e-6, rtol=1e-5)
    kp = rng.normal(size=(5, 13, 3)).astype(np.float32)
    kp[..., 2] = 1.0
    np.testing.assert_allclose(box_features(kp[:, FLIP_PERM])[:, :], box_features(kp)[:, feature_side_permutation()])


def test_penn_sides_are_the_viewers(data_dir) -> None:
    """Facing the camera (Penn's front view) Penn's left shoulder is left in the image; the
    person's own left shoulder (BlazePose's) is right in the image. penn_anatomical fixes it."""
    from offline_train.penn_action import load_penn_action

    root = data_dir / "penn_action"
    if not root.is_dir():
        pytest.skip(f"Penn Action not found at {root}")
    # People doing jumping jacks or strumming a guitar face the camera in Penn's front view.
    front = [c for c in load_penn_action(root) if c.view == "front" and c.action in ("jumping_jacks", "strum_guitar")]
    assert len(front) > 100

    def share_left_shoulder_right_in_image(clips) -> float:
        kp = np.concatenate([c.keypoints for c in clips])
        both = (kp[:, 1, 2] > 0) & (kp[:, 2, 2] > 0)
        return float(np.mean(kp[both, 1, 0] > kp[both, 2, 0]))

    assert share_left_shoulder_right_in_image(front) < 0.2
    assert share_left_shoulder_right_in_image([penn_anatomical(c) for c in front]) > 0.8


# -- the default chain on real clips ----------------------------------------------------

CLIP_CLASSES = {"golf_swing_golfdb.mp4": "golf_swing", "clean_and_jerk_mmskeleton.mp4": "clean_and_jerk",
                "tennis_forehand_backhand_davis.mp4": "tennis_forehand"}
PENN_CLASSES = set(load_nns_index(DEFAULT_SPAN_INDEX).classes)


def _default_chain_events(data_dir, name: str, tmp_path) -> list[dict]:
    """`vpd-stream run CLIP -o ev.jsonl`, no options: the event records."""
    from cli_helpers import jsonl_records, run_cli

    clip = data_dir / "videos" / name
    if not clip.exists():
        pytest.skip(f"real clip {clip} not found (set VPD_DATA_DIR)")
    out = tmp_path / "ev.jsonl"
    result = run_cli("run", str(clip), "-o", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    return [r for r in jsonl_records(out) if r["type"] == "event"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLIP_CLASSES))
def test_default_chain_names_the_penn_class_of_the_real_clip(data_dir, name, tmp_path) -> None:
    events = _default_chain_events(data_dir, name, tmp_path)
    assert CLIP_CLASSES[name] in [e["label"] for e in events], events


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lunge_cam01.mp4", "basketball_dribble.mp4"])
def test_default_chain_names_no_penn_class_without_one(data_dir, name, tmp_path) -> None:
    events = _default_chain_events(data_dir, name, tmp_path)
    assert not [e for e in events if e["label"] in PENN_CLASSES], events


def test_teacher_like_augmentation() -> None:
    from offline_train.recognition import Augment

    rng = np.random.default_rng(0)
    seq = rng.normal(size=(60, 26)).astype(np.float32)
    seq[:, 6:8] = 0.0  # joint 3 missing throughout
    out = Augment(noise=0.01, drop=0.2, speed=(0.8, 1.25))(seq, rng)
    assert 48 <= len(out) <= 75 and out.shape[1] == 26 and out.dtype == np.float32
    assert np.all(out[:, 6:8] == 0.0)  # a missing joint gets no noise
    j = out.reshape(len(out), 13, 2)
    dropped = np.all(j == 0.0, axis=-1)
    assert 0.1 < dropped[:, [i for i in range(13) if i != 3]].mean() < 0.3
    same = Augment(noise=0.0, drop=0.0, speed=(1.0, 1.0))(seq, rng)
    np.testing.assert_array_equal(same, seq)
