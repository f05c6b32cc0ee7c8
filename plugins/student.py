"""student: the VPD embedding of every tracked athlete, and of its horizontal mirror.

Consumes the 128×128 ``crop`` and the quantized ``flow`` of each track, runs the student
network through the chosen engine, and provides ``embedding`` (Embedding(vector, flipped)).
Tracks from every frame of the batch (and every stream in it) go through the engine
together, with the flipped views in the same call, in chunks of the engine's max batch.

The model is a checkpoint from ``vpd-stream distill`` (``.safetensors`` + JSON sidecar) or
an ONNX file from ``vpd-stream export``. ``random_init = true`` runs a seeded, untrained
student instead: for testing the pipeline only, its embeddings mean nothing.

Precision: ``precision = "auto"`` (the default) on the CPU lets ``engines.dispatch`` pick the
fastest path that holds the accuracy gate for this CPU and model — onnxruntime int8 where the
CPU has VNNI, torch bf16 where bf16 is native, fp32 otherwise — measured once and cached
(``$VPD_CACHE_DIR/dispatch``). It chooses between onnxruntime and torch (torch only when
the run's engine is torch); naming ``[plugins.student] engine`` turns it off (that engine's
fp32, or the ``precision`` given). The low-precision paths need real crops for calibration
and the gate (``calibration_videos``, else ``$VPD_DATA_DIR/videos``); without them only fp32
is considered. On TensorRT auto is fp16, on a CUDA torch engine fp32; a ``random_init``
student (meaningless weights, no gate to hold) and an ONNX file run fp32 / the file's
precision on the run's engine. The path that runs is in the run summary and in the
``vpd_engine_path{model,backend,precision,isa}`` gauge.

Concat-VPD: ``concat = "vi-vpd.safetensors"`` names a second student (typically VI-VPD,
distilled with ``--teacher vipe``, next to a 2D-VPD ``model``). Both run on the same crops
through the same engine kind, and the embedding is the two stacked, ``[model, concat]``
(d = d₁ + d₂); the flipped embedding is the two flipped embeddings stacked likewise.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines import BACKENDS
from engines.student import embed_with_mirror, student_engine
from vpd_stream.annotations import Embedding, Key
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import Frame
from vpd_stream.models.student_loading import StudentModel, check_concat, resolve_student
from vpd_stream.plugin import Plugin, PluginContext

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


class StudentPlugin(Plugin):
    name = "student"
    requires = (Key.CROP, Key.FLOW)
    provides = (Key.EMBEDDING,)
    description = "VPD student embedding (and its mirrored view) per track, via torch/onnxruntime/tensorrt"
    batch_timeout = 0.01  # wait at most 10 ms to fill a batch: bounded live latency
    reads_pixels = False  # the crops and flow only

    @dataclass
    class Options:
        model: str | None = None  # .safetensors (+ .json sidecar) from `vpd-stream distill`, or an exported .onnx
        engine: str | None = None  # torch | onnxruntime | tensorrt; default: the run's --engine
        precision: str = "auto"  # auto | fp32 | bf16 | fp16 | int8; auto: CPU dispatch, fp16 on TensorRT
        max_batch: int = 32  # the most crops per engine call (a track's flipped view counts too)
        dim: int | None = None  # expected embedding size; a checkpoint with another d is refused
        teacher: str | None = None  # expected teacher kind (pose2d | vipe) of `model`; None accepts any
        concat: str | None = None  # a second student whose embedding is appended (Concat-VPD); `dim` is then the total
        random_init: bool = False  # seeded untrained student: for pipeline testing only
        seed: int = 0  # seed of the random_init student
        random_dim: int = 26  # d of the random_init student
        threads: int = 0  # onnxruntime intra-op threads (0 = one per core)
        calibration_videos: str | None = None  # precision auto: real athlete videos for int8/bf16; default $VPD_DATA_DIR/videos
        cache_dir: str | None = None  # exported ONNX / TensorRT engines; default $VPD_CACHE_DIR or ~/.cache/vpd-stream

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o.engine is not None and o.engine not in BACKENDS:
            raise ConfigError(f"[plugins.student] engine must be one of {', '.join(BACKENDS)}, not '{o.engine}'")
        if o.precision is None:  # the former default
            o.precision = "auto"
        if o.precision not in PRECISIONS:
            raise ConfigError(f"[plugins.student] precision must be one of {', '.join(PRECISIONS)}, not '{o.precision}'")
        if o.max_batch < 2:
            raise ConfigError("[plugins.student] max_batch must be at least 2 (a crop and its mirror)")
        # Each track costs two engine rows (plain and mirrored): fill one engine call per batch.
        self.batch_size = max(1, o.max_batch // 2)
        if o.concat is not None and o.random_init and o.model is None:
            raise ConfigError("[plugins.student] concat needs a trained `model` to stack with, not random_init")
        self.engine: Any = None  # the first (or only) student's engine
        self.engines: list[Any] = []
        self.student: StudentModel | None = None  # the first (or only) student
        self.students: list[StudentModel] = []
        self.dim = 0
        self.dispatches: list[Any] = []  # engines.dispatch.Dispatch per student, when precision is auto on the CPU
        self.path_note = ""  # which path runs, for the run summary

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        o = self.options
        backend = o.engine or context.engine
        if backend not in BACKENDS:
            raise ConfigError(f"unknown engine '{backend}'; choose one of {', '.join(BACKENDS)}")
        device = context.device if backend != "tensorrt" else "cuda"
        # auto dispatches on the CPU unless the engine was named for this plugin (then: its fp32).
        auto = o.precision == "auto" and o.engine is None and not device.startswith("cuda")
        precision = o.precision if o.precision != "auto" else ("fp16" if backend == "tensorrt" else "fp32")
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
        self.student, self.students, self.dim = first, students, sum(s.dim for s in students)
        try:
            for student in students:
                if auto and student.module is not None and student.sidecar.get("teacher") != "random":
                    self.engines.append(self._dispatched(student, backend))
                else:
                    self.engines.append(student_engine(student, backend, precision=precision, max_batch=o.max_batch,
                                                       device=device, threads=o.threads, cache_root=o.cache_dir))
        except BaseException:
            self.close()
            raise
        self.engine = self.engines[0]
        self._report_path()

    def _dispatched(self, student: StudentModel, backend: str) -> Any:
        from engines.dispatch import calibration_videos, dispatch, engine_for

        o = self.options
        backends = ("torch",) if backend == "torch" else ("onnxruntime", "torch")
        choice = dispatch(student, threads=o.threads, batch=o.max_batch, backends=backends,
                          videos=calibration_videos(o.calibration_videos), cache_root=o.cache_dir)
        self.dispatches.append(choice)
        return engine_for(student, choice, max_batch=o.max_batch, threads=o.threads, cache_root=o.cache_dir)

    def _report_path(self) -> None:
        """Say which path runs: the summary line and the vpd_engine_path gauge."""
        from engines.dispatch import read_cpuinfo

        isa = self.dispatches[0].isa if self.dispatches else read_cpuinfo().isa
        if self.dispatches:
            self.path_note = "student: " + "; ".join(d.summary() for d in self.dispatches)
        else:
            e = self.engine
            why = ("the ONNX file's precision" if self.student is not None and self.student.onnx_path is not None
                   else "random_init: no gate to hold" if self.student is not None and
                   self.student.sidecar.get("teacher") == "random" else "set by the options")
            self.path_note = f"student: {e.backend} {e.precision} on {isa} ({why})"
        log.info("%s", self.path_note)
        metrics = self.context.metrics
        gauge = getattr(metrics, "engine_path", None)
        if gauge is not None:
            for engine in self.engines[:1]:
                gauge.labels(model=self.name, backend=engine.backend, precision=engine.precision, isa=isa).set(1)

    def summary_lines(self) -> list[str]:
        """Lines for the run summary."""
        return [self.path_note] if self.path_note else []

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
