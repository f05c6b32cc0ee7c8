"""Student embeddings/s per backend, precision and batch, as ratios to PyTorch fp32 batch 1.

    python -m offline_train.benchmarks.student [--seconds 3] [--rounds 2] [--threads 2]

Every configuration is measured in the same run, interleaved round-robin so a change in
machine load hits all of them alike; each figure is the best round. Inputs are real crops
(DIS flow) from ``$VPD_DATA_DIR/videos`` or ``../shared/data/videos`` when present, random
uint8 otherwise. Accuracy columns compare each engine with PyTorch fp32 on those crops.
On a CUDA machine it also measures PyTorch fp16 and TensorRT at batch 64 and 256.
The student is the seeded random initialisation (no distilled weights exist yet).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Config:
    backend: str
    precision: str
    batch: int
    make: Callable[[], object]  # -> Engine (built lazily, once)
    engine: object | None = None
    best: float = 0.0  # embeddings/s
    rel_error: float | None = None


def _data_dir() -> Path | None:
    env = os.environ.get("VPD_DATA_DIR")
    here = Path(__file__).resolve().parents[2]
    for cand in ([Path(env) / "videos"] if env else []) + [here.parent / "shared" / "data" / "videos"]:
        if cand.is_dir():
            return cand
    return None


def _inputs(crops, batch: int) -> dict[str, np.ndarray]:
    idx = np.arange(batch) % len(crops.rgb)
    return {"rgb": np.ascontiguousarray(crops.rgb[idx]), "flow": np.ascontiguousarray(crops.flow[idx])}


def _measure(engine, inputs: dict[str, np.ndarray], seconds: float) -> float:
    engine.run(inputs)  # warm-up (first-call allocations, oneDNN primitive creation)
    batch = len(next(iter(inputs.values())))
    calls, start = 0, time.perf_counter()
    while True:
        engine.run(inputs)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * batch / elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per configuration and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--dim", type=int, default=26)
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args(argv)

    import torch

    from engines.export import export_student
    from engines.onnxruntime_engine import OnnxRuntimeEngine
    from engines.quantize import CropSet, check_int8, load_real_crops, quantize_int8, relative_error
    from engines.torch_engine import TorchEngine
    from vpd_stream.models.resnet import StudentConfig, build_student

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    model = build_student(StudentConfig(dim=args.dim), seed=0).eval()
    videos = _data_dir()
    if videos is not None:
        crops = load_real_crops(videos, 48, every=2)
        source = f"{len(crops)} real crops from {videos.name}/ (DIS flow)"
    else:
        rng = np.random.default_rng(0)
        crops = CropSet(rng.integers(0, 256, (32, 128, 128, 3), dtype=np.uint8),
                        rng.integers(0, 256, (32, 2, 128, 128), dtype=np.uint8), [])
        source = "random uint8 inputs (no real data found)"
    tmp = Path(tempfile.mkdtemp(prefix="vpd-bench-"))
    fp32_onnx = export_student(model, tmp / "fp32.onnx")
    fp16_onnx = export_student(model, tmp / "fp16.onnx", precision="fp16")
    idx = np.arange(len(crops))
    calib = CropSet(crops.rgb[idx % 3 == 0], crops.flow[idx % 3 == 0], [])
    int8_onnx = quantize_int8(fp32_onnx, tmp / "int8.onnx", calib)
    maxb = max(batches)
    ort = lambda path, p: lambda: OnnxRuntimeEngine(path, max_batch=maxb, threads=args.threads, precision=p)  # noqa: E731
    configs = [Config("torch", "fp32", b, lambda: TorchEngine(model, max_batch=maxb)) for b in batches]
    configs += [Config("torch", "bf16", b, lambda: TorchEngine(model, max_batch=maxb, precision="bf16"))
                for b in batches if b <= 8]  # emulated on CPUs without AVX512-BF16/AMX: too slow for 32
    configs += [Config("onnxruntime", "fp32", b, ort(fp32_onnx, "fp32")) for b in batches]
    configs += [Config("onnxruntime", "fp16", b, ort(fp16_onnx, "fp16")) for b in batches if b == 8]
    configs += [Config("onnxruntime", "int8", b, ort(int8_onnx, "int8")) for b in batches]
    engines: dict[tuple[str, str], object] = {}
    for c in configs:
        c.engine = engines.setdefault((c.backend, c.precision), c.make())

    # Accuracy on held-out crops (the two thirds calibration never saw).
    probe = {k: v[idx % 3 == 1] for k, v in crops.inputs().items()}
    gallery = {k: v[idx % 3 == 2] for k, v in crops.inputs().items()}
    reference = engines[("torch", "fp32")]
    ref_p, ref_g = reference.run(probe)["embedding"], reference.run(gallery)["embedding"]
    accuracy: dict[tuple[str, str], str] = {}
    for key, engine in engines.items():
        out_p, out_g = engine.run(probe)["embedding"], engine.run(gallery)["embedding"]
        chk = check_int8(ref_p, ref_g, out_p, out_g)
        accuracy[key] = (f"{relative_error(ref_p, out_p):.1e} | {chk.top1_agreement:.0%}")

    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for c in configs:
            c.best = max(c.best, _measure(c.engine, _inputs(crops, c.batch), args.seconds))
    load_after = os.getloadavg()

    gpu_rows = _gpu(model, fp32_onnx, fp16_onnx, crops, args.seconds)
    base = next(c.best for c in configs if (c.backend, c.precision, c.batch) == ("torch", "fp32", 1))
    lines = [f"Student (ResNet-34, 5×128×128 → {args.dim}) embeddings/s, {args.threads} threads, "
             f"{platform.processor() or platform.machine()}, {source}; best of {args.rounds} rounds × "
             f"{args.seconds:g} s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.", "",
             "| backend | precision | batch | embeddings/s | × torch fp32 b1 | ‖Δ‖/‖ref‖ | NN top-1 kept |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for c in configs:
        lines.append(f"| {c.backend} | {c.precision} | {c.batch} | {c.best:.1f} | {c.best / base:.2f} | "
                     f"{accuracy[(c.backend, c.precision)]} |")
    if gpu_rows:
        lines += ["", "| GPU backend | precision | batch | embeddings/s | × torch fp16 same batch |",
                  "|---|---|---:|---:|---:|", *gpu_rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


def _gpu(model, fp32_onnx: Path, fp16_onnx: Path, crops, seconds: float) -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    from engines.torch_engine import TorchEngine

    rows = []
    half = TorchEngine(model, max_batch=256, device="cuda", precision="fp16")
    try:
        from engines.tensorrt_engine import TensorRTEngine, import_tensorrt, trt_major

        onnx = fp16_onnx if trt_major(import_tensorrt()) >= 11 else fp32_onnx
        trt = TensorRTEngine(onnx, max_batch=256, precision="fp16")
    except Exception as exc:  # noqa: BLE001 - report why, keep the torch figures
        trt, why = None, str(exc)
    for batch in (64, 256):
        x = _inputs(crops, batch)
        t = _measure(half, x, seconds)
        rows.append(f"| torch | fp16 | {batch} | {t:.0f} | 1.00 |")
        if trt is not None:
            r = _measure(trt, x, seconds)
            rows.append(f"| tensorrt | fp16 | {batch} | {r:.0f} | {r / t:.2f} |")
    if trt is None:
        rows.append(f"| tensorrt | fp16 | – | not run: {why} | – |")
    return rows


if __name__ == "__main__":
    main()
