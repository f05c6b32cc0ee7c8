"""Student embeddings/s per backend, precision and batch, as ratios to PyTorch fp32 batch 1.

    python -m offline_train.benchmarks.student [--seconds 3] [--rounds 2] [--threads 2]
        [--checkpoint DISTILLED.safetensors ...]

Every configuration is measured in the same run, interleaved round-robin so a change in
machine load hits all of them alike; each figure is the best round. Inputs are real crops
(DIS flow) from ``$VPD_DATA_DIR/videos`` or ``../shared/data/videos`` when present, random
uint8 otherwise. The speed rows are the seeded random ResNet-34 (the issue's student; weights
do not change the speed). Accuracy is measured against PyTorch fp32 on held-out crops, for
the random ResNet-34 and for every ``--checkpoint`` (a distilled student, whose embeddings
make the ranking meaningful): ‖Δ‖/‖ref‖, and the nearest-neighbour check of
``engines.quantize.check_int8`` (probes and gallery from different videos; exact top-1 kept,
kept up to near-ties, worst pick). It also states the network's multiply-adds per embedding
and this CPU's measured fp32 / int8 GEMM rate, the ceiling any backend works under.
On a CUDA machine it also measures PyTorch fp16 and TensorRT at batch 64 and 256.

It prints the CPU model and the flags that decide the CPU dispatch (``engines.dispatch``),
measures bf16 also as the frozen TorchScript graph the dispatch runs ("bf16 frozen"), at
every batch where bf16 is native (AVX512-BF16 / AMX), and ends with the path the dispatch
rule picks from these measurements for each model: the fastest at the largest batch among
the candidates for this CPU that pass the accuracy gate.
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

from engines.dispatch import measure_throughput


@dataclass
class Config:
    model: str
    backend: str
    precision: str
    batch: int
    make: Callable[[], object]  # -> Engine (built lazily, once)
    engine: object | None = None
    best: float = 0.0  # embeddings/s


def _data_dir() -> Path | None:
    from vpd_stream.data_dir import data_root

    videos = data_root() / "videos"
    return videos if videos.is_dir() else None


def _inputs(crops, batch: int) -> dict[str, np.ndarray]:
    idx = np.arange(batch) % len(crops.rgb)
    return {"rgb": np.ascontiguousarray(crops.rgb[idx]), "flow": np.ascontiguousarray(crops.flow[idx])}


def student_macs(model) -> int:
    """Multiply-adds of one embedding (convolutions and the linear head)."""
    import torch

    total = 0

    def hook(module, _inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * k
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    size = model.config.input_size
    with torch.no_grad():
        model(torch.zeros(1, size, size, 3, dtype=torch.uint8), torch.zeros(1, 2, size, size, dtype=torch.uint8))
    for h in handles:
        h.remove()
    return total


def gemm_rates(threads: int, seconds: float) -> tuple[float, float]:
    """Measured multiply-adds/s of a large fp32 GEMM (PyTorch) and u8×s8 GEMM (ONNX Runtime)."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        calls += 1
    fp32 = calls * n ** 3 / (time.perf_counter() - start)
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.INT8, [n, n], rng.integers(-127, 128, n * n).astype(np.int8).tobytes(),
                           raw=True)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], [w])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                .SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = {"x": rng.integers(0, 256, (n, n), dtype=np.uint8)}
    sess.run(None, x)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sess.run(None, x)
        calls += 1
    return fp32, calls * n ** 3 / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per configuration and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--dim", type=int, default=26)
    ap.add_argument("--checkpoint", action="append", default=[],
                    help="a distilled student (.safetensors): accuracy rows, and speed of its architecture")
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args(argv)

    import torch

    from engines.export import export_student
    from engines.onnxruntime_engine import OnnxRuntimeEngine
    from engines.quantize import CropSet, load_real_crops, quantize_int8
    from engines.dispatch import read_cpuinfo
    from engines.torch_engine import TorchEngine
    from vpd_stream.models.checkpoint import load_student
    from vpd_stream.models.resnet import StudentConfig, build_student

    torch.set_num_threads(args.threads)
    cpu = read_cpuinfo()
    batches = [int(b) for b in args.batches.split(",")]
    maxb = max(batches)
    videos = _data_dir()
    if videos is not None:
        calib = load_real_crops(videos, 64, every=3, offset=0)
        held_out = load_real_crops(videos, 96, every=3, offset=1)  # frames calibration never saw
        source = f"real crops from {videos.name}/ (DIS flow): 64 calibration, {len(held_out)} held out"
    else:
        rng = np.random.default_rng(0)
        calib = CropSet(rng.integers(0, 256, (32, 128, 128, 3), dtype=np.uint8),
                        rng.integers(0, 256, (32, 2, 128, 128), dtype=np.uint8), [f"r{i % 2}#{i}" for i in range(32)])
        held_out = CropSet(calib.rgb, calib.flow, calib.sources)
        source = "random uint8 inputs (no real data found)"
    tmp = Path(tempfile.mkdtemp(prefix="vpd-bench-"))

    models = {"resnet34 (random)": build_student(StudentConfig(dim=args.dim), seed=0).eval()}
    for i, path in enumerate(args.checkpoint):
        module, meta = load_student(path)
        models[f"{meta.config.architecture} distilled ({Path(path).parent.name or i})"] = module

    configs: list[Config] = []
    accuracy_rows: list[str] = []
    verdicts: dict[str, dict] = {}
    macs_lines: list[str] = []
    speed_done: set[str] = set()
    for k, (name, model) in enumerate(models.items()):
        arch = model.config.architecture
        fp32_onnx = export_student(model, tmp / f"{k}-{arch}-fp32.onnx")
        int8_onnx = quantize_int8(fp32_onnx, tmp / f"{k}-{arch}-int8.onnx", calib)
        ort = lambda path, p: lambda: OnnxRuntimeEngine(path, max_batch=maxb, threads=args.threads, precision=p)  # noqa: E731
        engines = {("torch", "fp32"): TorchEngine(model, max_batch=maxb),
                   ("torch", "bf16"): TorchEngine(model, max_batch=maxb, precision="bf16"),
                   ("torch", "bf16 frozen"): TorchEngine(model, max_batch=maxb, precision="bf16", freeze=True),
                   ("onnxruntime", "fp32"): ort(fp32_onnx, "fp32")(),
                   ("onnxruntime", "int8"): ort(int8_onnx, "int8")()}
        if arch not in speed_done:  # one set of speed rows per architecture
            speed_done.add(arch)
            macs = student_macs(model)
            macs_lines.append(f"{arch}: {macs / 1e9:.2f} GMAC per embedding")
            fp16_onnx = export_student(model, tmp / f"{arch}-fp16.onnx", precision="fp16")
            configs += [Config(arch, "torch", "fp32", b, lambda e=engines[("torch", "fp32")]: e) for b in batches]
            # bf16 is emulated without AVX512-BF16/AMX: too slow for 32 there.
            bf16_batches = [b for b in batches if cpu.native_bf16 or b <= 8]
            if arch == "resnet34" or cpu.native_bf16:
                for prec in ("bf16", "bf16 frozen"):
                    configs += [Config(arch, "torch", prec, b, lambda e=engines[("torch", prec)]: e)
                                for b in bf16_batches]
            if arch == "resnet34":
                configs += [Config(arch, "onnxruntime", "fp16", 8, ort(fp16_onnx, "fp16"))]
            configs += [Config(arch, "onnxruntime", "fp32", b, lambda e=engines[("onnxruntime", "fp32")]: e)
                        for b in batches]
            configs += [Config(arch, "onnxruntime", "int8", b, lambda e=engines[("onnxruntime", "int8")]: e)
                        for b in batches]
        rows, verdicts[name] = _accuracy(name, engines, held_out)
        accuracy_rows += rows

    for c in configs:
        c.engine = c.make()
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for c in configs:
            c.best = max(c.best, measure_throughput(c.engine, _inputs(held_out, c.batch), args.seconds))
    load_after = os.getloadavg()
    fp32_rate, int8_rate = gemm_rates(args.threads, args.seconds)

    gpu_rows = _gpu(models["resnet34 (random)"], tmp, held_out, args.seconds)
    base = {c.model: c.best for c in configs if (c.backend, c.precision, c.batch) == ("torch", "fp32", 1)}
    lines = [f"Student embeddings/s, 5×128×128 → {args.dim}, {args.threads} threads, "
             f"{platform.processor() or platform.machine()}, {source}; best of {args.rounds} rounds × "
             f"{args.seconds:g} s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.", "",
             f"CPU: {cpu.model}; ISA {cpu.isa}; dispatch flags: {' '.join(cpu.relevant_flags()) or 'none'}; "
             f"os.cpu_count() {os.cpu_count()}.", "",
             "| model | backend | precision | batch | embeddings/s | × torch fp32 b1 (same model) | GMAC/s |",
             "|---|---|---|---:|---:|---:|---:|"]
    macs_of = {m.config.architecture: student_macs(m) for m in models.values()}
    for c in configs:
        lines.append(f"| {c.model} | {c.backend} | {c.precision} | {c.batch} | {c.best:.1f} | "
                     f"{c.best / base[c.model]:.2f} | {c.best * macs_of[c.model] / 1e9:.0f} |")
    lines += ["", f"Multiply-adds: {'; '.join(macs_lines)}. Measured GEMM rate on these {args.threads} threads "
              f"(1024³): fp32 (PyTorch) {fp32_rate / 1e9:.0f} GMAC/s, u8×s8 (ONNX Runtime MatMulInteger) "
              f"{int8_rate / 1e9:.0f} GMAC/s.", "",
              "Accuracy against PyTorch fp32 on the held-out crops (probes and gallery from different videos):", "",
              "| model | engine | ‖Δ‖/‖ref‖ | exact NN top-1 kept | NN kept up to ties | worst pick | check |",
              "|---|---|---:|---:|---:|---:|---|", *accuracy_rows]
    lines += ["", *_dispatch_lines(cpu, configs, models, verdicts, maxb, base)]
    if gpu_rows:
        lines += ["", "| GPU backend | precision | batch | embeddings/s | × torch fp16 same batch |",
                  "|---|---|---:|---:|---:|", *gpu_rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


def _dispatch_lines(cpu, configs, models, verdicts, batch, base) -> list[str]:
    """The path engines.dispatch's rule takes on this CPU, from this run's measurements."""
    from engines.dispatch import PathResult, candidate_paths, choose

    lines = []
    for name, model in models.items():
        arch = model.config.architecture
        rate = {(c.backend, c.precision): c.best for c in configs if c.model == arch and c.batch == batch}
        rate[("torch", "bf16")] = rate.get(("torch", "bf16 frozen"), 0.0)  # what the dispatch runs as bf16
        results = [PathResult(p.backend, p.precision, rate=rate.get((p.backend, p.precision), 0.0),
                              ok=verdicts[name].get((p.backend, p.precision), True))
                   for p in candidate_paths(cpu)]
        try:
            best = choose(results)
            lines.append(f"CPU dispatch on {cpu.isa}, {name}: {best.backend} {best.precision}, {best.rate:.1f}/s at "
                         f"batch {batch} = {best.rate / base[arch]:.2f}x torch fp32 batch 1 "
                         f"(candidates: {', '.join(f'{r.backend} {r.precision} {r.rate:.1f}/s' + ('' if r.ok else ' fails the gate') for r in results)}).")
        except Exception as exc:  # noqa: BLE001 - report, keep the tables
            lines.append(f"CPU dispatch on {cpu.isa}, {name}: none ({exc})")
    return lines


def _accuracy(name: str, engines: dict, held_out) -> tuple[list[str], dict]:
    from engines import run_chunked
    from engines.quantize import check_int8, split_by_video

    try:
        probe, gallery = split_by_video(held_out)
    except Exception:  # noqa: BLE001 - random inputs have no videos: halves instead
        half = len(held_out) // 2
        probe = type(held_out)(held_out.rgb[:half], held_out.flow[:half], held_out.sources[:half])
        gallery = type(held_out)(held_out.rgb[half:], held_out.flow[half:], held_out.sources[half:])
    reference = engines[("torch", "fp32")]
    ref_p = run_chunked(reference, probe.inputs())["embedding"]
    ref_g = run_chunked(reference, gallery.inputs())["embedding"]
    rows = []
    verdicts = {}
    for (backend, precision), engine in engines.items():
        if (backend, precision) == ("torch", "fp32"):
            continue
        limit = {"fp32": 1e-4, "bf16": 1e-2, "bf16 frozen": 5e-2, "int8": 5e-2}[precision]
        chk = check_int8(ref_p, ref_g, run_chunked(engine, probe.inputs())["embedding"],
                         run_chunked(engine, gallery.inputs())["embedding"], max_rel_error=limit)
        rows.append(f"| {name} | {backend} {precision} | {chk.rel_error:.1e} | {chk.top1_agreement:.0%} | "
                    f"{chk.ranking_kept:.0%} | {chk.worst_ratio:.3f} | {'holds' if chk.ok else 'fails'} |")
        verdicts[(backend, "bf16" if precision == "bf16 frozen" else precision)] = chk.ok
    return rows, verdicts


def _gpu(model, tmp: Path, crops, seconds: float) -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    from engines.export import export_student
    from engines.torch_engine import TorchEngine

    fp32_onnx = export_student(model, tmp / "gpu-fp32.onnx")
    fp16_onnx = export_student(model, tmp / "gpu-fp16.onnx", precision="fp16")
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
        t = measure_throughput(half, x, seconds)
        rows.append(f"| torch | fp16 | {batch} | {t:.0f} | 1.00 |")
        if trt is not None:
            r = measure_throughput(trt, x, seconds)
            rows.append(f"| tensorrt | fp16 | {batch} | {r:.0f} | {r / t:.2f} |")
    if trt is None:
        rows.append(f"| tensorrt | fp16 | – | not run: {why} | – |")
    return rows


if __name__ == "__main__":
    main()
