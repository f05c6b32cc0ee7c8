"""NNS index files: labelled feature sequences the recognizer searches with DTW.

``name.safetensors`` holds every sequence's frames stacked (``features``: float32, float16,
or int8 with a per-dimension ``scale``; always read as float32), where
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


STORAGE = {"float32": np.float32, "float16": np.float16, "int8": np.int8}


def save_nns_index(path: str | Path, index: NnsIndex, storage: str = "float32") -> Path:
    """``storage``: how the features are kept on disk (``STORAGE``): float16 halves a file,
    int8 (symmetric, one scale per feature dimension) quarters it; all read back as float32."""
    import torch

    if not index.seqs or len(index.seqs) != len(index.labels):
        raise ValueError("an NNS index needs one label per sequence and at least one sequence")
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {', '.join(STORAGE)}, not {storage!r}")
    feats = np.concatenate(index.seqs).astype(np.float32)
    flipped = None
    if index.flipped is not None:
        if [s.shape for s in index.flipped] != [s.shape for s in index.seqs]:
            raise ValueError("flipped embeddings must match the sequences' shapes")
        flipped = np.concatenate(index.flipped).astype(np.float32)
    offsets = np.cumsum([0] + [len(s) for s in index.seqs]).astype(np.int64)
    tensors = {"offsets": torch.from_numpy(offsets), "labels": torch.from_numpy(np.asarray(index.labels, dtype=np.int64))}
    scale = None
    if storage == "int8":
        both = feats if flipped is None else np.concatenate([feats, flipped])
        scale = np.abs(both).max(0) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        tensors["scale"] = torch.from_numpy(scale)
    tensors["features"] = torch.from_numpy(_encode(feats, storage, scale))
    if flipped is not None:
        tensors["flipped"] = torch.from_numpy(_encode(flipped, storage, scale))
    sidecar = {"classes": list(index.classes), "dim": index.dim, "sequences": len(index.seqs), **index.meta}
    return write_model_file(Path(path).with_suffix(".safetensors"), tensors, sidecar, FORMAT, VERSION)


def _encode(x: np.ndarray, storage: str, scale: np.ndarray | None) -> np.ndarray:
    if scale is None:
        return x.astype(STORAGE[storage])
    return np.clip(np.rint(x / scale), -127, 127).astype(np.int8)


def _decode(x: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    return x.astype(np.float32, copy=False) if scale is None else x.astype(np.float32) * scale


def load_nns_index(path: str | Path) -> NnsIndex:
    from safetensors.numpy import load_file

    path = Path(path).with_suffix(".safetensors")
    side = read_sidecar(path, FORMAT, VERSION, "NNS index", FIX)
    try:
        t = load_file(str(path))
        feats, offsets, labels, mirrored = t["features"], t["offsets"], t["labels"], t.get("flipped")
        scale = t.get("scale")  # int8 storage: one scale per dimension
        feats = _decode(feats, scale)
        mirrored = None if mirrored is None else _decode(mirrored, scale)
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
