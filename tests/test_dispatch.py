"""CPU dispatch (issue 16): the paths a CPU gets, the choice, the cache, the plugin's report.

No test depends on which floating-point path this machine runs: choices are checked
against what was measured, outputs against torch fp32 with a tolerance.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.dispatch import (CpuInfo, CpuPath, PathResult, candidate_paths, choose, dispatch,
                              engine_for, parse_cpuinfo, read_cpuinfo)
from engines.quantize import INT8_MAX_REL_ERROR, relative_error
from engines.torch_engine import TorchEngine
from plugins.student import StudentPlugin
from vpd_stream.errors import ModelError
from vpd_stream.metrics import Metrics
from vpd_stream.models.checkpoint import save_student
from vpd_stream.models.resnet import StudentConfig, build_student
from vpd_stream.models.student_loading import resolve_student
from vpd_stream.plugin import PluginContext

torch.set_num_threads(2)

# Abridged /proc/cpuinfo texts of three machine kinds (the flags that matter, and others).
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx_vnni
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse
"""
ZEN4 = """processor\t: 0
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16 avx512_vnni gfni
"""
ROME = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni
"""
ALL4 = [CpuPath("onnxruntime", "int8"), CpuPath("torch", "bf16"), CpuPath("onnxruntime", "fp32"),
        CpuPath("torch", "fp32")]
FP32 = [CpuPath("onnxruntime", "fp32"), CpuPath("torch", "fp32")]


def test_parse_cpuinfo_reads_the_first_processor():
    cpu = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"amx_tile", "amx_int8", "avx512_vnni"} <= cpu.flags
    assert cpu.isa == "amx" and cpu.vnni and cpu.native_bf16
    assert parse_cpuinfo(ZEN4).isa == "avx512_vnni"
    assert parse_cpuinfo(ROME).isa == "avx2"
    assert parse_cpuinfo("model name : x\nflags : avx2 avx_vnni\n").isa == "avx_vnni"
    assert parse_cpuinfo("garbage without fields").flags == frozenset()


@pytest.mark.parametrize("text, expected", [(SAPPHIRE_RAPIDS, ALL4), (ZEN4, ALL4), (ROME, FP32)])
def test_candidates_by_cpu(text, expected):
    assert candidate_paths(parse_cpuinfo(text)) == expected


def test_candidates_need_crops_module_and_backend():
    amx = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert candidate_paths(amx, have_crops=False) == FP32  # no gate can be held without real crops
    assert candidate_paths(amx, have_module=False) == [CpuPath("onnxruntime", "fp32")]
    assert candidate_paths(amx, backends=("torch",)) == [CpuPath("torch", "bf16"), CpuPath("torch", "fp32")]
    # bf16 without native support (Rome) is emulated: never a candidate; int8 without VNNI neither.
    assert all(p.precision == "fp32" for p in candidate_paths(parse_cpuinfo(ROME), backends=("torch",)))


def test_real_cpuinfo():
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    text = path.read_text()
    cpu = read_cpuinfo()
    first_flags = re.search(r"^flags\s*:(.*)$", text, re.M)
    assert cpu.flags == frozenset(first_flags.group(1).split())
    paths = candidate_paths(cpu)
    assert paths[-1] == CpuPath("torch", "fp32")
    has_vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu.flags)
    assert (CpuPath("onnxruntime", "int8") in paths) == has_vnni


def test_choose_is_the_fastest_that_passed():
    results = [PathResult("onnxruntime", "int8", rate=300.0, ok=False),
               PathResult("torch", "bf16", rate=120.0, ok=True),
               PathResult("onnxruntime", "fp32", rate=150.0, ok=True),
               PathResult("torch", "fp32", rate=100.0, ok=True)]
    assert (choose(results).backend, choose(results).precision) == ("onnxruntime", "fp32")
    with pytest.raises(ModelError):
        choose([PathResult("onnxruntime", "int8", rate=300.0, ok=False)])


@pytest.fixture(scope="module")
def small_student(tmp_path_factory):
    """A trained-looking (teacher pose2d) ResNet-18 at 64 px: what dispatch sees of a real student."""
    model = build_student(StudentConfig(architecture="resnet18", input_size=64), seed=3)
    path = save_student(model, tmp_path_factory.mktemp("ckpt") / "student.safetensors", teacher="pose2d")
    return resolve_student(str(path))


def test_dispatch_measures_once_then_reads_the_cache(small_student, tmp_path):
    cpu = parse_cpuinfo(ROME)  # fp32 paths only: no real crops needed
    first = dispatch(small_student, batch=4, cpu=cpu, cache_root=tmp_path, seconds=0.05, rounds=1)
    assert not first.from_cache and Path(first.cache_path).is_file()
    assert [(r.backend, r.precision) for r in first.results] == [("onnxruntime", "fp32"), ("torch", "fp32")]
    assert all(r.ok and r.rate > 0 and r.rel_error <= 1e-4 for r in first.results)
    best = max(first.results, key=lambda r: r.rate)
    assert (first.backend, first.precision) == (best.backend, best.precision)
    again = dispatch(small_student, batch=4, cpu=cpu, cache_root=tmp_path, seconds=0.05, rounds=1)
    assert again.from_cache and again.to_json() == first.to_json()
    assert "cached" in again.summary() and "avx2" in again.summary()
    # Another batch, another CPU: other keys, other files.
    other = dispatch(small_student, batch=2, cpu=cpu, cache_root=tmp_path, seconds=0.05, rounds=1)
    assert not other.from_cache and other.cache_path != first.cache_path
    # What engine_for builds from the choice agrees with torch fp32.
    engine = engine_for(small_student, again, max_batch=4, cache_root=tmp_path)
    rng = np.random.default_rng()
    x = {"rgb": rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8),
         "flow": rng.integers(0, 256, (3, 2, 64, 64), dtype=np.uint8)}
    ref = TorchEngine(small_student.module, max_batch=4).run(x)["embedding"]
    assert relative_error(ref, engine.run(x)["embedding"]) < 1e-4


def test_unreadable_cache_is_measured_again(small_student, tmp_path):
    cpu = parse_cpuinfo(ROME)
    first = dispatch(small_student, batch=2, cpu=cpu, backends=("torch",), cache_root=tmp_path,
                     seconds=0.02, rounds=1)
    Path(first.cache_path).write_text("{not json", encoding="utf-8")
    again = dispatch(small_student, batch=2, cpu=cpu, backends=("torch",), cache_root=tmp_path,
                     seconds=0.02, rounds=1)
    assert not again.from_cache and json.loads(Path(again.cache_path).read_text())["backend"] == "torch"


def test_bf16_frozen_engine_matches_fp32(small_student):
    """The dispatch's bf16 path (frozen TorchScript traced under autocast), batch sizes vary."""
    ref = TorchEngine(small_student.module, max_batch=8)
    bf16 = TorchEngine(small_student.module, max_batch=8, precision="bf16", freeze=True)
    rng = np.random.default_rng()
    for n in (5, 2, 8):  # traced at the first size, run at others
        x = {"rgb": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
             "flow": rng.integers(0, 256, (n, 2, 64, 64), dtype=np.uint8)}
        out = bf16.run(x)["embedding"]
        assert out.shape == (n, 26) and out.dtype == np.float32
        assert relative_error(ref.run(x)["embedding"], out) < 5e-2


def test_plugin_auto_reports_its_path(tmp_path):
    empty = tmp_path / "no-videos"
    empty.mkdir()
    metrics = Metrics()
    # A real checkpoint on disk, no calibration videos: fp32 paths only.
    model = build_student(StudentConfig(architecture="resnet18", input_size=64), seed=4)
    path = save_student(model, tmp_path / "s.safetensors", teacher="pose2d")
    plugin = StudentPlugin(StudentPlugin.Options(model=str(path), max_batch=4, cache_dir=str(tmp_path / "cache"),
                                                 calibration_videos=str(empty)))
    plugin.setup(PluginContext(engine="onnxruntime", metrics=metrics))
    try:
        assert len(plugin.dispatches) == 1
        choice = plugin.dispatches[0]
        assert choice.precision == "fp32"  # the low-precision paths need real crops
        assert plugin.summary_lines() and plugin.summary_lines()[0].startswith(f"student: {choice.backend} fp32")
        value = metrics.registry.get_sample_value(
            "vpd_engine_path", {"model": "student", "backend": choice.backend, "precision": "fp32",
                                "isa": read_cpuinfo().isa})
        assert value == 1.0
    finally:
        plugin.close()


@pytest.mark.parametrize("options", [{"precision": "fp32"}, {"engine": "torch"}])
def test_plugin_named_precision_or_engine_skips_dispatch(tmp_path, options):
    model = build_student(StudentConfig(architecture="resnet18", input_size=64), seed=4)
    path = save_student(model, tmp_path / "s.safetensors", teacher="pose2d")
    plugin = StudentPlugin(StudentPlugin.Options(model=str(path), max_batch=4, cache_dir=str(tmp_path), **options))
    plugin.setup(PluginContext(engine="onnxruntime"))
    try:
        assert plugin.dispatches == [] and plugin.engine.precision == "fp32"
        assert plugin.engine.backend == options.get("engine", "onnxruntime")
        assert "set by the options" in plugin.summary_lines()[0]
        assert not (tmp_path / "dispatch").exists()
    finally:
        plugin.close()


@pytest.mark.slow
def test_dispatch_on_real_crops_holds_the_gate(videos_dir, tmp_path):
    """Every path on real crops, this CPU: what is chosen passed the gate, and the gate's
    verdicts are the measured errors against their limits."""
    model = build_student(StudentConfig(architecture="resnet18"), seed=5)
    student = resolve_student(str(save_student(model, tmp_path / "s.safetensors", teacher="pose2d")))
    vnni_cpu = CpuInfo("fake VNNI + BF16", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
    d = dispatch(student, batch=8, cpu=vnni_cpu, videos=videos_dir, cache_root=tmp_path, seconds=0.2, rounds=1)
    assert [(r.backend, r.precision) for r in d.results] == [(p.backend, p.precision) for p in ALL4]
    chosen = next(r for r in d.results if (r.backend, r.precision) == (d.backend, d.precision))
    assert chosen.ok and chosen.rate == max(r.rate for r in d.results if r.ok)
    for r in d.results:
        if r.precision == "fp32":
            assert r.ok == (r.rel_error <= 1e-4)
        elif r.ok:
            assert r.rel_error <= INT8_MAX_REL_ERROR and r.ranking_kept == 1.0
    if d.precision == "int8":
        assert Path(d.onnx_path).is_file()
