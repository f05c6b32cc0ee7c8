"""student: the VPD embedding of every tracked athlete, and of its horizontal mirror.

Consumes the 128×128 ``crop`` and the quantized ``flow`` of each track, runs the student
network through the chosen engine, and provides ``embedding`` (Embedding(vector, flipped)).
Tracks from every frame of the batch (and every stream in it) go through the engine
together, with the flipped views in the same call, in chunks of the engine's max batch.

The model is a checkpoint from ``vpd-stream distill`` (``.safetensors`` + JSON sidecar) or
an ONNX file from ``vpd-stream export``. ``random_init = true`` runs a seeded, untrained
student instead: for testing the pipeline only, its embeddings mean nothing.

Concat-VPD: ``concat = "vi-vpd.safetensors"`` names a second student (typically VI-VPD,
distilled with ``--teacher vipe``, next to a 2D-VPD ``model``). Both run on the same crops
through the same engine kind, and the embedding is the two stacked, ``[model, concat]``
(d = d₁ + d₂); the flipped embedding is the two flipped embeddings stacked likewise.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines import BACKENDS, create_engine, run_chunked
from engines.base import Engine
from vpd_stream.annotations import Embedding
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import Frame
from vpd_stream.plugin import Plugin, PluginContext

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
NO_MODEL = ("the student plugin needs a model: set [plugins.student] model = \"student.safetensors\" "
            "(train one with `vpd-stream distill`), or random_init = true to test the pipeline "
            "with an untrained student")


@dataclass
class StudentModel:
    """A resolved student: the torch module (when the checkpoint has one), its ONNX file
    (when it came as one), the sidecar's JSON and an identity hash for the engine cache."""

    module: Any | None
    onnx_path: Path | None
    sidecar: dict[str, Any]
    weights_sha256: str
    dim: int
    input_size: int
    onnx_precision: str | None = None  # what an exported ONNX file holds (fp32, fp16, int8)


def resolve_student(model: str | None, *, random_init: bool = False, seed: int = 0, random_dim: int = 26,
                    dim: int | None = None, teacher: str | None = None,
                    model_dir: str | None = None) -> StudentModel:
    """Find and validate the student the options describe (see ``NO_MODEL`` for the rules)."""
    from vpd_stream.models.checkpoint import StudentMeta, check_expectation, load_student
    from vpd_stream.models.resnet import StudentConfig, build_student

    if model is None and not random_init and model_dir:
        default = Path(model_dir) / "student.safetensors"
        model = str(default) if default.is_file() else None
    if model is None:
        if not random_init:
            raise ModelError(NO_MODEL)
        module = build_student(StudentConfig(dim=random_dim), seed=seed).eval()
        meta = StudentMeta(module.config, teacher="random", extra={"seed": seed})
        check_expectation(meta, f"random_init(seed={seed})", dim=dim, teacher=teacher)
        digest = hashlib.sha256(json.dumps(meta.to_json(), sort_keys=True).encode())
        for value in module.state_dict().values():
            digest.update(value.numpy().tobytes())
        return StudentModel(module, None, meta.to_json(), digest.hexdigest(), module.config.dim,
                            module.config.input_size)
    path = Path(model).expanduser()
    if path.suffix == ".onnx":
        return _resolve_onnx(path, dim=dim, teacher=teacher)
    module, meta = load_student(path, dim=dim, teacher=teacher)
    return StudentModel(module, None, meta.to_json(), meta.weights_sha256, meta.config.dim,
                        meta.config.input_size)


def _resolve_onnx(path: Path, *, dim: int | None, teacher: str | None) -> StudentModel:
    from engines.export import onnx_metadata
    from vpd_stream.models.weights_file import file_sha256

    if not path.is_file():
        raise ModelError(f"student model {path} does not exist; create it with `vpd-stream export`")
    try:
        meta = onnx_metadata(path)
        sidecar = json.loads(meta.get("vpd_student", "null"))
    except Exception:  # not ONNX at all, or metadata that is not JSON
        meta, sidecar = {}, None
    if not isinstance(sidecar, dict) or "dim" not in sidecar:
        raise ModelError(f"{path} is not a student exported by `vpd-stream export` (no vpd_student metadata)")
    if dim is not None and sidecar["dim"] != dim:
        raise ModelError(f"student model {path} outputs d={sidecar['dim']}, but d={dim} is expected")
    if teacher is not None and sidecar.get("teacher") != teacher:
        raise ModelError(f"student model {path} was distilled from a '{sidecar.get('teacher')}' teacher, "
                         f"but '{teacher}' is expected")
    return StudentModel(None, path, sidecar, file_sha256(path), int(sidecar["dim"]),
                        int(sidecar.get("input_size", 128)), meta.get("vpd_precision", "fp32"))


def student_engine(student: StudentModel, backend: str, *, precision: str, max_batch: int,
                   device: str = "cpu", threads: int = 0, cache_root: str | None = None) -> Engine:
    """An engine for ``student``; ONNX exports are made once and cached."""
    if backend == "torch":
        if student.module is None:
            raise ModelError(f"the torch engine needs the .safetensors checkpoint, not {student.onnx_path}")
        if precision == "int8":
            raise ModelError("int8 runs on the onnxruntime engine; use --engine onnxruntime")
        return create_engine("torch", module=student.module, max_batch=max_batch, device=device,
                             precision=precision)
    onnx_path = student.onnx_path
    if backend == "onnxruntime":
        if onnx_path is not None:
            precision = student.onnx_precision or precision  # the file decides, not the option
        else:
            if precision == "int8":
                raise ModelError("int8 needs a calibrated model: run `vpd-stream export CHECKPOINT --precision "
                                 "int8 -o student-int8.onnx` and set model to that file")
            if precision != "fp32":
                raise ModelError(f"the onnxruntime engine runs fp32 or int8 on this build, not '{precision}'")
            onnx_path = cached_export(student, "fp32", cache_root)
        return create_engine("onnxruntime", onnx_path=onnx_path, max_batch=max_batch, device=device,
                             precision=precision, threads=threads)
    if onnx_path is None:
        from engines.tensorrt_engine import import_tensorrt, trt_major

        # TensorRT 11 is strongly typed: fp16 must already be in the ONNX file.
        export_precision = "fp16" if precision == "fp16" and trt_major(import_tensorrt()) >= 11 else "fp32"
        onnx_path = cached_export(student, export_precision, cache_root)
    return create_engine("tensorrt", onnx_path=onnx_path, max_batch=max_batch, device=device,
                         precision=precision, cache_root=cache_root)


def cached_export(student: StudentModel, precision: str, cache_root: str | None = None) -> Path:
    from engines.cache import onnx_cache_path
    from engines.export import DEFAULT_OPSET, export_student

    path = onnx_cache_path(student.weights_sha256, precision, DEFAULT_OPSET, cache_root)
    if not path.is_file():
        log.info("exporting the student to %s", path)
        export_student(student.module, path, precision=precision, sidecar=student.sidecar)
    return path


def check_concat(students: list[StudentModel], names: list[str]) -> None:
    """Students whose embeddings are stacked must read the same crops."""
    sizes = {s.input_size for s in students}
    if len(sizes) > 1:
        detail = ", ".join(f"{n}: {s.input_size}px" for n, s in zip(names, students))
        raise ModelError(f"students to concatenate must take the same crop size ({detail})")


def concat_sidecar(students: list[StudentModel]) -> dict[str, Any]:
    """What a stacked embedding is made of: per part its teacher, d and weights hash."""
    return {"parts": [{"teacher": s.sidecar.get("teacher"), "dim": s.dim, "sha256": s.weights_sha256}
                      for s in students]}


def embed_with_mirror(engines: list[Engine], rgb: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of (N, H, W, 3) crops + (N, 2, H, W) flow and of their mirrors, (N, d) each.

    Crops and mirrors go through each engine in one call (chunked at its max batch); with
    several engines (Concat-VPD) the outputs are stacked in order along the feature axis.
    """
    rgb_f, flow_f = flip_inputs(rgb, flow)
    inputs = {"rgb": np.concatenate([rgb, rgb_f]), "flow": np.concatenate([flow, flow_f])}
    outs = [np.asarray(run_chunked(e, inputs)["embedding"], dtype=np.float32) for e in engines]
    out = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)
    n = len(rgb)
    return out[:n], out[n:]


def flip_inputs(rgb: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror (N, H, W, 3) crops and (N, 2, H, W) uint8 flow left-right; flow x is negated.

    In the student's input space flow is q/255 − 0.5, so 255 − q is its exact negation.
    """
    rgb_f = rgb[:, :, ::-1, :]
    flow_f = flow[:, :, :, ::-1].copy()
    flow_f[:, 0] = 255 - flow_f[:, 0]
    return np.ascontiguousarray(rgb_f), flow_f


class StudentPlugin(Plugin):
    name = "student"
    requires = ("crop", "flow")
    provides = ("embedding",)
    description = "VPD student embedding (and its mirrored view) per track, via torch/onnxruntime/tensorrt"
    batch_timeout = 0.01  # wait at most 10 ms to fill a batch: bounded live latency

    @dataclass
    class Options:
        model: str | None = None  # .safetensors (+ .json sidecar) from `vpd-stream distill`, or an exported .onnx
        engine: str | None = None  # torch | onnxruntime | tensorrt; default: the run's --engine
        precision: str | None = None  # fp32 | bf16 | fp16 | int8; default fp16 on TensorRT, else fp32
        max_batch: int = 32  # the most crops per engine call (a track's flipped view counts too)
        dim: int | None = None  # expected embedding size; a checkpoint with another d is refused
        teacher: str | None = None  # expected teacher kind (pose2d | vipe) of `model`; None accepts any
        concat: str | None = None  # a second student whose embedding is appended (Concat-VPD); `dim` is then the total
        random_init: bool = False  # seeded untrained student: for pipeline testing only
        seed: int = 0  # seed of the random_init student
        random_dim: int = 26  # d of the random_init student
        threads: int = 0  # onnxruntime intra-op threads (0 = one per core)
        cache_dir: str | None = None  # exported ONNX / TensorRT engines; default $VPD_CACHE_DIR or ~/.cache/vpd-stream

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o.engine is not None and o.engine not in BACKENDS:
            raise ConfigError(f"[plugins.student] engine must be one of {', '.join(BACKENDS)}, not '{o.engine}'")
        if o.precision is not None and o.precision not in PRECISIONS:
            raise ConfigError(f"[plugins.student] precision must be one of {', '.join(PRECISIONS)}, not '{o.precision}'")
        if o.max_batch < 2:
            raise ConfigError("[plugins.student] max_batch must be at least 2 (a crop and its mirror)")
        # Each track costs two engine rows (plain and mirrored): fill one engine call per batch.
        self.batch_size = max(1, o.max_batch // 2)
        if o.concat is not None and o.random_init and o.model is None:
            raise ConfigError("[plugins.student] concat needs a trained `model` to stack with, not random_init")
        self.engine: Engine | None = None  # the first (or only) student's engine
        self.engines: list[Engine] = []
        self.student: StudentModel | None = None  # the first (or only) student
        self.students: list[StudentModel] = []
        self.dim = 0

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        o = self.options
        backend = o.engine or context.engine
        if backend not in BACKENDS:
            raise ConfigError(f"unknown engine '{backend}'; choose one of {', '.join(BACKENDS)}")
        precision = o.precision or ("fp16" if backend == "tensorrt" else "fp32")
        first = resolve_student(o.model, random_init=o.random_init, seed=o.seed, random_dim=o.random_dim,
                                dim=o.dim if o.concat is None else None, teacher=o.teacher,
                                model_dir=context.model_dir)
        students = [first]
        if o.concat is not None:
            students.append(resolve_student(o.concat))
            check_concat(students, [str(o.model), o.concat])
            total = sum(s.dim for s in students)
            if o.dim is not None and total != o.dim:
                raise ModelError(f"[plugins.student] model and concat output d={students[0].dim}+{students[1].dim}"
                                 f"={total}, but d={o.dim} is expected")
        if first.sidecar.get("teacher") == "random":
            log.warning("student: running an untrained random_init student; embeddings are for pipeline testing only")
        device = context.device if backend != "tensorrt" else "cuda"
        self.student, self.students, self.dim = first, students, sum(s.dim for s in students)
        try:
            for student in students:
                self.engines.append(student_engine(student, backend, precision=precision, max_batch=o.max_batch,
                                                   device=device, threads=o.threads, cache_root=o.cache_dir))
        except BaseException:
            self.close()
            raise
        self.engine = self.engines[0]

    def process(self, batch: list[Frame]) -> None:
        assert self.engine is not None and self.student is not None, "setup() was not called"
        size = self.student.input_size
        keys: list[tuple[Frame, int]] = []
        rgbs: list[np.ndarray] = []
        flows: list[np.ndarray] = []
        for frame in batch:
            frame.annotations["embedding"] = {}
            crops = frame.annotations.get("crop") or {}
            flow_by_track = frame.annotations.get("flow") or {}
            for track_id, crop in crops.items():
                flow = flow_by_track.get(track_id)
                if flow is None:
                    continue
                if crop.rgb.shape != (size, size, 3) or flow.shape != (2, size, size) or flow.dtype != np.uint8:
                    raise ModelError(f"student expects {size}×{size} crops and 2×{size}×{size} uint8 flow, got "
                                     f"{crop.rgb.shape} and {flow.shape} {flow.dtype}; match the crop size to the model")
                keys.append((frame, track_id))
                rgbs.append(crop.rgb)
                flows.append(flow)
        if not keys:
            return
        plain, flipped = embed_with_mirror(self.engines, np.stack(rgbs), np.stack(flows))
        for i, (frame, track_id) in enumerate(keys):
            frame.annotations["embedding"][track_id] = Embedding(plain[i].copy(), flipped[i].copy())

    def describe(self, frame: Frame) -> dict[str, Any]:
        embeddings = frame.annotations.get("embedding") or {}
        if not embeddings:
            return {}
        return {"tracks": {tid: {"embedding": [round(float(v), 5) for v in e.vector],
                                 "embedding_flipped": [round(float(v), 5) for v in e.flipped]}
                           for tid, e in embeddings.items()}}

    def close(self) -> None:
        for engine in self.engines:
            engine.close()
        self.engines = []
        self.engine = None
