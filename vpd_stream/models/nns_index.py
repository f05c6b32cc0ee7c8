"""NNS index files: labelled feature sequences the recognizer searches with DTW.

``name.safetensors`` holds every sequence's frames stacked (``features``, float32), where
each sequence starts (``offsets``, n + 1 entries), its class (``labels``) and, for learned
embeddings, the embedding of every mirrored frame (``flipped``, optional); the sidecar
``name.json`` holds the class names, the feature kind and width and the provenance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .weights_file import read_sidecar, write_model_file

FORMAT = "vpd-stream-nns-index"
VERSION = 1
FIX = "build one with `vpd-stream train nns-index`"


@dataclass
class NnsIndex:
    seqs: list[np.ndarray]  # (T_i, d) float32 each
    labels: np.ndarray  # (n,) int64 class ids
    classes: list[str]
    meta: dict[str, Any] = field(default_factory=dict)  # features ("pose"/"embedding"), provenance
    flipped: list[np.ndarray] | None = None  # embeddings: each sequence's flipped embeddings

    @property
    def dim(self) -> int:
        return int(self.seqs[0].shape[1])


def save_nns_index(path: str | Path, index: NnsIndex, dtype: Any = np.float32) -> Path:
    """``dtype``: how the features are stored (float16 halves a committed index; read as float32)."""
    import torch

    if not index.seqs or len(index.seqs) != len(index.labels):
        raise ValueError("an NNS index needs one label per sequence and at least one sequence")
    offsets = np.cumsum([0] + [len(s) for s in index.seqs]).astype(np.int64)
    tensors = {"features": torch.from_numpy(np.concatenate(index.seqs).astype(dtype)),
               "offsets": torch.from_numpy(offsets),
               "labels": torch.from_numpy(np.asarray(index.labels, dtype=np.int64))}
    if index.flipped is not None:
        if [s.shape for s in index.flipped] != [s.shape for s in index.seqs]:
            raise ValueError("flipped embeddings must match the sequences' shapes")
        tensors["flipped"] = torch.from_numpy(np.concatenate(index.flipped).astype(dtype))
    sidecar = {"classes": list(index.classes), "dim": index.dim, "sequences": len(index.seqs), **index.meta}
    return write_model_file(Path(path).with_suffix(".safetensors"), tensors, sidecar, FORMAT, VERSION)


def load_nns_index(path: str | Path) -> NnsIndex:
    from safetensors.numpy import load_file

    path = Path(path).with_suffix(".safetensors")
    side = read_sidecar(path, FORMAT, VERSION, "NNS index", FIX)
    try:
        t = load_file(str(path))
        feats, offsets, labels, mirrored = t["features"], t["offsets"], t["labels"], t.get("flipped")
        feats = feats.astype(np.float32, copy=False)  # float16 on disk is read as float32
        mirrored = None if mirrored is None else mirrored.astype(np.float32, copy=False)
    except Exception as exc:  # safetensors raises several types on a damaged file
        raise ModelError(f"NNS index {path} cannot be read ({exc}); {FIX}") from None
    if offsets[0] != 0 or offsets[-1] != len(feats) or len(offsets) != len(labels) + 1 or np.any(np.diff(offsets) < 1):
        raise ModelError(f"NNS index {path} is inconsistent (offsets do not cover the features); {FIX}")
    classes = list(side.get("classes") or [])
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ModelError(f"NNS index {path} has labels outside its {len(classes)} classes; {FIX}")
    if mirrored is not None and mirrored.shape != feats.shape:
        raise ModelError(f"NNS index {path} has flipped embeddings of another shape; {FIX}")
    spans = list(zip(offsets[:-1], offsets[1:]))
    meta = {k: v for k, v in side.items() if k not in ("classes", "dim", "sequences")}
    return NnsIndex([feats[a:b] for a, b in spans], labels, classes, meta,
                    None if mirrored is None else [mirrored[a:b] for a, b in spans])


def index_meta(path: str | Path) -> dict[str, Any]:
    """An index's sidecar (classes, features, fps, calibration, command) without reading it."""
    return read_sidecar(Path(path).with_suffix(".safetensors"), FORMAT, VERSION, "NNS index", FIX, verify_hash=False)
