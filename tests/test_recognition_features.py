"""Recognizer training options (issue 15) and the Penn evaluation on the feature sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offline_train.recognition import TrainConfig, class_weights, train_recognizer
from vpd_stream.heads.ensemble import predict_proba


def _toy(n_per_class=(24, 24, 8), seed=0):
    """Three classes told apart by the sign pattern of a drift over time; lengths vary 8..30."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    patterns = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    for c, n in enumerate(n_per_class):
        for _ in range(n):
            t = int(rng.integers(8, 31))
            ramp = np.linspace(-1, 1, t)[:, None]
            seqs.append((ramp * patterns[c] + 0.3 * rng.normal(size=(t, 4))).astype(np.float32))
            labels.append(c)
    return seqs, np.array(labels)


def test_class_weights_are_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert w.dtype == np.float32 and w[3] == 0.0
    np.testing.assert_allclose(w[:3], [6 / 3 / 3, 6 / 1 / 3, 6 / 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(w[:3] * np.array([3, 1, 2]), 2.0, rtol=1e-6)  # each class weighs N / C in total


@pytest.mark.parametrize("opts", [{"crop": "shortest"}, {"crop": "none"}, {"crop": "none", "max_len": 12},
                                  {"balance": True}])
def test_training_options_learn_a_separable_problem(opts):
    seqs, labels = _toy()
    test_seqs, test_labels = _toy(seed=1)
    model, info = train_recognizer(seqs, labels, 3, None, TrainConfig(epochs=12, batch_size=16, **opts))
    acc = float((predict_proba([model], test_seqs, None).argmax(1) == test_labels).mean())
    assert acc >= 0.85, (opts, acc, info)


@pytest.mark.slow
def test_penn_eval_quick_reports_the_feature_set_and_the_full_bigru(data_dir: Path):
    from offline_train.evaluate_penn import EvalOptions, run_penn_eval

    penn = data_dir / "penn_action"
    if not (penn / "labels").is_dir():
        pytest.skip(f"Penn Action not found under {penn}")
    text = run_penn_eval(EvalOptions(data=penn, features="pose2d_box", quick=True, detection=False,
                                     bigru=True), log=lambda m: None)
    assert "`pose2d_box` (26-d box-normalized" in text
    assert "| BiGRU (pose2d_box, this run;" in text
    nns = float(text.split("| NNS-DTW (pose2d_box, this run) | ")[1].split(" ")[0])
    assert nns >= 90.0  # 96.6 % on the quick subset (95.3 % on the full test set)
