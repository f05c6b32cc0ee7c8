"""Save and load heads safely: weights in safetensors, configuration and provenance in JSON.

``name.safetensors`` holds one or more models' tensors (an ensemble is stored with the
prefix ``m{i}.``); ``name.json`` (the common sidecar of ``weights_file``: format, version,
sha256 of the tensors) holds the HeadConfig, the class names, the feature set, the
training command and its metrics. No pickle is involved anywhere.

``read_head`` checks a head's sidecar and tensors file (sha256) and returns its
configuration and metadata without PyTorch, for the engines that run heads without it
(``engines.heads``); ``load_heads`` builds the PyTorch modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from .weights_file import read_sidecar, write_model_file

if TYPE_CHECKING:
    import torch

    from .heads import HeadConfig

FORMAT = "vpd-stream-head"
VERSION = 1
FIX = "train it with `vpd-stream train` or point the plugin's 'weights' option at an existing head"


KINDS = ("recognizer", "detector")


@dataclass
class HeadBundle:
    config: "HeadConfig"
    models: list["torch.nn.Module"]
    meta: dict[str, Any] = field(default_factory=dict)  # classes, features, command, metrics, ...


def save_heads(path: str | Path, bundle: HeadBundle, dtype: "torch.dtype | None" = None) -> None:
    """Write path.safetensors + path.json; weights are stored as fp16 (``dtype``) to keep them small."""
    import torch

    dtype = torch.float16 if dtype is None else dtype
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, model in enumerate(bundle.models):
        for k, v in model.state_dict().items():
            v = v.detach().cpu()
            tensors[f"m{i}.{k}"] = (v.to(dtype) if v.is_floating_point() else v).contiguous()
    sidecar = {"config": bundle.config.to_dict(), "ensemble": len(bundle.models), **bundle.meta}
    write_model_file(path.with_suffix(".safetensors"), tensors, sidecar, FORMAT, VERSION)


def read_head(path: str | Path, kind: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A head's checked configuration and its whole sidecar, without PyTorch.

    The sidecar must be intact (format, version, the tensors' sha256) and the configuration
    say a known kind (``kind``, when given) with the sizes a network needs.
    """
    path = Path(path).with_suffix("")
    meta = read_sidecar(path.with_suffix(".safetensors"), FORMAT, VERSION, "head", FIX)
    config = meta.get("config")
    try:
        if not isinstance(config, dict):
            raise ValueError("no configuration")
        if int(meta["ensemble"]) < 1:
            raise ValueError(f"ensemble of {meta['ensemble']}")
        int(config["input_dim"]), int(config.get("num_classes", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"head {path} cannot be read ({exc}); retrain it or restore the file") from None
    if config.get("kind") not in KINDS:
        raise ModelError(f"head {path} has an unknown kind {config.get('kind')!r} in its sidecar; retrain it")
    if kind is not None and config["kind"] != kind:
        raise ModelError(f"head {path} is a {config['kind']}, but a {kind} is needed here")
    return dict(config), meta


def load_heads(path: str | Path, kind: str | None = None) -> HeadBundle:
    from safetensors.torch import load_file

    from .heads import ARCHS, HeadConfig, build_head

    path = Path(path).with_suffix("")
    wfile = path.with_suffix(".safetensors")
    meta = read_sidecar(wfile, FORMAT, VERSION, "head", FIX)
    for key in ("format", "format_version", "weights_sha256"):
        meta.pop(key, None)
    try:
        cfg = HeadConfig(**meta.pop("config"))
        n = int(meta.pop("ensemble"))
        tensors = load_file(str(wfile))
    except Exception as exc:
        raise ModelError(f"head {path} cannot be read ({exc}); retrain it or restore the file") from None
    if cfg.kind not in KINDS:
        raise ModelError(f"head {path} has an unknown kind {cfg.kind!r} in its sidecar; retrain it")
    if cfg.arch not in ARCHS:
        raise ModelError(f"head {path} has an unknown arch {cfg.arch!r} in its sidecar (this vpd-stream builds "
                         f"{', '.join(ARCHS)}); retrain it or upgrade vpd-stream")
    if kind is not None and cfg.kind != kind:
        raise ModelError(f"head {path} is a {cfg.kind}, but a {kind} is needed here")
    models = []
    for i in range(n):
        try:
            model = build_head(cfg)
        except (ValueError, TypeError, RuntimeError) as exc:  # sizes no network can have
            raise ModelError(f"head {path}: its sidecar describes no buildable network ({exc}); retrain it") from None
        prefix = f"m{i}."
        state = {k[len(prefix):]: v.float() if v.is_floating_point() else v
                 for k, v in tensors.items() if k.startswith(prefix)}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ModelError(f"head {path} does not match its configuration ({first}); retrain it") from None
        model.eval()
        models.append(model)
    return HeadBundle(cfg, models, meta)


def head_meta(path: str | Path) -> dict[str, Any]:
    """A head's sidecar (classes, features, fps, calibration, command) without loading weights.

    For plugins that must know, before the chain is checked, which features a head consumes.
    """
    return read_sidecar(Path(path).with_suffix(".safetensors"), FORMAT, VERSION, "head", FIX, verify_hash=False)


def head_features(path: str | Path, default: str = "pose") -> str:
    """``"pose"`` or ``"embedding"``: what the head at ``path`` was trained on (``default`` if unrecorded)."""
    return str(head_meta(path).get("features") or default)
