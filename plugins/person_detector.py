"""Person detectors for the tracker: each turns an RGB frame into person boxes.

- ``blazepose``: the BlazePose person detector bundled in the mediapipe wheel (offline).
  It finds the prominent people (athletes filmed for their sport), not small crowd
  figures. Its box is the square around BlazePose's full-body alignment circle (centre
  at the mid-hip, radius to the point beyond the head), the region the pose model reads.
- ``hog``: OpenCV's HOG + linear SVM people detector: upright pedestrians in crowds.
- ``onnx``: a user-supplied ONNX detector, run through engines/ (ONNX Runtime).
  Expected I/O: one input, float32 N×3×H×W RGB in [0, 1] (H, W from the model's static
  input shape, else 640×640; the frame is resized to it without letterboxing); one output
  1×K×5 or 1×K×6 with K dynamic: x1, y1, x2, y2 in input pixels, score, [class];
  class 0 = person. (The leading batch axis matters: engines/ binds outputs by it.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from vpd_stream.errors import ConfigError, ModelError

DETECTORS = ("blazepose", "hog", "onnx")


@dataclass
class PersonDetection:
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in image pixels
    score: float


class PersonDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[PersonDetection]: ...

    def close(self) -> None: ...


def _resize_longer(rgb: np.ndarray, side: int, upscale: bool) -> tuple[np.ndarray, float]:
    """Resize so the longer side is ``side`` (never up unless ``upscale``); return image and factor."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w) if side > 0 else 1.0
    if abs(scale - 1.0) < 1e-3 or (scale > 1.0 and not upscale):
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interp), scale


class BlazePoseDetector:
    """mediapipe's PoseDetectionCpu subgraph, run on its own (no landmarks)."""

    _GRAPH = """
    input_stream: "image"
    output_stream: "detections"
    node {
      calculator: "PoseDetectionCpu"
      input_stream: "IMAGE:image"
      output_stream: "DETECTIONS:detections"
    }
    """

    def __init__(self, min_score: float = 0.5, max_side: int = 640) -> None:
        from google.protobuf import text_format
        from mediapipe.framework import calculator_pb2
        from mediapipe.python.solution_base import SolutionBase

        config = text_format.Parse(self._GRAPH, calculator_pb2.CalculatorGraphConfig())
        self._graph = SolutionBase(graph_config=config, outputs=["detections"])
        self.min_score = min_score
        self.max_side = max_side  # the model sees 224×224: a smaller copy loses nothing

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        h, w = rgb.shape[:2]
        small, _ = _resize_longer(rgb, self.max_side, upscale=False)
        result = self._graph.process({"image": np.ascontiguousarray(small)})
        out = []
        for det in result.detections or []:
            score = float(det.score[0]) if det.score else 0.0
            kps = det.location_data.relative_keypoints
            if score < self.min_score or len(kps) < 2:
                continue
            cx, cy = kps[0].x * w, kps[0].y * h
            r = math.hypot(kps[1].x * w - cx, kps[1].y * h - cy)
            out.append(PersonDetection(np.array([cx - r, cy - r, cx + r, cy + r], np.float32), score))
        return out

    def close(self) -> None:
        self._graph.close()


class HogDetector:
    """OpenCV's default HOG people detector with non-maximum suppression."""

    # HOG's 64×128 window finds people ≳ 100 px tall: frames are resized (up as well as
    # down) so their longer side is ``max_side``.
    def __init__(self, min_score: float = 0.5, max_side: int = 1152, scale_step: float = 1.05) -> None:
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.min_score = min_score
        self.max_side = max_side
        self.scale_step = scale_step

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        small, scale = _resize_longer(rgb, self.max_side, upscale=True)
        rects, weights = self._hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=self.scale_step)
        if len(rects) == 0:
            return []
        # SVM margins → (0, 1); a margin of 0 is the decision boundary.
        scores = 1.0 / (1.0 + np.exp(-np.ravel(weights).astype(np.float64)))
        keep = cv2.dnn.NMSBoxes([list(map(int, r)) for r in rects], scores.tolist(), self.min_score, 0.4)
        out = []
        for i in np.ravel(keep).astype(int) if len(keep) else []:
            x, y, bw, bh = (float(v) / scale for v in rects[i])
            # The 64×128 window has a margin around the person: trim it.
            box = np.array([x + 0.15 * bw, y + 0.05 * bh, x + 0.85 * bw, y + 0.95 * bh], np.float32)
            out.append(PersonDetection(box, float(scores[i])))
        return out

    def close(self) -> None:
        pass


class OnnxDetector:
    """A user-supplied ONNX person detector (I/O in the module docstring)."""

    def __init__(self, model_path: str, min_score: float = 0.5, device: str = "cpu") -> None:
        if not model_path:
            raise ConfigError("detector 'onnx' needs a model: set [plugins.tracker] onnx_model = \"path/to/detector.onnx\"")
        if not Path(model_path).is_file():
            raise ModelError(f"ONNX detector {model_path} does not exist; check [plugins.tracker] onnx_model")
        from engines.onnxruntime_engine import OnnxRuntimeEngine

        self._engine = OnnxRuntimeEngine(model_path, max_batch=1, device=device)
        self._input = self._engine.input_names[0]
        shape = self._engine.session.get_inputs()[0].shape
        h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
        self.size = (int(w) if isinstance(w, int) else 640, int(h) if isinstance(h, int) else 640)
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        h, w = rgb.shape[:2]
        resized = cv2.resize(rgb, self.size, interpolation=cv2.INTER_LINEAR)
        x = (resized.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        outputs = self._engine.run({self._input: np.ascontiguousarray(x)})
        rows = np.asarray(next(iter(outputs.values())), dtype=np.float32)
        rows = rows.reshape(-1, rows.shape[-1])
        if rows.shape[-1] not in (5, 6):
            raise ModelError(f"ONNX detector output has {rows.shape[-1]} columns; expected x1,y1,x2,y2,score[,class]")
        if rows.shape[-1] == 6:
            rows = rows[rows[:, 5].round() == 0]
        sx, sy = w / self.size[0], h / self.size[1]
        return [PersonDetection(np.array([r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy], np.float32), float(r[4]))
                for r in rows if r[4] >= self.min_score]

    def close(self) -> None:
        self._engine.close()


def make_detector(kind: str, *, min_score: float, max_side: int, onnx_model: str | None = None,
                  device: str = "cpu") -> PersonDetector:
    if kind == "blazepose":
        return BlazePoseDetector(min_score=min_score, max_side=max_side)
    if kind == "hog":
        return HogDetector(min_score=min_score, max_side=max_side)
    if kind == "onnx":
        return OnnxDetector(onnx_model or "", min_score=min_score, device=device)
    raise ConfigError(f"unknown detector '{kind}'; use one of {', '.join(DETECTORS)}")
