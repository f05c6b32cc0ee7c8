"""Few-shot splits are fixed files; NNS-DTW, recognition training and AP behave on real data."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.action_detection import average_precision
from vpd_stream.heads.intervals import proposals, shape_interval
from offline_train.fewshot import KS, NUM_SPLITS, make_splits, penn_splits_path, read_splits
from vpd_stream.heads.nns import flip_min_costs, nns_predict


def test_committed_splits_are_k_per_class() -> None:
    path = penn_splits_path()
    assert path.is_file(), "the fixed few-shot split file must be committed"
    splits = read_splits(path)
    for k in KS:
        assert len(splits[str(k)]) == NUM_SPLITS
        for ids in splits[str(k)]:
            assert len(ids) == 15 * k and len(set(ids)) == len(ids)


def test_make_splits_deterministic() -> None:
    ids = [f"{i:04d}" for i in range(60)]
    labels = [i % 3 for i in range(60)]
    assert make_splits(ids, labels, (4,), 2, seed=1) == make_splits(ids, labels, (4,), 2, seed=1)


def test_flip_shortcut_equals_four_combinations() -> None:
    from vpd_stream.skeleton import flip_features
    from vpd_stream.dtw import DtwIndex

    rng = np.random.default_rng(0)
    q = [rng.normal(size=(int(n), 26)) for n in rng.integers(8, 20, 3)]
    x = [rng.normal(size=(int(n), 26)) for n in rng.integers(8, 20, 6)]
    fx = [flip_features(s) for s in x]
    four = np.minimum.reduce([DtwIndex(ix).cost_matrix(qq) for ix in (x, fx)
                              for qq in (q, [flip_features(s) for s in q])])
    assert np.allclose(flip_min_costs(q, x, flip_features), four)


def test_nns_on_real_penn_subset(data_dir) -> None:
    from offline_train.features import get_feature_set
    from offline_train.penn_action import load_penn_action

    root = data_dir / "penn_action"
    if not (root / "labels").is_dir():
        pytest.skip(f"Penn Action not found under {root}")
    fs = get_feature_set("pose2d")
    clips = load_penn_action(root)
    train = [c for c in clips if c.train][::4]
    test = [c for c in clips if not c.train][::20]
    costs = flip_min_costs([fs.extract(c) for c in test], [fs.extract(c) for c in train], fs.flip)
    acc = (nns_predict(costs, np.array([c.label for c in train])) == np.array([c.label for c in test])).mean()
    assert acc > 0.6  # 15 classes: chance is ~7 %


def test_proposals_and_ap() -> None:
    act = np.zeros(100)
    act[10:20] = 0.9
    act[50:52] = 0.9  # too short
    props = proposals(act, mean_len=10, min_len=3)
    assert props == [(10, 19, pytest.approx(0.9))]
    assert shape_interval(10, 11, 10) == (8, 14)  # stretched to round(0.67 x 10) = 7 frames about 10.5
    assert average_precision([props], [[(10, 19)]], 0.5) == 1.0
    assert average_precision([props], [[(60, 70)]], 0.5) == 0.0


@pytest.mark.slow  # trains a BiGRU: minutes on 2 shared cores
def test_train_recognizer_tiny_learns_separable_classes() -> None:
    import torch

    from offline_train.recognition import TrainConfig, train_recognizer
    from vpd_stream.heads.ensemble import predict_proba

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    seqs = [np.full((int(rng.integers(8, 14)), 4), c, dtype=np.float32) + rng.normal(0, 0.1, (1, 4)).astype(np.float32)
            for c in (-1, 1) for _ in range(10)]
    labels = np.array([0] * 10 + [1] * 10)
    model, info = train_recognizer(seqs, labels, 2, None, TrainConfig(epochs=15, min_steps=0, batch_size=8))
    assert (predict_proba([model], seqs, None).argmax(1) == labels).mean() == 1.0
