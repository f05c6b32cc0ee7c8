"""VIPE* evaluation: flip-aware DTW costs, Penn Action tables, the view-invariance score."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.penn_action import PennClip
from offline_train.vipe import evaluate as ev
from vpd_stream.dtw import dtw_p2


def _clip(i: int, label: int, view: str, train: bool, rng) -> PennClip:
    t = int(rng.integers(20, 30))
    xy = rng.uniform(0, 200, (t, 13, 2)) + label * 50
    kp = np.concatenate([xy, np.ones((t, 13, 1))], -1).astype(np.float32)
    return PennClip(clip_id=f"{i:04d}", action=str(label), label=label, view=view, train=train, keypoints=kp, fps=25.0)


def test_flip_costs_take_the_lower_of_plain_and_flipped_queries(tmp_path):
    rng = np.random.default_rng(0)
    q = ev.SeqFeatures("q", [rng.normal(size=(12, 5)), rng.normal(size=(15, 5))],
                       [rng.normal(size=(12, 5)), rng.normal(size=(15, 5))])
    x = ev.SeqFeatures("x", [rng.normal(size=(n, 5)) for n in (10, 14, 16)], [])
    cache = tmp_path / "c.npz"
    costs = ev.flip_costs(q, x, cache)
    for i in range(2):
        for j in range(3):
            plain = dtw_p2(q.seqs[i], x.seqs[j])
            assert costs.plain[i, j] == pytest.approx(plain, rel=1e-9)
            assert costs.best[i, j] == pytest.approx(min(plain, dtw_p2(q.flipped[i], x.seqs[j])), rel=1e-9)
    again = ev.flip_costs(q, ev.SeqFeatures("other", [np.zeros((3, 5))], []), cache)  # served from the cache
    np.testing.assert_array_equal(again.best, costs.best)


def test_penn_tables_on_separable_clips():
    rng = np.random.default_rng(1)
    views = ("front", "back", "left", "right")
    train = [_clip(i, i % 3, views[i % 4], True, rng) for i in range(24)]
    test = [_clip(100 + i, i % 3, views[(i + 1) % 4], False, rng) for i in range(9)]
    splits = {"2": [[c.clip_id for c in train[:6]]]}
    # Features that carry the label exactly: every method must be perfect on them.
    feats = lambda cs: ev.SeqFeatures("oracle", [np.tile(np.eye(3)[c.label], (len(c.keypoints), 1)) for c in cs],  # noqa: E731
                                      [np.tile(np.eye(3)[c.label], (len(c.keypoints), 1)) for c in cs])
    r = ev.penn_evaluate(train, test, feats(train), feats(test), splits, ks=(2,), n_splits=1)
    assert r.nns_top1 == 1.0 and r.fewshot[2] == [1.0] and r.retrieval[1] == 1.0
    assert ev.mean_cross_view(r.cross_view, 1) == 1.0
    md = ev.penn_markdown([r], len(train), len(test))
    assert "| oracle (this run) | 100.0 | 100.0 |" in md and "98.2" in md


def test_view_invariance_score():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(40, 8))
    same = np.stack([base] * 4)  # four cameras that agree perfectly
    valid = np.ones((4, 40), bool)
    r = ev.view_invariance("same", same, valid)
    assert r.across_views == pytest.approx(0.0, abs=1e-9) and r.ratio < 1e-9 and r.instant_hit == 1.0
    noisy = same + rng.normal(size=same.shape) * 5.0  # views no more alike than instants
    r2 = ev.view_invariance("noise", noisy, valid)
    assert 0.8 < r2.ratio < 1.2 and r2.instant_hit < 0.5
    valid[1, :10] = False  # missed detections are left out, not counted as hits or misses
    assert ev.view_invariance("gaps", same, valid).instant_hit == 1.0


def test_penn_evaluation_on_real_clips(data_dir):
    """pose2d and a (random) VIPE* on a slice of the real data: the plumbing end to end."""
    import torch

    from offline_train.penn_action import load_penn_action
    from vpd_stream.models.vipe import Vipe, VipeConfig

    root = data_dir / "penn_action"
    if not root.is_dir():
        pytest.skip(f"Penn Action not found under {root}")
    clips = load_penn_action(root, limit=120)
    train = [c for c in clips if c.train]
    test = [c for c in clips if not c.train][:10]
    splits = {"4": [[c.clip_id for c in train[:8]]]}
    r2d = ev.penn_evaluate(train, test, ev.pose2d_sequences(train), ev.pose2d_sequences(test), splits, ks=(4,), n_splits=1)
    torch.manual_seed(0)
    model = Vipe(VipeConfig(hidden=32))
    rv = ev.penn_evaluate(train, test, ev.vipe_sequences(model, train), ev.vipe_sequences(model, test), splits,
                          ks=(4,), n_splits=1)
    assert r2d.nns_top1 >= 0.5  # 2D joints on hand-annotated poses: far above 1/15 chance
    assert all(0.0 <= x <= 1.0 for x in (rv.nns_top1, rv.nns_top1_noflip, rv.fewshot[4][0]))
    assert rv.nns_top1 >= rv.nns_top1_noflip - 0.11  # one of ten queries may tie differently


def _lunge_store(root, gaps: dict[int, set[int]]):
    """lunge_cam01..04 in a corpus store, frames 3..14; camera c misses the frames in gaps[c]."""
    from offline_train.benchmarks.distill import render, synthetic_flow, synthetic_keypoints
    from offline_train.corpus.store import CorpusStore, VideoWriter
    from vpd_stream.skeleton import pose_features

    store = CorpusStore(root)
    store.create()
    for c in range(4):
        name = f"lunge_cam0{c + 1}"
        attrs = {"name": name, "source": f"synthetic://{name}", "fps": 30.0, "source_fps": 60.0, "width": 128,
                 "height": 128, "teacher": "pose2d", "chain": ["synthetic"], "options": {}, "max_frames": -1}
        writer = VideoWriter(store.video_path(name), attrs)
        for t in range(3, 15):
            writer.add_frame(t, t / 30.0, 2 * t)
            if t in gaps.get(c, set()):
                continue
            kp = synthetic_keypoints(t, phase=0.3 * c)  # the same motion, a slightly different view
            writer.add_row(frame=t, pts=t / 30.0, track_id=1, crop=render(kp, seed=t), flow=synthetic_flow(kp, kp),
                           box=np.array([0, 0, 128, 128], np.float32), crop_box=np.array([0, 0, 128, 128], np.float32),
                           keypoints=kp, pose=pose_features(kp), pose_score=float(kp[:, 2].mean()))
        writer.commit()
    return store


def _write_features(store, out, fn):
    """Feature files as `vpd-stream embed` writes them, with embedding = fn(camera, frame)."""
    out.mkdir(parents=True, exist_ok=True)
    for c in range(4):
        name = f"lunge_cam0{c + 1}"
        with store.open(name) as v:
            frames = np.asarray(v.arrays["frame"])
        e = np.stack([fn(c, int(t)) for t in frames]).astype(np.float32)
        np.savez(out / f"{name}.npz", embedding=e, embedding_flipped=-e, frame=frames, pts=frames / 30.0,
                 track_id=np.ones(len(frames), np.int32), pose_score=np.ones(len(frames), np.float32))


def test_store_lunges_align_cameras_by_frame_and_read_student_features(tmp_path):
    store = _lunge_store(tmp_path / "store", gaps={1: {5, 6}, 3: {14}})
    lunges = ev.store_lunges(tmp_path / "store")
    assert lunges.frames.tolist() == list(range(3, 15)) and lunges.fps == 30.0
    assert lunges.valid.sum() == 4 * 12 - 3 and not lunges.valid[1, 2:4].any() and not lunges.valid[3, -1]
    assert np.isnan(lunges.keypoints[1, 2]).all() and np.isfinite(lunges.keypoints[lunges.valid]).all()
    # A camera-independent feature of the instant: the views coincide, every instant is found.
    onehot = lambda c, t: np.eye(16)[t]  # noqa: E731
    _write_features(store, tmp_path / "inv", onehot)
    f, ff = ev.store_lunge_features(lunges, tmp_path / "inv")
    assert f.shape == (4, 12, 16)
    np.testing.assert_array_equal(f[0, 0], np.eye(16)[3])
    np.testing.assert_array_equal(f[1, 2], 0)  # a missed frame stays empty
    r = ev.view_invariance("inv", f, lunges.valid, 2, flipped=ff)
    assert r.across_views == 0.0 and r.instant_hit == 1.0 and r.median_error == 0
    # Features of another store (other rows) are refused, not silently misaligned.
    _write_features(_lunge_store(tmp_path / "other", gaps={}), tmp_path / "other_f", onehot)
    with pytest.raises(ev.InputError, match="does not match"):
        ev.store_lunge_features(lunges, tmp_path / "other_f")


def test_eval_vipe_students_command(tmp_path):
    from click.testing import CliRunner

    from offline_train.commands.vipe import eval_vipe

    store = _lunge_store(tmp_path / "store", gaps={2: {7}})
    _write_features(store, tmp_path / "inv", lambda c, t: np.eye(16)[t])  # view-invariant
    _write_features(store, tmp_path / "cam", lambda c, t: np.eye(16)[c] + 0.01 * t)  # only the camera
    result = CliRunner().invoke(eval_vipe, ["--part", "students", "--store", str(tmp_path / "store"),
                                            "--features", f"INV={tmp_path / 'inv'}", "--features",
                                            f"CAM={tmp_path / 'cam'}", "-o", str(tmp_path / "t.md")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "t.md").read_text()
    assert "| INV | 16 | 0.000 |" in md and "| 100.0 | 0 |" in md
    cam = next(line for line in md.splitlines() if line.startswith("| CAM | 16 |"))
    assert float(cam.split("|")[5]) > 5  # views far apart, instants close: ratio ≫ 1
    assert "2D joints (teacher keypoints)" in md and "VIPE* `vipe` (teacher keypoints)" in md
    bad = CliRunner().invoke(eval_vipe, ["--part", "students", "--store", str(tmp_path / "store")])
    assert bad.exit_code != 0 and "--features" in str(bad.exception or bad.output)
