"""Engines: the common interface, ONNX export, buffers, batching, caching, the student plugin."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from engines import create_engine, run_chunked
from engines.cache import TensorRTKey, cache_dir, onnx_cache_path
from engines.commands import export as export_command
from vpd_stream.models.student_loading import onnx_metadata
from engines.onnxruntime_engine import OnnxRuntimeEngine
from engines.torch_engine import TorchEngine
from plugins.student import StudentPlugin
from vpd_stream.annotations import Crop, Embedding
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import Frame
from vpd_stream.models.resnet import StudentConfig, build_student
from vpd_stream.plugin import PluginContext

torch.set_num_threads(2)


def fresh_inputs(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng()  # drawn fresh every run on purpose
    return {"rgb": rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
            "flow": rng.integers(0, 256, (n, 2, 128, 128), dtype=np.uint8)}


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.fixture(scope="module")
def student() -> torch.nn.Module:
    return build_student(StudentConfig(dim=26), seed=0).eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def ort_plugin(cache) -> StudentPlugin:
    """The random_init student on the default engine; its ONNX export is made here, once."""
    plugin = StudentPlugin(StudentPlugin.Options(random_init=True, cache_dir=str(cache), max_batch=4))
    plugin.setup(PluginContext(engine="onnxruntime"))
    return plugin


@pytest.fixture(scope="module")
def onnx_file(ort_plugin) -> Path:
    return ort_plugin.engine.model_path


def test_export_has_dynamic_batch_uint8_inputs_and_opset_17(onnx_file: Path) -> None:
    import onnx

    model = onnx.load(str(onnx_file))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert types == {"rgb": onnx.TensorProto.UINT8, "flow": onnx.TensorProto.UINT8}
    sidecar = json.loads(onnx_metadata(onnx_file)["vpd_student"])
    assert sidecar["dim"] == 26 and sidecar["teacher"] == "random" and sidecar["architecture"] == "resnet34"


def test_onnxruntime_matches_torch_for_every_batch_size(student, onnx_file) -> None:
    ref = TorchEngine(student, max_batch=8)
    ort = OnnxRuntimeEngine(onnx_file, max_batch=8, threads=2)
    assert ort.input_names == ["rgb", "flow"] and ort.output_names == ["embedding"]
    for n in (1, 5):
        x = fresh_inputs(n)
        assert rel(ref.run(x)["embedding"], ort.run(x)["embedding"]) <= 1e-4


def test_poisoned_output_buffer_is_fully_overwritten(student, onnx_file) -> None:
    ort = OnnxRuntimeEngine(onnx_file, max_batch=6, threads=2)
    ref = TorchEngine(student, max_batch=6)
    ort.run(fresh_inputs(6))  # fill the buffers with a larger batch first
    for buf in ort.output_buffers.values():
        buf.fill(np.nan)
    x = fresh_inputs(4)
    out = ort.run(x)["embedding"]
    assert out.shape == (4, 26) and np.isfinite(out).all()
    assert np.isfinite(ort.output_buffers["embedding"][:4]).all()  # rows 4.. may stay poisoned
    assert rel(ref.run(x)["embedding"], out) <= 1e-4
    out[:] = 0  # results are copies: the next run cannot clobber them, nor they the buffer
    again = ort.run(x)["embedding"]
    assert rel(ref.run(x)["embedding"], again) <= 1e-4


def test_max_batch_is_enforced_and_run_chunked_splits(student, onnx_file) -> None:
    ort = OnnxRuntimeEngine(onnx_file, max_batch=4, threads=2)
    x = fresh_inputs(7)
    with pytest.raises(ValueError, match="max_batch"):
        ort.run(x)
    whole = TorchEngine(student, max_batch=8).run(x)["embedding"]
    assert rel(whole, run_chunked(ort, x)["embedding"]) <= 1e-4


def _batch_in_the_middle_onnx(path: Path) -> Path:
    """x (batch, 3, 2) → t = x transposed to (3, batch, 2), y = 2x (batch, 3, 2)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
         helper.make_node("Add", ["x", "x"], ["y"])], "middle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 2])],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [3, "batch", 2]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnxruntime_output_batch_axis_comes_from_the_graph(tmp_path) -> None:
    path = _batch_in_the_middle_onnx(tmp_path / "middle.onnx")
    engine = OnnxRuntimeEngine(path, max_batch=5, threads=1)
    assert engine.output_batch_axes == {"t": 1, "y": 0}
    assert engine.output_buffers["t"].shape == (3, 5, 2) and engine._bound
    rng = np.random.default_rng()
    engine.run({"x": rng.normal(size=(5, 3, 2)).astype(np.float32)})  # fill, then poison
    for buf in engine.output_buffers.values():
        buf.fill(np.nan)
    for n in (1, 2, 5):
        x = rng.normal(size=(n, 3, 2)).astype(np.float32)
        out = engine.run({"x": x})
        assert out["t"].shape == (3, n, 2) and np.array_equal(out["t"], x.transpose(1, 0, 2))
        assert np.array_equal(out["y"], 2 * x)
    # run_chunked joins each output along its own batch axis
    small = OnnxRuntimeEngine(path, max_batch=2, threads=1)
    x = rng.normal(size=(7, 3, 2)).astype(np.float32)
    out = run_chunked(small, {"x": x})
    assert np.array_equal(out["t"], x.transpose(1, 0, 2)) and np.array_equal(out["y"], 2 * x)


def test_onnxruntime_output_without_a_batch_axis_is_not_preallocated(tmp_path) -> None:
    """An output whose only dynamic dimension is not the batch (a count) runs unbound."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Identity", ["x"], ["same"])], "nz",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("nz", TensorProto.INT64, [2, "count"]),
         helper.make_tensor_value_info("same", TensorProto.FLOAT, ["batch", 4])])
    path = tmp_path / "nz.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    engine = OnnxRuntimeEngine(path, max_batch=3, threads=1)
    assert engine.output_batch_axes == {"nz": None, "same": 0} and not engine._bound
    x = np.array([[0, 1, 0, 2], [3, 0, 0, 0]], np.float32)
    out = engine.run({"x": x})
    assert np.array_equal(out["nz"], np.stack(np.nonzero(x))) and np.array_equal(out["same"], x)


def test_torch_engine_generic_module_names_from_signature() -> None:
    class Add(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    engine = TorchEngine(Add(), max_batch=4)
    assert engine.input_names == ["a", "b"] and engine.output_names == ["output"]
    a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2, np.float32)
    assert np.array_equal(engine.run({"a": a, "b": b})["output"], a + b)
    with pytest.raises(ValueError, match="missing"):
        engine.run({"a": a})


def test_factory_errors_are_clear(onnx_file) -> None:
    with pytest.raises(ConfigError, match="unknown engine"):
        create_engine("openvino", onnx_path=onnx_file)
    with pytest.raises(ModelError, match="torch engine needs"):
        create_engine("torch", onnx_path=onnx_file)
    with pytest.raises(ModelError, match="vpd-stream export"):
        create_engine("onnxruntime", onnx_path=onnx_file.with_name("missing.onnx"))
    with pytest.raises(ModelError, match="fp16"):
        create_engine("torch", module=torch.nn.Identity(), precision="fp16")  # CPU has no fp16 path


def test_cache_keys_change_with_every_field(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VPD_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir().is_dir()
    base = TensorRTKey("10.3.0", "NVIDIA H100", "9.0", "ab" * 32, "fp16", (1, 64, 64))
    variants = [TensorRTKey("10.4.0", *list(base.__dict__.values())[1:]),
                TensorRTKey("10.3.0", "NVIDIA A100", "9.0", "ab" * 32, "fp16", (1, 64, 64)),
                TensorRTKey("10.3.0", "NVIDIA H100", "8.0", "ab" * 32, "fp16", (1, 64, 64)),
                TensorRTKey("10.3.0", "NVIDIA H100", "9.0", "cd" * 32, "fp16", (1, 64, 64)),
                TensorRTKey("10.3.0", "NVIDIA H100", "9.0", "ab" * 32, "fp32", (1, 64, 64)),
                TensorRTKey("10.3.0", "NVIDIA H100", "9.0", "ab" * 32, "fp16", (1, 32, 64))]
    paths = {base.path(), *(v.path() for v in variants)}
    assert len(paths) == 7 and all(p.parent == tmp_path / "c" / "tensorrt" for p in paths)
    assert onnx_cache_path("ff" * 32, "fp32", 17) != onnx_cache_path("ff" * 32, "fp16", 17)
    assert onnx_cache_path("ff" * 32, "fp32", 17) != onnx_cache_path("ee" * 32, "fp32", 17)


# -- the student plugin --------------------------------------------------------------


def _frames(streams: int, tracks: int, frames: int) -> list[Frame]:
    rng = np.random.default_rng()
    out = []
    for s in range(streams):
        for i in range(frames):
            f = Frame(stream_id=f"s{s}", index=i, pts=i / 25, rgb=np.zeros((4, 4, 3), np.uint8))
            crops, flows = {}, {}
            for t in range(tracks):
                crops[t] = Crop(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
                                rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), np.zeros(4, np.float32))
                flows[t] = rng.integers(0, 256, (2, 128, 128), dtype=np.uint8)
            f.annotations.update(crop=crops, flow=flows)
            out.append(f)
    return out


def test_student_plugin_embeds_every_track_across_streams(ort_plugin, student) -> None:
    plugin = ort_plugin  # max_batch 4: 2 streams × 2 tracks × 1 frame, with mirrors = 8 rows, 2 calls
    assert plugin.engine.backend == "onnxruntime" and plugin.batch_size == 2
    frames = _frames(2, 2, 1)
    frames[0].annotations["flow"].pop(1)  # a track without flow yet gets no embedding
    plugin.process(frames)
    from vpd_stream.models.student_loading import flip_inputs

    keys = [(f, t) for f in frames for t in f.annotations["flow"]]
    rgb = np.stack([f.annotations["crop"][t].rgb for f, t in keys])
    flow = np.stack([f.annotations["flow"][t] for f, t in keys])
    ref = TorchEngine(student, max_batch=16)
    plain = ref.run({"rgb": rgb, "flow": flow})["embedding"]
    rgb_f, flow_f = flip_inputs(rgb, flow)
    mirrored = ref.run({"rgb": rgb_f, "flow": flow_f})["embedding"]
    for f in frames:
        assert set(f.annotations["embedding"]) == set(f.annotations["flow"])
    for i, (f, t) in enumerate(keys):
        e = f.annotations["embedding"][t]
        assert isinstance(e, Embedding) and e.vector.shape == (26,) and e.flipped.shape == (26,)
        assert rel(plain[i], e.vector) <= 1e-4 and rel(mirrored[i], e.flipped) <= 1e-4
    record = plugin.describe(frames[1])
    assert set(record["tracks"]) == {0, 1} and len(record["tracks"][0]["embedding_flipped"]) == 26
    json.dumps(record)


def test_student_plugin_torch_engine_and_cached_export(cache, ort_plugin) -> None:
    frames = _frames(1, 1, 1)
    torch_plugin = StudentPlugin(StudentPlugin.Options(random_init=True, engine="torch", cache_dir=str(cache)))
    torch_plugin.setup(PluginContext(engine="onnxruntime"))
    assert torch_plugin.engine.backend == "torch"
    torch_plugin.process(frames)
    a = frames[0].annotations["embedding"][0].vector
    ort_plugin.process(frames)
    assert rel(a, frames[0].annotations["embedding"][0].vector) <= 1e-4
    exported = list((cache / "onnx").glob("*.onnx"))
    assert exported == [ort_plugin.engine.model_path]
    mtime = exported[0].stat().st_mtime_ns
    again = StudentPlugin(StudentPlugin.Options(random_init=True, cache_dir=str(cache)))
    again.setup(PluginContext(engine="onnxruntime"))  # reuses the cached export
    assert again.engine.model_path == exported[0] and exported[0].stat().st_mtime_ns == mtime


def test_student_plugin_without_model_says_how_to_get_one(tmp_path) -> None:
    plugin = StudentPlugin(StudentPlugin.Options(cache_dir=str(tmp_path)))
    with pytest.raises(ModelError) as exc:
        plugin.setup(PluginContext())
    assert "vpd-stream distill" in str(exc.value) and "random_init" in str(exc.value)
    with pytest.raises(ConfigError, match="engine"):
        StudentPlugin(StudentPlugin.Options(engine="tflite"))
    with pytest.raises(ModelError, match="d=26"):
        StudentPlugin(StudentPlugin.Options(random_init=True, dim=64)).setup(PluginContext())


def test_export_command_writes_an_onnx_the_plugin_runs(tmp_path, ort_plugin) -> None:
    out = tmp_path / "student.onnx"
    result = CliRunner().invoke(export_command, ["--random-init", "--seed", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    plugin = StudentPlugin(StudentPlugin.Options(model=str(out), dim=26))
    plugin.setup(PluginContext(engine="onnxruntime"))
    frames = _frames(1, 1, 1)
    plugin.process(frames)
    v = frames[0].annotations["embedding"][0].vector.copy()
    ort_plugin.process(frames)
    assert rel(v, frames[0].annotations["embedding"][0].vector) <= 1e-6
    with pytest.raises(ModelError, match="torch engine needs"):
        StudentPlugin(StudentPlugin.Options(model=str(out), engine="torch")).setup(PluginContext())
    missing = CliRunner().invoke(export_command, ["-o", str(out)])
    assert missing.exit_code != 0
