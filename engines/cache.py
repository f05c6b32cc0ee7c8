"""Where exported ONNX files and built engines are cached, and the keys that name them.

A cached artefact is valid only for exactly what produced it, so every input that changes
the bytes is in its key: the weights' sha256 for an ONNX export; for a TensorRT engine the
TensorRT version, the GPU name and compute capability, the ONNX sha256, the precision
and the optimization profile.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE_ENV = "VPD_CACHE_DIR"


def cache_dir(override: str | Path | None = None) -> Path:
    """``override``, else ``$VPD_CACHE_DIR``, else ``~/.cache/vpd-stream`` (created)."""
    root = Path(override or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vpd-stream")
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _short(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def onnx_cache_path(weights_sha256: str, precision: str, opset: int, root: str | Path | None = None,
                    variant: str = "") -> Path:
    """The cached ONNX export of one checkpoint (``variant`` e.g. "int8-<calibration hash>")."""
    key = _short({"weights": weights_sha256, "precision": precision, "opset": opset, "variant": variant})
    tag = f"{precision}{'-' + variant.split('-')[0] if variant else ''}"
    return cache_dir(root) / "onnx" / f"student-{weights_sha256[:12]}-{tag}-{key}.onnx"


@dataclass(frozen=True)
class TensorRTKey:
    trt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    onnx_sha256: str
    precision: str
    profile: tuple[int, int, int]  # batch min, opt, max

    def digest(self) -> str:
        return _short(asdict(self))

    def path(self, root: str | Path | None = None) -> Path:
        return cache_dir(root) / "tensorrt" / f"{self.onnx_sha256[:12]}-{self.precision}-{self.digest()}.engine"
