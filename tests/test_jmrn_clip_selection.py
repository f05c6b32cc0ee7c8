"""Pose-guided clip selection: windows, selection methods, the ranker learning the oracle."""
from __future__ import annotations

import numpy as np
import torch

from offline_train.jmrn.clip_selection import (DESCRIPTOR_DIM, RankerConfig, accuracy_vs_k, clip_descriptor, clip_windows,
                                               fit_ranker, oracle_topk, select)


def test_windows_cover_the_video_evenly() -> None:
    w = clip_windows(100, 8)
    assert len(w) == 8 and w[0][0] == 0 and w[-1][1] == 100
    assert len({e - s for s, e in w}) == 1 and w[0][1] - w[0][0] == 35
    assert clip_windows(5, 4) == [(0, 5)] * 4  # shorter than min_len: the whole video


def test_select_methods() -> None:
    assert select("dense", 2, 5).tolist() == [0, 1, 2, 3, 4]
    assert select("uniform", 3, 7).tolist() == [0, 3, 6]
    assert select("ranker", 2, 4, np.array([0.1, 0.9, 0.5, 0.2])).tolist() == [1, 2]
    assert len(set(select("random", 3, 8, rng=np.random.default_rng(0)).tolist())) == 3


def test_descriptor() -> None:
    norm = np.zeros((20, 13, 2), np.float32)
    norm[10:, 5, 0] = np.linspace(0, 1, 10)
    d_still, d_moving = clip_descriptor(norm, 0, 10), clip_descriptor(norm, 10, 20)
    assert d_still.shape == (DESCRIPTOR_DIM,)
    assert d_moving[52 + 5] > 0 and d_still[52 + 5] == 0  # per-joint speed
    assert d_moving[-1] > d_still[-1]  # position in the video


def test_ranker_mimics_the_oracle_and_beats_random() -> None:
    """Synthetic: in each video 2 of 8 clips are informative, and their poses show it (speed)."""
    rng = np.random.default_rng(0)
    v, n, c = 300, 8, 5
    labels = rng.integers(0, c, v)
    logp = np.log(np.full((v, n, c), 1.0 / c))
    desc = rng.normal(0, 1, (v, n, DESCRIPTOR_DIM)).astype(np.float32)
    for i in range(v):
        good = rng.choice(n, 2, replace=False)
        desc[i, good, 52:65] += 2.0  # salient clips move more
        p = np.full((2, c), 0.05)
        p[:, labels[i]] = 0.8
        logp[i, good] = np.log(p / p.sum(1, keepdims=True))
        # the other clips are confidently wrong half the time
        wrong = [j for j in range(n) if j not in good][:3]
        q = np.full((len(wrong), c), 0.05)
        q[:, (labels[i] + 1) % c] = 0.8
        logp[i, wrong] = np.log(q / q.sum(1, keepdims=True))
    tr, te = np.arange(200), np.arange(200, 300)
    oracle = oracle_topk(logp[tr], labels[tr], 2)
    assert oracle.sum(1).tolist() == [2] * 200
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 66-d MLP: extra threads only add overhead on a busy machine
    try:
        ranker = fit_ranker(desc[tr], oracle, RankerConfig(epochs=150))
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        scores = ranker(torch.as_tensor(desc[te])).numpy()
    curves = accuracy_vs_k(logp[te], labels[te], scores, [1, 2, 8], random_repeats=3)
    assert curves["ranker"][1] > curves["random"][1] + 0.2
    assert curves["ranker"][1] >= curves["dense"][1]
    assert curves["oracle"][0] == 1.0 and len(set(curves["dense"])) == 1
