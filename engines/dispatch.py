"""CPU dispatch: the fastest numerically acceptable way to run a student on the CPU found.

``read_cpuinfo()`` reads ``/proc/cpuinfo`` at run time (never at import time) and
``candidate_paths`` turns its flags into the paths worth trying, in this order:

* ``onnxruntime int8`` — where the CPU multiplies u8×s8 natively (AVX512-VNNI, AVX-VNNI,
  AMX-INT8). Without VNNI the u8×s8 multiply-add saturates int16 and runs the slow
  multiply / widen / add sequence, so AVX2-only CPUs do not get it.
* ``torch bf16`` — where bf16 is native (AVX512-BF16 or AMX-BF16); oneDNN otherwise
  emulates it, 7x slower than fp32 (BENCHMARKS.md, issue 4). It runs as a frozen
  TorchScript graph traced under autocast: the weights are cast to bf16 once (eager
  autocast re-casts every weight on every call) and convolution + BN + ReLU are fused.
* ``onnxruntime fp32`` and ``torch fp32`` — always; torch fp32 is also the reference.

``dispatch`` measures every candidate once on real crops (the same crops the int8 export
is calibrated on), holds each low-precision one to the accuracy gate of
``engines.quantize.check_int8`` against torch fp32 (fp32 paths to ‖Δ‖/‖ref‖ ≤ 1e-4), picks
the fastest that passes and caches that choice, keyed like the TensorRT engines by
everything that changes it: the CPU model and its relevant flags, the weights' sha256,
the torch and onnxruntime versions, threads, batch and the calibration crops. Without real
crops (no calibration videos) only the fp32 paths are considered.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vpd_stream.errors import InputError, ModelError

log = logging.getLogger(__name__)

CPUINFO = "/proc/cpuinfo"
# The flags that decide which path is fast; only these enter the cache key.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                  "amx_tile", "amx_bf16", "amx_int8")
FP32_REL_LIMIT = 1e-4  # fp32 backends differ by summation order only
DISPATCH_VERSION = 1  # bump when the measurement or the choice changes


@dataclass(frozen=True)
class CpuInfo:
    """The CPU model and its feature flags, as /proc/cpuinfo names them."""

    model: str
    flags: frozenset[str]

    @property
    def vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    @property
    def native_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def isa(self) -> str:
        """One short name for the best vector unit (a bounded metric label)."""
        f = self.flags
        if {"amx_tile", "amx_int8", "amx_bf16"} <= f:
            return "amx"
        if "avx512_vnni" in f:
            return "avx512_vnni"
        if "avx_vnni" in f:
            return "avx_vnni"
        if "avx512f" in f:
            return "avx512"
        if "avx2" in f:
            return "avx2"
        return "baseline"

    def relevant_flags(self) -> list[str]:
        return [f for f in RELEVANT_FLAGS if f in self.flags]


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's ``model name`` and ``flags`` of a /proc/cpuinfo text."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return CpuInfo(model or platform.processor() or platform.machine(), flags)


def read_cpuinfo(path: str | Path = CPUINFO) -> CpuInfo:
    """This machine's CPU (a CPU with no flags where /proc/cpuinfo cannot be read)."""
    try:
        return parse_cpuinfo(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return CpuInfo(platform.processor() or platform.machine(), frozenset())


@dataclass(frozen=True)
class CpuPath:
    backend: str  # torch | onnxruntime
    precision: str  # fp32 | bf16 | int8

    def __str__(self) -> str:
        return f"{self.backend} {self.precision}"


def candidate_paths(cpu: CpuInfo, *, backends: tuple[str, ...] = ("onnxruntime", "torch"),
                    have_module: bool = True, have_crops: bool = True) -> list[CpuPath]:
    """The paths worth measuring on ``cpu``, fastest-expected first (see the module doc).

    ``have_module``: the torch module is there (not only an ONNX file), which every path
    but a given ONNX file needs; ``have_crops``: real crops for calibration and the gate,
    without which no low-precision path can be checked and none is tried.
    """
    paths = []
    if have_module and have_crops and cpu.vnni and "onnxruntime" in backends:
        paths.append(CpuPath("onnxruntime", "int8"))
    if have_module and have_crops and cpu.native_bf16 and "torch" in backends:
        paths.append(CpuPath("torch", "bf16"))
    if "onnxruntime" in backends:
        paths.append(CpuPath("onnxruntime", "fp32"))
    if have_module and "torch" in backends:
        paths.append(CpuPath("torch", "fp32"))
    return paths


@dataclass
class PathResult:
    backend: str
    precision: str
    rate: float = 0.0  # embeddings/s at the measured batch
    rel_error: float = 0.0
    ranking_kept: float = 1.0
    ok: bool = False
    note: str = ""


@dataclass
class Dispatch:
    """The chosen path, and what was measured to choose it."""

    backend: str
    precision: str
    isa: str
    cpu_model: str
    batch: int
    threads: int
    results: list[PathResult] = field(default_factory=list)
    reason: str = ""  # why some paths were not tried
    onnx_path: str = ""  # the ONNX file an onnxruntime choice runs (the int8 one for int8)
    from_cache: bool = False
    cache_path: str = ""

    @property
    def path(self) -> CpuPath:
        return CpuPath(self.backend, self.precision)

    def summary(self) -> str:
        """One line for the run summary: the path, and its speed against torch fp32."""
        by = {(r.backend, r.precision): r for r in self.results}
        chosen, ref = by.get((self.backend, self.precision)), by.get(("torch", "fp32"))
        speed = ""
        if chosen is not None and chosen.rate:
            speed = f", {chosen.rate:.0f} embeddings/s at batch {self.batch}"
            if ref is not None and ref.rate and ref is not chosen:
                speed += f" ({chosen.rate / ref.rate:.2f}x torch fp32)"
        cached = "cached" if self.from_cache else "measured now"
        return (f"{self.backend} {self.precision} on {self.isa} ({self.cpu_model}){speed}; {cached}"
                + (f"; {self.reason}" if self.reason else ""))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("from_cache")
        out.pop("cache_path")
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Dispatch":
        data = dict(data)
        results = [PathResult(**r) for r in data.pop("results", [])]
        return cls(**data, results=results)


def choose(results: list[PathResult]) -> PathResult:
    """The fastest path that passed its accuracy check (ties: the earlier, expected-faster one)."""
    passing = [r for r in results if r.ok and r.rate > 0]
    if not passing:
        raise ModelError("no CPU path of the student passed its accuracy check; "
                         "set [plugins.student] precision = \"fp32\"")
    return max(passing, key=lambda r: r.rate)  # max keeps the first of equal rates


def dispatch_key(cpu: CpuInfo, *, weights_sha256: str, threads: int, batch: int,
                 crops_digest: str | None, paths: list[CpuPath]) -> dict[str, Any]:
    import onnxruntime
    import torch

    return {"version": DISPATCH_VERSION, "cpu": cpu.model, "flags": cpu.relevant_flags(),
            "weights": weights_sha256, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "threads": threads, "batch": batch, "crops": crops_digest, "paths": [str(p) for p in paths]}


def dispatch_cache_path(key: dict[str, Any], root: str | Path | None = None) -> Path:
    from .cache import _short, cache_dir

    return cache_dir(root) / "dispatch" / f"student-{key['weights'][:12]}-{_short(key)}.json"


def calibration_videos(option: str | Path | None = None) -> Path | None:
    """Where real athlete videos for calibration are: ``option``, ``$VPD_DATA_DIR/videos``,
    or ``../shared/data/videos`` beside the repository; None when there are none."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get("VPD_DATA_DIR")
    candidates = [Path(env) / "videos"] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "videos")
    return next((c for c in candidates if c.is_dir()), None)


def load_crops(videos: Path, count: int = 64) -> tuple[Any, Any, str]:
    """(calibration crops, held-out crops, why not) from ``videos``; Nones with a reason."""
    from .quantize import load_real_crops

    try:
        calib = load_real_crops(videos, count, every=3, offset=0)
        held_out = load_real_crops(videos, 96, every=3, offset=1)  # frames calibration never saw
    except (InputError, OSError, ValueError) as exc:
        return None, None, f"no real crops for calibration ({exc})"
    return calib, held_out, ""


def measure_throughput(engine: Any, inputs: dict[str, np.ndarray], seconds: float) -> float:
    """Items per second of ``engine.run(inputs)`` over at least ``seconds`` (after one warm-up call)."""
    engine.run(inputs)  # warm-up: allocations, oneDNN primitives, the TorchScript freeze
    batch = len(next(iter(inputs.values())))
    calls, start = 0, time.perf_counter()
    while True:
        engine.run(inputs)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * batch / elapsed


def videos_identity(videos: Path | None) -> str | None:
    """A cheap identity of the calibration videos (names, sizes, mtimes), for the cache key:
    a cached choice is found without decoding a frame."""
    from .cache import _short
    from .quantize import CALIBRATION_VIDEOS

    if videos is None:
        return None
    files = [videos / v for v in CALIBRATION_VIDEOS if (videos / v).is_file()]
    if not files:
        return None
    return _short({"videos": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]})


def dispatch(student: Any, *, threads: int = 0, batch: int = 32, cpu: CpuInfo | None = None,
             backends: tuple[str, ...] = ("onnxruntime", "torch"), videos: Path | None = None,
             cache_root: str | Path | None = None, seconds: float = 1.0, rounds: int = 2,
             crops: tuple[Any, Any] | None = None, make_engine: Callable[..., Any] | None = None) -> Dispatch:
    """The cached choice for ``student`` (a StudentModel with its torch module) on this CPU,
    or, the first time, measure every candidate path and cache the fastest acceptable one.

    ``crops`` = (calibration, held-out) CropSets replaces reading them from ``videos``.
    """
    if student.module is None:
        raise ModelError("CPU dispatch needs the .safetensors checkpoint, not an ONNX file")
    cpu = cpu or read_cpuinfo()
    if crops is not None:
        identity = crops[0].digest() if crops[0] is not None else None
    else:
        identity = videos_identity(videos)
    have_crops = identity is not None
    paths = candidate_paths(cpu, backends=backends, have_module=True, have_crops=have_crops)
    key = dispatch_key(cpu, weights_sha256=student.weights_sha256, threads=threads, batch=batch,
                       crops_digest=identity, paths=paths)
    path = dispatch_cache_path(key, cache_root)
    cached = _read_cached(path)
    if cached is not None:
        return cached
    reason = ""
    if crops is not None:
        calib, held_out = crops
    elif have_crops:
        calib, held_out, reason = load_crops(videos)
    else:
        calib = held_out = None
        reason = "no calibration videos (set VPD_DATA_DIR or [plugins.student] calibration_videos)"
    if calib is None and have_crops:  # the videos were there but gave no crops
        paths = candidate_paths(cpu, backends=backends, have_module=True, have_crops=False)
    skipped = []
    if calib is None and (cpu.vnni or cpu.native_bf16):
        skipped.append(f"low precision not tried: {reason}")
    if not cpu.vnni and "onnxruntime" in backends:
        skipped.append("no VNNI: int8 not tried")
    log.warning("student: measuring %s once for this CPU and model (cached in %s)",
                ", ".join(map(str, paths)), path.parent)
    results, onnx_paths = measure_paths(student, paths, calib, held_out, threads=threads, batch=batch,
                                        cache_root=cache_root, seconds=seconds, rounds=rounds,
                                        make_engine=make_engine)
    best = choose(results)
    out = Dispatch(best.backend, best.precision, cpu.isa, cpu.model, batch, threads, results,
                   "; ".join(skipped), onnx_path=str(onnx_paths.get(CpuPath(best.backend, best.precision), "")))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(out.to_json(), indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    out.cache_path = str(path)
    return out


def _read_cached(path: Path) -> Dispatch | None:
    if not path.is_file():
        return None
    try:
        cached = Dispatch.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError):
        log.warning("ignoring an unreadable dispatch cache file %s", path)
        return None
    if cached.onnx_path and not Path(cached.onnx_path).is_file():
        return None  # the model it chose was removed from the cache: measure again
    cached.from_cache, cached.cache_path = True, str(path)
    return cached


def measure_paths(student: Any, paths: list[CpuPath], calib: Any, held_out: Any, *, threads: int, batch: int,
                  cache_root: str | Path | None = None, seconds: float = 1.0, rounds: int = 2,
                  make_engine: Callable[..., Any] | None = None) -> tuple[list[PathResult], dict[CpuPath, Path]]:
    """Gate and time every path (interleaved rounds); the ONNX file each onnxruntime path ran."""
    from .quantize import check_int8, split_by_video

    make_engine = make_engine or _make_engine
    if held_out is not None:
        inputs = held_out.inputs(np.arange(batch) % len(held_out))
        try:
            probe, gallery = split_by_video(held_out)
        except InputError:
            half = len(held_out) // 2
            probe, gallery = (type(held_out)(held_out.rgb[s], held_out.flow[s], held_out.sources[s])
                              for s in (slice(0, half), slice(half, None)))
    else:
        rng = np.random.default_rng(0)
        size = student.input_size
        inputs = {"rgb": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
                  "flow": rng.integers(0, 256, (batch, 2, size, size), dtype=np.uint8)}
        probe = gallery = None
    engines: dict[CpuPath, Any] = {}
    results: dict[CpuPath, PathResult] = {}
    try:
        for p in paths:
            try:
                engines[p] = make_engine(student, p, threads=threads, batch=batch, calib=calib,
                                         cache_root=cache_root)
                results[p] = PathResult(p.backend, p.precision)
            except (ModelError, RuntimeError, ValueError) as exc:
                results[p] = PathResult(p.backend, p.precision, note=f"cannot build: {exc}")
        reference = engines.get(CpuPath("torch", "fp32")) or _make_engine(
            student, CpuPath("torch", "fp32"), threads=threads, batch=batch, calib=None, cache_root=cache_root)
        _gate(reference, engines, results, inputs, probe, gallery, check_int8)
        for _ in range(rounds):  # interleaved, so a change in load hits every path alike
            for p, engine in engines.items():
                if results[p].ok:
                    results[p].rate = max(results[p].rate, measure_throughput(engine, inputs, seconds))
        onnx_paths = {p: e.model_path for p, e in engines.items() if hasattr(e, "model_path")}
    finally:
        for engine in engines.values():
            engine.close()
    return [results[p] for p in paths], onnx_paths


def _gate(reference: Any, engines: dict, results: dict, inputs: dict, probe: Any, gallery: Any,
          check: Callable) -> None:
    """Each path against torch fp32: fp32 to FP32_REL_LIMIT, bf16/int8 to the int8 gate."""
    from . import run_chunked

    if probe is not None:
        ref_p = run_chunked(reference, probe.inputs())["embedding"]
        ref_g = run_chunked(reference, gallery.inputs())["embedding"]
    ref_x = run_chunked(reference, inputs)["embedding"]
    for p, engine in engines.items():
        r = results[p]
        if p.precision == "fp32":
            from .quantize import relative_error

            r.rel_error = relative_error(ref_x, run_chunked(engine, inputs)["embedding"])
            r.ok = r.rel_error <= FP32_REL_LIMIT
            if not r.ok:
                r.note = f"fp32 differs from torch by {r.rel_error:.1e}"
            continue
        chk = check(ref_p, ref_g, run_chunked(engine, probe.inputs())["embedding"],
                    run_chunked(engine, gallery.inputs())["embedding"])
        r.rel_error, r.ranking_kept, r.ok = chk.rel_error, chk.ranking_kept, chk.ok
        if not chk.ok:
            r.note = f"fails the accuracy gate ({chk.summary()})"


def _make_engine(student: Any, path: CpuPath, *, threads: int, batch: int, calib: Any,
                 cache_root: str | Path | None) -> Any:
    onnx = cached_int8(student, calib, cache_root) if path.backend != "torch" and path.precision == "int8" else None
    return _cpu_engine(student, path, onnx, max_batch=batch, threads=threads, cache_root=cache_root)


def _cpu_engine(student: Any, path: CpuPath, onnx: str | Path | None, *, max_batch: int, threads: int,
                cache_root: str | Path | None) -> Any:
    """The torch engine, or onnxruntime on ``onnx`` (default: the cached fp32 export)."""
    from .onnxruntime_engine import OnnxRuntimeEngine
    from .torch_engine import TorchEngine

    if path.backend == "torch":
        return TorchEngine(student.module, max_batch=max_batch, precision=path.precision,
                           freeze=path.precision == "bf16")
    if not onnx:
        from .student import cached_export

        onnx = cached_export(student, "fp32", cache_root)
    return OnnxRuntimeEngine(onnx, max_batch=max_batch, precision=path.precision, threads=threads)


def cached_int8(student: Any, calib: Any, cache_root: str | Path | None = None) -> Path:
    """The student quantized to int8 on ``calib`` (made once per weights and crops, cached)."""
    from .cache import onnx_cache_path
    from .export import DEFAULT_OPSET
    from .quantize import quantize_int8
    from .student import cached_export

    path = onnx_cache_path(student.weights_sha256, "int8", DEFAULT_OPSET, cache_root,
                           variant=f"cal-{calib.digest()[:16]}")
    if not path.is_file():
        log.info("quantizing the student to %s", path)
        quantize_int8(cached_export(student, "fp32", cache_root), path, calib)
    return path


def engine_for(student: Any, choice: Dispatch, *, max_batch: int, threads: int = 0,
               cache_root: str | Path | None = None) -> Any:
    """The engine of the dispatch's choice for ``student``."""
    return _cpu_engine(student, choice.path, choice.onnx_path, max_batch=max_batch, threads=threads,
                       cache_root=cache_root)
