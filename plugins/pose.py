"""pose: the teacher. BlazePose (full, from the mediapipe wheel) on each athlete's crop.

Each athlete's square crop around the track's box (``pad_frac`` of context per side) is
enlarged (or shrunk) to ``input_size`` pixels, so a 100-px player in a broadcast frame
is seen at the scale of a close-up. Two modes:

- ``roi`` (default): BlazePose's landmark model alone (mediapipe's PoseLandmarkByRoiCpu
  subgraph) on the crop — the tracker's box plays the part of BlazePose's own person
  detector, which is skipped (about 4x cheaper; upright people; no rotation).
- ``detect``: the full BlazePose solution in static-image mode on the crop (its own
  person detector, then the landmarks on the rotated region it finds).

Both estimate every frame on its own (deterministic, order-independent), so with
``workers`` > 1 (the default on a multi-core machine) the athletes of a batch — both
players of a singles match, the frames of the batch — are posed side by side by a pool of
model instances (plugins.model_pool), their results put back in track and frame order:
the same poses as ``workers = 1``, one estimate at a time. The 33
landmarks are reduced to the 13 COCO joints VPD uses, with the landmark visibility as the
per-joint score, then normalized (vpd_stream.skeleton) into the 26-d pose feature.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from plugins.crop import crop_frame_square, square_box
from plugins.model_pool import ModelPool, auto_workers
from vpd_stream.annotations import Key, Pose
from vpd_stream.errors import ConfigError, ModelError
from vpd_stream.frame import Frame
from vpd_stream.plugin import Plugin, PluginContext
from vpd_stream.skeleton import BLAZEPOSE_TO_COCO13, EDGES, pose_features

_LEFT = {1, 3, 5, 7, 9, 11}


class BlazePose:
    """mediapipe's BlazePose full (model_complexity=1, the one bundled in the wheel)."""

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        try:
            from plugins.mediapipe_import import pose_solution

            self._pose = pose_solution().Pose(static_image_mode=True, model_complexity=1,
                                                enable_segmentation=False,
                                                min_detection_confidence=min_detection_confidence)
        except Exception as exc:  # a broken mediapipe install must end in one line
            raise ModelError(f"BlazePose could not start ({type(exc).__name__}: {exc}); "
                             "reinstall mediapipe==0.10.21") from None

    def estimate(self, rgb: np.ndarray) -> np.ndarray | None:
        """(13, 3) x, y in [0, 1] of the image and visibility; None when no person is found."""
        result = self._pose.process(np.ascontiguousarray(rgb))
        if result.pose_landmarks is None:
            return None
        lm = result.pose_landmarks.landmark
        return np.array([[lm[i].x, lm[i].y, lm[i].visibility] for i in BLAZEPOSE_TO_COCO13], np.float32)

    def close(self) -> None:
        self._pose.close()


class BlazePoseLandmarks:
    """BlazePose's landmark model on a given region (the whole image passed in), no detector."""

    _GRAPH = """
    input_stream: "image"
    input_stream: "roi"
    output_stream: "landmarks"
    node {
      calculator: "PoseLandmarkByRoiCpu"
      input_side_packet: "MODEL_COMPLEXITY:model_complexity"
      input_stream: "IMAGE:image"
      input_stream: "ROI:roi"
      output_stream: "LANDMARKS:landmarks"
    }
    """

    def __init__(self) -> None:
        try:
            from google.protobuf import text_format

            from plugins.mediapipe_import import pose_solution

            pose_solution()  # mediapipe without its package __init__ (39 MB less)
            from mediapipe.framework import calculator_pb2
            from mediapipe.python.solution_base import SolutionBase
            from mediapipe.framework.formats import rect_pb2

            config = text_format.Parse(self._GRAPH, calculator_pb2.CalculatorGraphConfig())
            self._graph = SolutionBase(graph_config=config, side_inputs={"model_complexity": 1},
                                       outputs=["landmarks"])
            self._roi = rect_pb2.NormalizedRect(x_center=0.5, y_center=0.5, width=1.0, height=1.0, rotation=0.0)
        except Exception as exc:  # a broken mediapipe install must end in one line
            raise ModelError(f"BlazePose could not start ({type(exc).__name__}: {exc}); "
                             "reinstall mediapipe==0.10.21") from None

    def estimate(self, rgb: np.ndarray) -> np.ndarray | None:
        """(13, 3) x, y in [0, 1] of the image and visibility; None when the model finds no pose."""
        result = self._graph.process({"image": np.ascontiguousarray(rgb), "roi": self._roi})
        if result.landmarks is None:
            return None
        lm = result.landmarks.landmark
        return np.array([[lm[i].x, lm[i].y, lm[i].visibility] for i in BLAZEPOSE_TO_COCO13], np.float32)

    def close(self) -> None:
        self._graph.close()


POSE_MODES = ("roi", "detect")


class PosePlugin(Plugin):
    name = "pose"
    requires = (Key.TRACKS,)
    provides = (Key.POSE,)
    description = "BlazePose teacher on the athlete crop: 13 COCO joints + scores, 26-d normalized pose"
    batch_size = 4
    parallel_safe = True  # each frame on its own: the pipeline may run replicas on other cores

    @dataclass
    class Options:
        all_tracks: bool = False  # estimate every track's pose, not only the athletes'
        mode: str = "roi"  # roi: landmark model on the track's crop; detect: BlazePose's own detector first
        input_size: int = 256  # side of the square crop BlazePose sees (its landmark model reads 256×256)
        pad_frac: float = 0.2  # context around the box, per side, as a fraction of its longer side
        min_detection_confidence: float = 0.5  # mode "detect": BlazePose's own detector threshold
        workers: int = 0  # model instances posing athletes side by side; 0 = one per core (at most 4), 1 = one at a time

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        if self.options.input_size < 64:
            raise ConfigError("[plugins.pose] input_size must be ≥ 64")
        if not 0 <= self.options.workers <= 64:
            raise ConfigError(f"[plugins.pose] workers must be in [0, 64] (0 = one per core), got {self.options.workers}")
        if self.options.mode not in POSE_MODES:
            raise ConfigError(f"[plugins.pose] mode '{self.options.mode}' is unknown; use one of {', '.join(POSE_MODES)}")
        self._models: ModelPool | None = None

    def setup(self, context: PluginContext) -> None:
        super().setup(context)
        if self._models is None:
            o = self.options
            self._models = ModelPool([BlazePoseLandmarks() if o.mode == "roi" else BlazePose(o.min_detection_confidence)
                                      for _ in range(auto_workers(o.workers))], "pose")

    @property
    def workers(self) -> int:
        return self._models.workers if self._models is not None else auto_workers(self.options.workers)

    def process(self, batch: list[Frame]) -> None:
        assert self._models is not None, "setup() was not called"
        o = self.options
        jobs = []  # (frame, track id, square crop box) in frame order, then track order
        for frame in batch:
            frame.annotations["pose"] = {}
            for tid, track in frame.annotations.get("tracks", {}).items():
                if track.is_athlete or o.all_tracks:
                    jobs.append((frame, tid, square_box(track.box, o.pad_frac, 0.0)))
        for (frame, tid, square), local in zip(jobs, self._models.map(self._estimate, jobs)):
            if local is None:
                continue
            side = float(square[2] - square[0])
            keypoints = local.copy()
            keypoints[:, 0] = square[0] + local[:, 0] * side
            keypoints[:, 1] = square[1] + local[:, 1] * side
            keypoints[:, 2] = np.clip(local[:, 2], 0.0, 1.0)
            frame.annotations["pose"][tid] = Pose(keypoints=keypoints, features=pose_features(keypoints),
                                                  mean_score=float(keypoints[:, 2].mean()))

    def _estimate(self, model: BlazePose | BlazePoseLandmarks, job: tuple) -> np.ndarray | None:
        frame, _, square = job  # frame.rgb may convert lazy pixels: here, in the worker (once per frame)
        return model.estimate(crop_frame_square(frame, square, self.options.input_size))  # the square's pixels only

    def close(self) -> None:
        if self._models is not None:
            self._models.close()
            self._models = None

    def describe(self, frame: Frame) -> dict[str, Any]:
        poses = frame.annotations.get("pose", {})
        return {"tracks": {tid: {"pose": [[round(float(x), 1), round(float(y), 1), round(float(s), 3)]
                                          for x, y, s in p.keypoints],
                                 "pose_score": round(p.mean_score, 3)}
                           for tid, p in poses.items()}} if poses else {}

    def draw(self, frame: Frame, image: np.ndarray) -> None:
        thick = max(2, round(max(image.shape[:2]) / 400))
        for pose in frame.annotations.get("pose", {}).values():
            kp = pose.keypoints
            for a, b in EDGES:
                if min(kp[a, 2], kp[b, 2]) < 0.3:
                    continue
                color = (255, 160, 0) if a in _LEFT and b in _LEFT else (0, 140, 255) if a not in _LEFT and b not in _LEFT and a else (0, 255, 255)
                cv2.line(image, (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1])), color, thick, cv2.LINE_AA)
            for x, y, s in kp:
                if s >= 0.3:
                    cv2.circle(image, (int(x), int(y)), thick + 1, (255, 255, 255), -1, cv2.LINE_AA)
