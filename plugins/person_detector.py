"""Person detectors for the tracker: each turns an RGB frame (or a region of it) into person boxes.

- ``blazepose``: the BlazePose person detector bundled in the mediapipe wheel (offline).
  It predicts BlazePose's full-body alignment circle (centre at the mid-hip, radius r to a
  point beyond the head); the box reported is the body inside it, by human proportions:
  x = hip ± 0.57 r, y from hip − 0.85 r (head top) to hip + 0.95 r (feet) — the medians over
  42 hand-labelled player boxes of tests/data/tennis_broadcast_rally_boxes.json.
  The model sees 224×224: on a whole 1080p frame a 100-px player shrinks to ~20 px and is
  missed, so the tracker runs it sliced (``SlicedDetector``): on overlapping tiles at the
  detector's own scale, on the whole frame (for people bigger than a tile), and in a
  search window around each live track.
- ``hog``: OpenCV's HOG + linear SVM people detector: upright pedestrians in crowds.
- ``onnx``: a user-supplied ONNX detector, run through engines/ (ONNX Runtime on the CPU,
  CUDA with ``--device cuda``). One input, float32 N×3×H×W RGB in [0, 1] (H, W from the
  model's static input shape, else 640×640; the image is resized to it without
  letterboxing). Output layouts accepted (``onnx_layout``, "auto" tells them by shape):
  ``xyxy``: 1×K×5 or 1×K×6 — x1, y1, x2, y2 in input pixels, score, [class];
  ``yolov8``: 1×(4+C)×N — cx, cy, w, h in input pixels, then C class scores (YOLOv8-11
  exports, transposed rows);
  ``yolov5``: 1×N×(5+C) — cx, cy, w, h, objectness, C class scores;
  ``rtdetr``: 1×N×(4+C) — cx, cy, w, h normalized to [0, 1], C class scores (RT-DETR
  exports). Class 0 = person (COCO); non-maximum suppression is applied to the YOLO
  layouts. (The leading batch axis matters: engines/ binds outputs by it.)

``DetectorPool`` runs several instances of a detector side by side (plugins.model_pool):
the regions of one frame, or the frames of a batch, are detected on both cores at once;
results come back in the order asked, the same as one instance gives one call at a time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from concurrent.futures import Future
from typing import Callable, Protocol

import cv2
import numpy as np

from plugins.model_pool import ModelPool
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import Frame

DETECTORS = ("blazepose", "hog", "onnx")
ONNX_LAYOUTS = ("auto", "xyxy", "yolov8", "yolov5", "rtdetr")

# BlazePose alignment circle -> body box, in units of the radius from the mid-hip (see the docstring).
BODY_HALF_WIDTH, BODY_TOP, BODY_BOTTOM = 0.57, 0.85, 0.95


@dataclass
class PersonDetection:
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in image pixels
    score: float
    cut: bool = False  # found in a region whose inner border the box reaches: maybe only part of the person


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

        from plugins.mediapipe_import import pose_solution

        pose_solution()  # mediapipe without its package __init__ (39 MB less)
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
            box = [cx - BODY_HALF_WIDTH * r, cy - BODY_TOP * r, cx + BODY_HALF_WIDTH * r, cy + BODY_BOTTOM * r]
            out.append(PersonDetection(np.array(box, np.float32), score))
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


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4): (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(1e-9, area_a[:, None] + area_b[None, :] - inter)


def nms(detections: list[PersonDetection], iou: float = 0.5) -> list[PersonDetection]:
    """Greedy non-maximum suppression, highest score first."""
    order = sorted(detections, key=lambda d: -d.score)
    kept: list[PersonDetection] = []
    for d in order:
        if not kept or box_iou(d.box, np.stack([k.box for k in kept])).max() < iou:
            kept.append(d)
    return kept


def _parse_onnx_rows(raw: np.ndarray, layout: str, size: tuple[int, int], min_score: float) -> np.ndarray:
    """Rows x1, y1, x2, y2 (input pixels), person score from one of the accepted layouts."""
    a = np.asarray(raw, dtype=np.float32)
    if a.ndim == 3:
        a = a[0]
    if a.ndim != 2:
        raise ModelError(f"ONNX detector output has shape {tuple(raw.shape)}; expected 1×K×C (see onnx_layout)")
    if layout == "auto":
        if a.shape[1] in (5, 6):
            layout = "xyxy"
        elif a.shape[0] < a.shape[1] and a.shape[0] >= 5:
            layout = "yolov8"  # channels first: 4 + classes rows, many anchors
        elif a.shape[1] >= 6 and a[:, :4].size and float(np.abs(a[:, :4]).max()) <= 1.5:
            layout = "rtdetr"
        else:
            layout = "yolov5"
    if layout == "xyxy":
        if a.shape[1] not in (5, 6):
            raise ModelError(f"ONNX detector output has {a.shape[1]} columns; expected x1,y1,x2,y2,score[,class]")
        if a.shape[1] == 6:
            a = a[a[:, 5].round() == 0]
        rows = a[:, :5]
    else:
        if layout == "yolov8":
            a = a.T
        if layout == "yolov5":
            score = a[:, 4] * a[:, 5] if a.shape[1] > 5 else a[:, 4]
        else:
            score = a[:, 4]
        cx, cy, bw, bh = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        if layout == "rtdetr":
            cx, cy, bw, bh = cx * size[0], cy * size[1], bw * size[0], bh * size[1]
        rows = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, score], axis=1)
    return rows[rows[:, 4] >= min_score]


class OnnxDetector:
    """A user-supplied ONNX person detector (I/O and layouts in the module docstring)."""

    def __init__(self, model_path: str, min_score: float = 0.5, device: str = "cpu", layout: str = "auto") -> None:
        if not model_path:
            raise ConfigError("detector 'onnx' needs a model: set [plugins.tracker] onnx_model = \"path/to/detector.onnx\"")
        if layout not in ONNX_LAYOUTS:
            raise ConfigError(f"[plugins.tracker] onnx_layout '{layout}' is unknown; use one of {', '.join(ONNX_LAYOUTS)}")
        if not Path(model_path).is_file():
            raise ModelError(f"ONNX detector {model_path} does not exist; check [plugins.tracker] onnx_model")
        from engines.onnxruntime_engine import OnnxRuntimeEngine

        self._engine = OnnxRuntimeEngine(model_path, max_batch=1, device=device)
        self._input = self._engine.input_names[0]
        shape = self._engine.session.get_inputs()[0].shape
        h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
        self.size = (int(w) if isinstance(w, int) else 640, int(h) if isinstance(h, int) else 640)
        self.min_score = min_score
        self.layout = layout

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        h, w = rgb.shape[:2]
        resized = cv2.resize(rgb, self.size, interpolation=cv2.INTER_LINEAR)
        x = (resized.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        outputs = self._engine.run({self._input: np.ascontiguousarray(x)})
        rows = _parse_onnx_rows(next(iter(outputs.values())), self.layout, self.size, self.min_score)
        sx, sy = w / self.size[0], h / self.size[1]
        dets = [PersonDetection(np.array([r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy], np.float32), float(r[4]))
                for r in rows]
        return nms(dets, 0.5) if self.layout != "xyxy" and len(dets) > 1 else dets

    def close(self) -> None:
        self._engine.close()


def _detect(detector: PersonDetector, image: np.ndarray | Callable[[], np.ndarray]) -> list[PersonDetection]:
    """Detect on a view (copied contiguous here) or on what a callable returns (made here)."""
    return detector.detect(np.ascontiguousarray(image() if callable(image) else image))


class DetectorPool:
    """Several instances of one person detector, run side by side (one thread each).

    ``submit`` starts one detection and returns its future; ``detect_many`` detects a list
    of images (views are copied to contiguous arrays in the worker) and returns their
    results in order. With one instance everything runs in the caller's thread.
    """

    def __init__(self, detectors: list[PersonDetector]) -> None:
        self._pool: ModelPool[PersonDetector] = ModelPool(detectors, "detect")

    @property
    def workers(self) -> int:
        return self._pool.workers

    def submit(self, rgb: np.ndarray | Callable[[], np.ndarray]) -> Future:
        """Detect on ``rgb``, or on what ``rgb()`` returns, called in the worker (a frame's
        pixels converted there, side by side with the other detections)."""
        return self._pool.submit(_detect, rgb)

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        return self.submit(rgb).result()

    def detect_many(self, images: list[np.ndarray | Callable[[], np.ndarray]]) -> list[list[PersonDetection]]:
        """Each image (or what each callable returns, called in the worker), side by side; in order."""
        return self._pool.map(_detect, images)

    def close(self) -> None:
        self._pool.close()


Region = tuple[int, int, int, int]  # x1, y1, x2, y2 in image pixels


def tile_grid(width: int, height: int, tile: int, overlap: float = 0.25) -> list[Region]:
    """Square tiles of side ``tile`` covering the image, neighbours overlapping by ``overlap``."""
    if tile <= 0 or (width <= tile and height <= tile):
        return []
    step = max(1, int(round(tile * (1.0 - overlap))))

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        n = int(math.ceil((length - tile) / step)) + 1
        return sorted({min(i * step, length - tile) for i in range(n)})

    return [(x, y, min(width, x + tile), min(height, y + tile)) for y in starts(height) for x in starts(width)]


def search_window(box: np.ndarray, width: int, height: int, scale: float, least: int) -> Region:
    """A window ``scale`` × the box's longer side (at least ``least``) around its centre, kept
    inside the image: square, unless the image is narrower or shorter than that side."""
    side = int(round(max(least, scale * float(max(box[2] - box[0], box[3] - box[1])))))
    sw, sh = min(side, width), min(side, height)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x1 = int(round(min(max(0.0, cx - sw / 2), width - sw)))
    y1 = int(round(min(max(0.0, cy - sh / 2), height - sh)))
    return (x1, y1, x1 + sw, y1 + sh)


def region_sees(region: Region, box: np.ndarray, min_fraction: float) -> bool:
    """Whether a detector run on ``region`` would see the person in ``box``: its centre lies
    inside and its height is at least ``min_fraction`` of the region's side (smaller people
    shrink below what the model resolves)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(region[2] - region[0], region[3] - region[1])
    inside = region[0] <= cx < region[2] and region[1] <= cy < region[3]
    return bool(inside and (box[3] - box[1]) >= min_fraction * side)


class SlicedDetector:
    """Runs a detector over regions of the frame (tiles, the whole frame, search windows)
    and merges what they find into one set of boxes in frame coordinates.

    A person cut by a region's border is found whole in a neighbouring, overlapping tile
    or the whole-frame view; duplicates across regions are merged by NMS, and a small
    detection lying inside a much taller one (a face or torso found in a tile of a close-up
    athlete) is dropped.
    """

    def __init__(self, base: PersonDetector, nms_iou: float = 0.4) -> None:
        self.base = base
        self.nms_iou = nms_iou
        self.calls = 0  # detector calls made (one per region)

    def detect_regions(self, rgb: np.ndarray | Frame, regions: list[Region]) -> list[PersonDetection]:
        views: list[np.ndarray | Callable[[], np.ndarray]]
        if isinstance(rgb, Frame):  # a frame: each region's pixels alone (a decoded frame converts just those),
            frame = rgb  # made where the region is detected (in a pool's worker: side by side)
            h, w = frame.height, frame.width
            views = [(lambda: frame.rgb) if r == (0, 0, w, h) else (lambda r=r: frame.rgb_region(*r)) for r in regions]
        else:
            h, w = rgb.shape[:2]
            views = [rgb if r == (0, 0, w, h) else rgb[r[1]:r[3], r[0]:r[2]] for r in regions]
        many = getattr(self.base, "detect_many", None)
        if many is not None:  # a DetectorPool: the regions side by side
            results = many(views)
        else:
            results = [self.base.detect(np.ascontiguousarray(view() if callable(view) else view)) for view in views]
        found: list[PersonDetection] = []
        for (x1, y1, x2, y2), dets in zip(regions, results):
            if (x1, y1, x2, y2) != (0, 0, w, h):
                m = 2.0  # px: a box this close to an inner border of the region is taken as cut
                for d in dets:
                    b = d.box
                    d.cut = bool((x1 > 0 and b[0] <= m) or (y1 > 0 and b[1] <= m)
                                 or (x2 < w and b[2] >= x2 - x1 - m) or (y2 < h and b[3] >= y2 - y1 - m))
                    d.box = b + np.array([x1, y1, x1, y1], np.float32)
            self.calls += 1
            found.extend(dets)
        return merge_detections(found, self.nms_iou)

    def merge_whole(self, dets: list[PersonDetection]) -> list[PersonDetection]:
        """What ``detect`` returns, from the base detector's result on the whole frame
        (a detection run ahead of time, e.g. by ``DetectorPool.submit``)."""
        self.calls += 1
        return merge_detections(dets, self.nms_iou)

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        h, w = rgb.shape[:2]
        return self.detect_regions(rgb, [(0, 0, w, h)])

    def close(self) -> None:
        self.base.close()


def merge_detections(dets: list[PersonDetection], iou: float = 0.4, inside: float = 0.7) -> list[PersonDetection]:
    """One box per person from what overlapping regions found.

    Whole views first (a box cut by its region's inner border may show only part of the
    person), then by score. A box is the same person as a kept one when their IoU is ≥
    ``iou`` or ≥ ``inside`` of the smaller box lies inside the other. The kept box stays,
    unless the newcomer is the whole view of a cut one, or at least twice as tall (the
    person a head or torso found in a tile belongs to): then the newcomer replaces it.
    """
    order = sorted((d for d in dets if d.box[2] > d.box[0] and d.box[3] > d.box[1]), key=lambda d: (d.cut, -d.score))
    kept: list[PersonDetection] = []
    for d in order:
        dh = float(d.box[3] - d.box[1])
        area = float((d.box[2] - d.box[0]) * dh)
        same = None
        for k, o in enumerate(kept):
            oh = float(o.box[3] - o.box[1])
            o_area = float((o.box[2] - o.box[0]) * oh)
            ix = max(0.0, min(d.box[2], o.box[2]) - max(d.box[0], o.box[0]))
            iy = max(0.0, min(d.box[3], o.box[3]) - max(d.box[1], o.box[1]))
            inter = ix * iy
            if inter / max(1e-9, area + o_area - inter) >= iou or inter >= inside * min(area, o_area):
                same = k
                break
        if same is None:
            kept.append(d)
            continue
        o = kept[same]
        if (o.cut and not d.cut) or dh >= 2.0 * float(o.box[3] - o.box[1]):
            kept[same] = d
    return kept


def make_detector(kind: str, *, min_score: float, max_side: int, onnx_model: str | None = None,
                  device: str = "cpu", onnx_layout: str = "auto") -> PersonDetector:
    if kind == "blazepose":
        return BlazePoseDetector(min_score=min_score, max_side=max_side)
    if kind == "hog":
        return HogDetector(min_score=min_score, max_side=max_side)
    if kind == "onnx":
        return OnnxDetector(onnx_model or "", min_score=min_score, device=device, layout=onnx_layout)
    raise ConfigError(f"unknown detector '{kind}'; use one of {', '.join(DETECTORS)}")
