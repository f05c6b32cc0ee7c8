"""Class probabilities of a recognizer ensemble with flip test-time averaging (live and offline)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def predict_proba(models: list[Any], seqs: list[np.ndarray], flip: Callable | None,
                  batch_size: int = 100, flipped: list[np.ndarray] | None = None) -> np.ndarray:
    """Class probabilities, summed over the flip views and averaged over an ensemble.

    The flipped view is ``flip(seq)``, or ``flipped[i]`` when given (embeddings carry theirs).
    A model is an engine (``engines.Engine``: inputs ``x`` (B, T, d) float32 and ``lengths``
    (B,) int64, output ``output``, the logits), an ``nn.Module`` or any callable
    ``(x, lengths) -> logits`` on torch tensors; only the last two need PyTorch.

    Sequences are batched only with others of exactly the same length, so a result never
    depends on which other sequences happen to share its batch (and no batch is padded).
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
        p: np.ndarray | None = None
        for model in models:
            for v in views:
                q = _engine_proba(model, v) if _is_engine(model) else _torch_proba(model, v)
                p = q if p is None else p + q
        assert p is not None, "predict_proba needs at least one model"
        out.append((idx, p / np.float32(len(models))))
    probs = np.zeros((len(seqs), out[0][1].shape[1]), dtype=np.float32)
    for idx, group_probs in out:
        probs[idx] = group_probs
    return probs


def _is_engine(model: Any) -> bool:
    return callable(getattr(model, "run", None)) and hasattr(model, "input_names")


def _engine_proba(engine: Any, seqs: list[np.ndarray]) -> np.ndarray:
    x = np.stack([np.asarray(s, dtype=np.float32) for s in seqs])  # one length: nothing to pad
    logits = engine.run({"x": x, "lengths": np.full(len(seqs), x.shape[1], dtype=np.int64)})["output"]
    return softmax(np.asarray(logits, dtype=np.float32))


def _torch_proba(model: Any, seqs: list[np.ndarray]) -> np.ndarray:
    import torch

    from vpd_stream.models.heads import pad_batch

    if isinstance(model, torch.nn.Module):
        model.eval()
    with torch.no_grad():
        padded, lengths = pad_batch(seqs)
        return model(padded, lengths).softmax(-1).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float32 (as torch's)."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
