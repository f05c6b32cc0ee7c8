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
