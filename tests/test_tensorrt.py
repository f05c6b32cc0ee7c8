"""TensorRT: engine build + cache, dynamic batch, parity with PyTorch fp32, poisoned buffers.

Skips (with the reason) where TensorRT cannot be imported or no CUDA GPU is visible.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT cannot be imported here (install vpd-stream[tensorrt] on a GPU machine)")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("TensorRT is installed but no CUDA GPU is visible", allow_module_level=True)

from engines.export import export_student  # noqa: E402
from engines.quantize import relative_error  # noqa: E402
from engines.tensorrt_engine import TensorRTEngine, build_engine, trt_major  # noqa: E402
from engines.torch_engine import TorchEngine  # noqa: E402
from vpd_stream.models.resnet import StudentConfig, build_student  # noqa: E402

pytestmark = pytest.mark.gpu


def fresh_inputs(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng()
    return {"rgb": rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
            "flow": rng.integers(0, 256, (n, 2, 128, 128), dtype=np.uint8)}


@pytest.fixture(scope="module")
def student():
    return build_student(StudentConfig(dim=26), seed=0).eval()


@pytest.fixture(scope="module")
def onnx_files(student, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trt")
    files = {"fp32": export_student(student, root / "fp32.onnx")}
    files["fp16"] = export_student(student, root / "fp16.onnx", precision="fp16") if trt_major(trt) >= 11 else files["fp32"]
    return files


@pytest.mark.parametrize("precision,limit", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_tensorrt_parity(student, onnx_files, tmp_path, precision, limit) -> None:
    ref = TorchEngine(student, max_batch=16, device="cpu")
    engine = TensorRTEngine(onnx_files[precision], max_batch=16, precision=precision, cache_root=tmp_path)
    for n in (1, 7, 16):
        x = fresh_inputs(n)
        assert relative_error(ref.run(x)["embedding"], engine.run(x)["embedding"]) <= limit


def test_tensorrt_poisoned_output_buffer(student, onnx_files, tmp_path) -> None:
    engine = TensorRTEngine(onnx_files["fp16"], max_batch=8, precision="fp16", cache_root=tmp_path)
    engine.run(fresh_inputs(8))
    for buf in engine.output_buffers.values():
        buf.fill_(float("nan"))
    x = fresh_inputs(5)
    out = engine.run(x)["embedding"]
    assert np.isfinite(out).all()
    assert relative_error(TorchEngine(student, max_batch=8).run(x)["embedding"], out) <= 1e-2


def test_engine_is_cached_by_key(onnx_files, tmp_path) -> None:
    path, key = build_engine(onnx_files["fp16"], precision="fp16", max_batch=8, cache_root=tmp_path)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert key.trt_version == trt.__version__ and key.profile == (1, 8, 8)
    mtime = path.stat().st_mtime_ns
    again, _ = build_engine(onnx_files["fp16"], precision="fp16", max_batch=8, cache_root=tmp_path)
    assert again == path and path.stat().st_mtime_ns == mtime
    other, _ = build_engine(onnx_files["fp16"], precision="fp16", max_batch=4, cache_root=tmp_path)
    assert other != path
