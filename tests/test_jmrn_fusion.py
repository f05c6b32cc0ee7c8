"""Learned late fusion over modality logits."""
from __future__ import annotations

import numpy as np
import pytest

from offline_train.jmrn.fusion import fit_fusion
from vpd_stream.errors import InputError


def _modalities(n: int, c: int, rng: np.random.Generator):
    y = rng.integers(0, c, n)
    onehot = np.eye(c)[y]
    good = 3.0 * onehot + rng.normal(0, 1.0, (n, c))  # informative
    weak = 1.0 * onehot + rng.normal(0, 1.0, (n, c))  # partly informative, independent noise
    noise = rng.normal(0, 3.0, (n, c))  # useless
    return y, [good, weak, noise]


def test_informative_modality_weighs_most_and_fusion_helps() -> None:
    rng = np.random.default_rng(0)
    y_tr, tr = _modalities(600, 6, rng)
    y_te, te = _modalities(2000, 6, rng)
    fusion = fit_fusion(tr, y_tr)
    w = fusion.weights
    assert w.shape == (3,) and w[0] > w[1] > abs(w[2])
    acc = lambda s: float((s.argmax(1) == y_te).mean())  # noqa: E731
    fused = acc(fusion.scores(te))
    assert fused >= acc(te[0]) - 0.005  # never worse than the best single modality (up to noise)
    assert fused > acc(sum(te))  # and better than an equal-weight sum that lets the noise in
    assert fit_fusion(tr, y_tr).weights.tolist() == w.tolist()  # deterministic


def test_multilabel_per_class_weights() -> None:
    rng = np.random.default_rng(1)
    n, c = 800, 4
    y = (rng.random((n, c)) < 0.3).astype(int)
    a = 4.0 * (y - 0.5) + rng.normal(0, 1, (n, c))
    b = rng.normal(0, 2, (n, c))
    b[:, 2] = 4.0 * (y[:, 2] - 0.5) + rng.normal(0, 0.3, n)  # modality b is the expert for class 2
    fusion = fit_fusion([a, b], y, multilabel=True)
    assert fusion.weights.shape == (2, c)
    assert fusion.weights[1, 2] > fusion.weights[0, 2] and fusion.weights[0, 0] > fusion.weights[1, 0]


def test_bad_inputs_are_clear() -> None:
    with pytest.raises(InputError, match="same shape"):
        fit_fusion([np.zeros((3, 2)), np.zeros((4, 2))], np.zeros(3))
    with pytest.raises(InputError, match="labels"):
        fit_fusion([np.zeros((3, 2))], np.zeros(5))
    with pytest.raises(InputError, match="NaN"):
        fit_fusion([np.full((3, 2), np.nan)], np.zeros(3))
