"""Model files: tensors in safetensors (no pickle), a JSON sidecar that says what they are.

``name.safetensors`` holds the tensors; ``name.json`` beside it holds the format name and
version, the sha256 of the tensors file and whatever the model kind adds (architecture,
classes, provenance). Every check on reading ends in a one-line ``ModelError`` that names
the file and says what to do (``fix``).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ..errors import ModelError


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def write_model_file(path: str | Path, tensors: dict, sidecar: dict[str, Any], fmt: str, version: int,
                     indent: int = 2) -> Path:
    """Write the tensors and the sidecar (format, version and sha256 added); return the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": fmt})
    full = {"format": fmt, "format_version": version, **sidecar, "weights_sha256": file_sha256(path)}
    sidecar_path(path).write_text(json.dumps(full, indent=indent) + "\n", encoding="utf-8")
    return path


def read_sidecar(path: str | Path, fmt: str, version: int, what: str, fix: str,
                 verify_hash: bool = True) -> dict[str, Any]:
    """The checked sidecar of weights file ``path``: present, JSON, right format, intact tensors."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise ModelError(f"{what} weights {path} not found: the file does not exist (missing); {fix}")
    if not side.is_file():
        raise ModelError(f"{what} weights {path} have no sidecar {side.name} (missing); {fix}")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} sidecar {side} cannot be read ({exc}); {fix}") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != fmt:
        raise ModelError(f"{side} is not a {what} sidecar (format {found!r}); point at a {what} model")
    if data.get("format_version") != version:
        raise ModelError(f"{side} has format version {data.get('format_version')}, this vpd-stream reads "
                         f"{version}; upgrade vpd-stream or {fix.split('; ')[0]}")
    digest = data.get("weights_sha256")
    if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        # Without it nothing ties the sidecar to these tensors (zeroed or swapped weights pass).
        raise ModelError(f"{side} has no valid weights_sha256 (the sha256 of {path.name}); it was not written "
                         f"by vpd-stream or was edited; {fix}")
    if verify_hash and file_sha256(path) != digest:
        raise ModelError(f"{what} weights {path} do not match the sha256 in {side.name}; "
                         "the file is corrupt or was replaced")
    return data
