"""The sequence heads (detector ensemble, recognizer) behind the engine interface.

``head_engines(path, kind, backend=...)`` gives the engines a head runs on:

- ``torch``: the reference. The safetensors head is loaded into PyTorch modules; the
  detector ensemble runs as one module (``EnsembleActivation``: windows (B, T, d) → the mean
  sigmoid activation (B, T)), the recognizer as one engine per ensemble member (x (B, T, d),
  lengths (B,) → logits (B, C)).
- anything else (the CPU default, ``onnxruntime``): the same networks as ONNX, run by ONNX
  Runtime on the CPU (one thread, no spinning: the heads are small and the stages around them
  need the cores; no memory arena: a batch of many windows would keep its +115 MB). The ONNX
  is exported once per weights file and cached like the TensorRT
  engines (``$VPD_CACHE_DIR/onnx/head-...``, keyed by the weights' sha256, the sidecar's
  configuration and the exporter's version). Exporting needs PyTorch: it runs in this process when torch is already loaded,
  else in a child process (``python -m engines.heads``), so a run of the default chain never
  imports torch (about 190 MB of resident memory). Each export is checked against PyTorch on
  random sequences of several lengths before it is cached.

The recognizer's ONNX runs unpadded batches only (``predict_proba`` batches sequences of one
length together, so it never pads): the engine refuses lengths shorter than the batch's time
axis rather than silently differ from PyTorch's packed sequences.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    # Imported with the plugins, before any plugin's setup: imported after mediapipe's graphs
    # are built (the tracker's and pose's setup), the same import takes about 100 MB more
    # resident memory (mallinfo: +63 MB in use, +34 MB mapped; measured, cause inside the
    # native libraries), 19 MB when it comes first.
    import onnxruntime as _onnxruntime  # noqa: F401
except ImportError:  # a declared dependency; the engine says what to do if it is missing
    pass

from .base import Engine
from .cache import _short, cache_dir
from vpd_stream.errors import ModelError

EXPORT_VERSION = 1  # bump when the exported graph changes: old cached files are not reused
OPSET = 17
PARITY_ATOL = 1e-4  # |ONNX - PyTorch| allowed on the check sequences (activations / logits)
KINDS = ("detector", "recognizer")


@dataclass
class HeadEngines:
    """What a plugin needs from a head: its engines, configuration and sidecar metadata."""

    engines: list[Engine]
    config: dict[str, Any]  # the HeadConfig fields: kind, input_dim, num_classes, arch, ...
    meta: dict[str, Any]  # classes, features, fps, threshold, calibration, provenance
    backend: str = "onnxruntime"
    models: list[Any] = field(default_factory=list)  # the PyTorch modules (torch backend only)
    onnx_paths: list[Path] = field(default_factory=list)

    def summary(self, name: str) -> str:
        """The line for the run summary: which path this head runs on."""
        where = (f"ONNX cached in {self.onnx_paths[0].parent}" if self.onnx_paths else "the PyTorch reference")
        return f"{name}: {self.backend} fp32 on the CPU ({where})"

    def report(self, name: str, metrics: Any) -> str:
        """Set ``vpd_engine_path{model=name,...}`` (when there are metrics); the summary line."""
        gauge = getattr(metrics, "engine_path", None)
        if gauge is not None:
            from .dispatch import read_cpuinfo

            gauge.labels(model=name, backend=self.backend, precision="fp32", isa=read_cpuinfo().isa).set(1)
        return self.summary(name)


def head_engines(path: str | Path, kind: str, *, backend: str = "onnxruntime", max_batch: int = 64,
                 cache_root: str | Path | None = None) -> HeadEngines:
    """The engines of the head at ``path`` (without suffix) of ``kind`` on ``backend``."""
    from vpd_stream.models.head_io import read_head

    if kind not in KINDS:
        raise ValueError(f"unknown head kind {kind!r}")
    config, meta = read_head(path, kind)
    if backend == "torch":
        return _torch_heads(path, kind, max_batch)
    members = 1 if kind == "detector" else int(meta.get("ensemble", 1))
    paths = [cached_head_onnx(path, kind, member, meta["weights_sha256"], cache_root, config)
             for member in range(members)]
    engines: list[Engine] = [_ort_engine(p, kind, max_batch, path) for p in paths]
    return HeadEngines(engines, config, _public(meta), "onnxruntime", onnx_paths=paths)


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    """The sidecar as ``load_heads`` gives it: without the file-format keys, config and count."""
    return {k: v for k, v in meta.items()
            if k not in ("format", "format_version", "weights_sha256", "config", "ensemble")}


def _torch_heads(path: str | Path, kind: str, max_batch: int) -> HeadEngines:
    from vpd_stream.models.head_io import load_heads

    from . import create_engine

    bundle = load_heads(path, kind=kind)
    if kind == "detector":
        engines = [ensemble_engine(bundle.models, max_batch=max_batch)]
    else:
        engines = [create_engine("torch", module=m, max_batch=max_batch, channels_last=False) for m in bundle.models]
    return HeadEngines(engines, bundle.config.to_dict(), bundle.meta, "torch", models=bundle.models)


# -- PyTorch modules --------------------------------------------------------------------------


def ensemble_activation(models: list[Any]) -> Any:
    """The detector ensemble as one module: (B, T, d) windows → (B, T) mean sigmoid activation."""
    import torch
    from torch import nn

    class EnsembleActivation(nn.Module):
        input_names = ("windows",)
        output_names = ("activation",)

        def __init__(self, members: list[nn.Module]) -> None:
            super().__init__()
            self.models = nn.ModuleList(members)

        def forward(self, windows: torch.Tensor) -> torch.Tensor:
            return torch.stack([torch.sigmoid(m(windows)) for m in self.models]).mean(0)

    return EnsembleActivation(models).eval()


def ensemble_engine(models: list[Any], max_batch: int = 64) -> Engine:
    """The detector ensemble behind the engine interface (PyTorch backend, fp32, CPU): the reference."""
    from . import create_engine

    return create_engine("torch", module=ensemble_activation(models), max_batch=max_batch, channels_last=False)


# -- ONNX export and cache --------------------------------------------------------------------


def head_onnx_path(kind: str, member: int, weights_sha256: str, cache_root: str | Path | None = None,
                   config: dict[str, Any] | None = None) -> Path:
    # The sidecar's configuration is part of the network: the same tensors under another
    # configuration (a sidecar edited or mismatched) must be exported, and checked, anew.
    key = _short({"weights": weights_sha256, "kind": kind, "member": member, "opset": OPSET,
                  "export": EXPORT_VERSION, "config": config})
    return cache_dir(cache_root) / "onnx" / f"head-{kind}-{weights_sha256[:12]}-m{member}-{key}.onnx"


def cached_head_onnx(path: str | Path, kind: str, member: int, weights_sha256: str,
                     cache_root: str | Path | None = None, config: dict[str, Any] | None = None) -> Path:
    """The cached ONNX of one head (member), exported now if it is not there yet."""
    try:
        out = head_onnx_path(kind, member, weights_sha256, cache_root, config)
    except OSError:  # no writable cache: export into a private temporary folder for this run
        out = Path(tempfile.mkdtemp(prefix="vpd-heads-")) / f"head-{kind}-m{member}.onnx"
    if out.is_file():
        return out
    if "torch" in sys.modules:  # already paid for: export here
        export_head_onnx(path, kind, member, out)
        return out
    proc = subprocess.run([sys.executable, "-m", "engines.heads", str(path), kind, str(member), str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0 or not out.is_file():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if ln.startswith("error: ")), lines[-1] if lines else "no output")
        raise ModelError(f"head {path}: exporting it to ONNX failed ({last.removeprefix('error: ')}); "
                         f"run with --engine torch, or fix the head")
    return out


def _example(kind: str, config: dict[str, Any], batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((batch, length, int(config["input_dim"]))).astype(np.float32)
    if kind == "detector":
        return {"windows": x}
    return {"x": x, "lengths": np.full(batch, length, dtype=np.int64)}


def export_head_onnx(path: str | Path, kind: str, member: int, out: str | Path) -> Path:
    """Export one head (the detector's whole ensemble, or recognizer member ``member``) to ``out``.

    The export is compared with PyTorch on random sequences of lengths 1, 7 and 64 (batch 3)
    and written only when every output is within ``PARITY_ATOL``.
    """
    import warnings

    import torch

    from vpd_stream.models.head_io import load_heads

    from .export import export_onnx

    out = Path(out)
    bundle = load_heads(path, kind=kind)
    config = bundle.config.to_dict()
    if kind == "detector":
        module, output, axes = ensemble_activation(bundle.models), "activation", {"windows": {1: "time"},
                                                                                  "activation": {1: "time"}}
    else:
        if not 0 <= member < len(bundle.models):
            raise ModelError(f"head {path} has {len(bundle.models)} members, not {member + 1}")
        module, output, axes = bundle.models[member].eval(), "output", {"x": {1: "time"}}
    tmp = out.with_name(out.name + f".part{os.getpid()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the unpadded path it records
        export_onnx(module, _example(kind, config, 2, 16, 0), tmp, output_names=[output], opset=OPSET,
                    metadata={"vpd_head": json.dumps({"kind": kind, "member": member, "export": EXPORT_VERSION})},
                    dynamic_axes=axes)
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        for length in (1, 7, 64):
            inputs = _example(kind, config, 3, length, length)
            with torch.inference_mode():
                ref = module(*[torch.from_numpy(v) for v in inputs.values()]).float().numpy()
            got = session.run([output], inputs)[0]
            if got.shape != ref.shape or not np.allclose(got, ref, rtol=0, atol=PARITY_ATOL):
                worst = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
                raise ModelError(f"the ONNX export of head {path} differs from PyTorch by {worst:.2e} "
                                 f"(allowed {PARITY_ATOL:g}) on length {length}")
        del session
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# -- ONNX Runtime engines ---------------------------------------------------------------------


def _ort_engine(onnx_path: Path, kind: str, max_batch: int, head: str | Path) -> Engine:
    from .onnxruntime_engine import OnnxRuntimeEngine

    try:
        engine: Engine = OnnxRuntimeEngine(onnx_path, max_batch=max_batch, threads=1, spin=False, arena=False)
    except ModelError:
        # A damaged cache file (a full disk, a killed export): removed, so the next run exports it anew.
        onnx_path.unlink(missing_ok=True)
        raise ModelError(f"head {head}: the cached ONNX {onnx_path} could not be loaded and was removed; "
                         "run again to export it anew") from None
    return _UnpaddedRecognizer(engine) if kind == "recognizer" else engine


class _UnpaddedRecognizer(Engine):
    """A recognizer's ONNX engine, refusing padded batches (the graph has no packed path)."""

    backend = "onnxruntime"

    def __init__(self, engine: Engine) -> None:
        super().__init__(max_batch=engine.max_batch, device=engine.device, precision=engine.precision)
        self.engine = engine

    @property
    def input_names(self) -> list[str]:
        return self.engine.input_names

    @property
    def output_names(self) -> list[str]:
        return self.engine.output_names

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        lengths = np.asarray(inputs["lengths"])
        if lengths.size and int(lengths.min()) != int(np.shape(inputs["x"])[1]):
            raise ValueError("the recognizer's ONNX engine runs unpadded batches only (one length per batch)")
        return self.engine.run(inputs)

    def close(self) -> None:
        self.engine.close()


def _main(argv: list[str]) -> int:
    """``python -m engines.heads HEAD KIND MEMBER OUT``: export one head (the child process)."""
    from vpd_stream.errors import VpdError

    try:
        path, kind, member, out = argv
        export_head_onnx(path, kind, int(member), out)
    except VpdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001 - the parent turns it into one line
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
