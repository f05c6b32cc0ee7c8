"""RAFT weights: a torchvision ``.pth`` state dict converted once to safetensors.

A ``.pth`` file is a pickle; vpd-stream loads weights without pickle (safetensors). The one
place a ``.pth`` is read is this explicit conversion, which the user runs once:

    vpd-stream convert-raft raft_small_C_T_V2-01064c6d.pth -o raft_small.safetensors

It reads the file with ``torch.load(weights_only=True)`` (PyTorch's restricted unpickler:
tensors and plain containers only), checks that the tensors are a RAFT-small or -large
state dict (strict: every key, every shape), and writes ``raft_small.safetensors`` with a
JSON sidecar (format ``vpd-stream-raft``, the variant, the source file's name and sha256,
the sha256 of the tensors). ``load_raft`` then reads only that pair.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .raft import RAFT

from ..errors import ModelError
from .weights_file import file_sha256, write_model_file

# vpd_stream.models.raft (and torch) are imported inside the functions: listing the
# commands in `vpd-stream --help` must not load torch.

FORMAT = "vpd-stream-raft"
VERSION = 1
VARIANTS = ("small", "large")
FIX = "convert torchvision RAFT weights once with `vpd-stream convert-raft FILE.pth`"


def _state_dict_of(source: Path) -> dict:
    import torch

    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable or non-tensor pickle ends in one clear line
        raise ModelError(f"RAFT weights file {source} cannot be read as a state dict "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"RAFT weights file {source} holds no tensor state dict; pass torchvision's raft_small "
                         "or raft_large weights")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _fits(state: dict, variant: str) -> str | None:
    """None if ``state`` is exactly a RAFT-``variant`` state dict, else what is wrong."""
    from .raft import build_raft

    expected = build_raft(variant).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        return f"missing {len(missing)} keys, e.g. {missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]}"
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            return f"tensor {key} has shape {tuple(state[key].shape)}, raft_{variant} needs {tuple(tensor.shape)}"
    return None


def convert_raft_weights(source: str | Path, out: str | Path | None = None, variant: str | None = None) -> Path:
    """Convert a torchvision RAFT ``.pth`` to ``.safetensors`` + sidecar; return the new path."""
    source = Path(source)
    if not source.is_file():
        raise ModelError(f"RAFT weights file {source} does not exist")
    state = _state_dict_of(source)
    candidates = [variant] if variant else list(VARIANTS)
    problems = {v: _fits(state, v) for v in candidates}
    found = next((v for v, problem in problems.items() if problem is None), None)
    if found is None:
        detail = "; ".join(f"raft_{v}: {p}" for v, p in problems.items())
        raise ModelError(f"RAFT weights file {source} is not a torchvision RAFT state dict ({detail})")
    out = Path(out) if out is not None else source.with_name(f"raft_{found}.safetensors")
    if out.suffix != ".safetensors":
        raise ModelError(f"the converted RAFT weights must be a .safetensors file, got {out}")
    write_model_file(out, {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                     {"variant": found, "converted_from": source.name, "source_sha256": file_sha256(source)},
                     FORMAT, VERSION)
    return out


def read_raft_file(path: str | Path, variant: str) -> dict:
    """The tensors of a converted RAFT file, checked against its sidecar and ``variant``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .weights_file import read_sidecar

    path = Path(path)
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        raise ModelError(f"RAFT weights {path} are a pickle-based file, which vpd-stream does not load; convert "
                         f"them once: `vpd-stream convert-raft {path}` writes raft_{variant}.safetensors beside it "
                         "(then point raft_weights at that)")
    if not path.is_file():
        raise ModelError(f"RAFT weights file {path} does not exist; {FIX}")
    meta = read_sidecar(path, FORMAT, VERSION, "RAFT", FIX)
    if meta.get("variant") != variant:
        raise ModelError(f"RAFT weights {path} are raft_{meta.get('variant')}, but raft_{variant} is configured; "
                         f"set [plugins.flow] raft_variant = \"{meta.get('variant')}\" or use the other file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"RAFT weights file {path} cannot be read ({exc}); {FIX}") from None


def load_raft(path: str | Path, variant: str = "small", num_flow_updates: int = 12) -> "RAFT":
    """RAFT with weights from a converted file (``vpd-stream convert-raft``): safetensors and
    its sidecar only; a ``.pth`` (pickle) is refused with the conversion command."""
    from .raft import build_raft

    state = read_raft_file(path, variant)
    model = build_raft(variant, num_flow_updates)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ModelError(f"RAFT weights file {path} does not match raft_{variant} "
                         f"({str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}); "
                         "is it the other variant?") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"RAFT weights file {path} does not match raft_{variant} (missing {len(result.missing_keys)} keys, "
            f"e.g. {result.missing_keys[:2]}; unexpected {len(result.unexpected_keys)}, e.g. "
            f"{result.unexpected_keys[:2]}); is it the other variant?")
    return model.eval()


@click.command("convert-raft")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Where to write (default: raft_VARIANT.safetensors beside SOURCE).")
@click.option("--variant", type=click.Choice(VARIANTS), help="Check for this variant (default: whichever fits).")
def convert_raft(source: str, out: str | None, variant: str | None) -> None:
    """Convert torchvision RAFT weights (.pth) once to safetensors, the only form the flow plugin loads."""
    path = convert_raft_weights(source, out, variant)
    click.echo(f"wrote {path} and {path.with_suffix('.json').name}; use it with "
               f"[plugins.flow] method = \"raft\", raft_weights = \"{path}\"")
