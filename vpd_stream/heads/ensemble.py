"""Class probabilities of a recognizer ensemble with flip test-time averaging (live and offline)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from vpd_stream.models.heads import pad_batch


@torch.no_grad()
def predict_proba(models: list[Callable], seqs: list[np.ndarray], flip: Callable | None,
                  batch_size: int = 100, flipped: list[np.ndarray] | None = None) -> np.ndarray:
    """Class probabilities, summed over the flip views and averaged over an ensemble.

    The flipped view is ``flip(seq)``, or ``flipped[i]`` when given (embeddings carry theirs).

    Sequences are batched only with others of exactly the same length, so a result never
    depends on which other sequences happen to share its batch.
    """
    out = []
    seq_lengths = np.array([len(s) for s in seqs])
    groups = [np.flatnonzero(seq_lengths == n) for n in np.unique(seq_lengths)]
    for idx in (g[s:s + batch_size] for g in groups for s in range(0, len(g), batch_size)):
        views = [[seqs[i] for i in idx]]
        if flipped is not None:
            views.append([flipped[i] for i in idx])
        elif flip is not None:
            views.append([flip(seqs[i]) for i in idx])
        p: torch.Tensor | None = None
        for model in models:  # an nn.Module, or any callable (x, lengths) -> logits (an engine)
            if isinstance(model, torch.nn.Module):
                model.eval()
            for v in views:
                padded, lengths = pad_batch(v)
                q = model(padded, lengths).softmax(-1)
                p = q if p is None else p + q
        assert p is not None, "predict_proba needs at least one model"
        out.append((idx, (p / len(models)).numpy()))
    probs = np.zeros((len(seqs), out[0][1].shape[1]), dtype=np.float32)
    for idx, group_probs in out:
        probs[idx] = group_probs
    return probs
