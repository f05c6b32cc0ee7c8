"""The NNS flip protocol for learned embeddings: the flipped sequence is the embedding of the
mirrored pose, and the lowest cost is taken over all four (q | flip q) × (x | flip x)."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train import nns
from offline_train.features import get_feature_set
from offline_train.penn_action import PennClip
from offline_train.vipe import evaluate as ev
from vpd_stream.dtw import DtwIndex, dtw_p2
from vpd_stream.errors import ConfigError
from vpd_stream.skeleton import flip_features


def _seqs(rng, lengths, d=6):
    return [rng.normal(size=(n, d)) for n in lengths]


def _four_way(q, qf, x, xf):
    return np.array([[min(dtw_p2(a, b) for a in (q[i], qf[i]) for b in (x[j], xf[j])) for j in range(len(x))]
                     for i in range(len(q))])


def test_exact_flip_search_is_the_four_way_minimum():
    rng = np.random.default_rng(0)
    q, qf = _seqs(rng, (9, 12, 7)), _seqs(rng, (9, 12, 7))
    x, xf = _seqs(rng, (10, 8, 14, 11)), _seqs(rng, (10, 8, 14, 11))
    exact = nns.exact_flip_min_costs(q, qf, x, xf)
    np.testing.assert_allclose(exact, _four_way(q, qf, x, xf), rtol=1e-9)
    two_way = np.minimum(DtwIndex(x).cost_matrix(q), DtwIndex(x).cost_matrix(qf))
    assert (exact <= two_way + 1e-12).all() and (exact < two_way - 1e-6).any()  # flipped index items matter
    with pytest.raises(ValueError, match="flipped counterpart"):
        nns.exact_flip_min_costs(q, qf[:2], x, xf)


def test_for_2d_joints_the_two_way_search_is_already_exact():
    rng = np.random.default_rng(1)
    q, x = _seqs(rng, (8, 11), 26), _seqs(rng, (9, 13, 10), 26)
    exact = nns.exact_flip_min_costs(q, [flip_features(s) for s in q], x, [flip_features(s) for s in x])
    np.testing.assert_allclose(exact, nns.flip_min_costs(q, x, flip_features), rtol=1e-7)  # equal up to rounding


def test_penn_flip_costs_complete_a_two_way_cache(tmp_path):
    rng = np.random.default_rng(2)
    q = ev.SeqFeatures("q", _seqs(rng, (9, 12)), _seqs(rng, (9, 12)))
    x = ev.SeqFeatures("x", _seqs(rng, (10, 8, 14)), _seqs(rng, (10, 8, 14)))
    cache = tmp_path / "c.npz"
    two = ev.flip_costs(q, ev.SeqFeatures("x", x.seqs, []), cache)  # no flipped index: the two-way search
    assert str(np.load(cache)["protocol"]) == "flip2"
    costs = ev.flip_costs(q, x, cache)  # completes the cache with the two mirrored-index matrices
    assert str(np.load(cache)["protocol"]) == "flip4"
    np.testing.assert_allclose(costs.best, _four_way(q.seqs, q.flipped, x.seqs, x.flipped), rtol=1e-9)
    np.testing.assert_array_equal(costs.best_query_flip, two.best)
    np.testing.assert_array_equal(costs.plain, two.plain)
    np.testing.assert_array_equal(ev.flip_costs(q, x, cache).best, costs.best)
    # 2D joints (an isometric flip) keep the two-way search, which is exact for them.
    p = ev.SeqFeatures("p", _seqs(rng, (5,), 26), [], isometric_flip=True)
    p.flipped.append(flip_features(p.seqs[0]))
    iso = ev.flip_costs(p, p, tmp_path / "iso.npz")
    assert str(np.load(tmp_path / "iso.npz")["protocol"]) == "flip2" and iso.best[0, 0] == pytest.approx(0, abs=1e-9)


def test_vipe_feature_set_flips_by_embedding_the_mirrored_pose():
    from vpd_stream.models.vipe import embed_poses, load_vipe

    rng = np.random.default_rng(3)

    def clip(i):
        t = 6 + i
        kp = np.concatenate([rng.uniform(0, 200, (t, 13, 2)), np.ones((t, 13, 1))], -1).astype(np.float32)
        return PennClip(clip_id=f"{i}", action="a", label=i % 2, view="front", train=True, keypoints=kp, fps=25.0)

    fs = get_feature_set("vipe")
    c = clip(0)
    model = load_vipe()
    np.testing.assert_array_equal(fs.extract(c), embed_poses(model, c.keypoints))
    np.testing.assert_array_equal(fs.flipped(c), embed_poses(model, c.keypoints, flip=True))
    assert fs.extract(c).shape == (6, fs.dim)
    with pytest.raises(ConfigError, match="no feature-space flip"):
        fs.flip(fs.extract(c))
    queries, index = [clip(1), clip(2)], [clip(3), clip(4), clip(5)]
    costs = nns.feature_set_costs(fs, queries, index)
    np.testing.assert_allclose(costs, _four_way([fs.extract(c) for c in queries], [fs.flipped(c) for c in queries],
                                                [fs.extract(c) for c in index], [fs.flipped(c) for c in index]),
                               rtol=1e-6)
    pose2d = get_feature_set("pose2d")
    np.testing.assert_allclose(nns.feature_set_costs(pose2d, queries, index),
                               nns.flip_min_costs([pose2d.extract(c) for c in queries],
                                                  [pose2d.extract(c) for c in index], pose2d.flip), rtol=1e-12)
