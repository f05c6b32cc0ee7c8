"""JMRN recognizer: labels each detected interval from the teacher poses of its track.

It keeps, per stream and track, the recent poses (frame index → 13 keypoints). When an
event (a detection) passes in ``frame.events`` or, at the end of a stream, in
``eos.events``, the poses of the event's track inside [start, end] become one aggregated
heatmap clip, and JMRN classifies it (flip test-time averaging). The class goes to
``event.label`` (``Event.relabel``: the detector's own label is kept in ``detector_label``,
the class probability in ``label_score``, so the BiGRU recognizer leaves such events
alone), ``extra["jmrn"]`` holds the class, its probability and the top-3, and
the frame's ``"label"`` annotation maps track id → class for the per-frame record.

The heatmaps are ``vpd_stream.heatmaps.clip_heatmaps`` of the teacher's (T, 13, 3)
keypoints, the very function that renders Penn Action for training: joints below the
weights' ``heatmap.min_score`` (the bundled model: ``skeleton.MIN_JOINT_SCORE``) are missing.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vpd_stream.annotations import Key
from vpd_stream.errors import ConfigError
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.heatmaps import HeatmapConfig, clip_heatmaps, flip_heatmaps
from vpd_stream.plugin import Plugin, PluginContext

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "jmrn_default.safetensors"


class JmrnRecognizerPlugin(Plugin):
    name = "jmrn"
    requires = (Key.TRACKS, Key.POSE, Key.EVENTS)
    provides = (Key.LABEL,)
    description = "labels detected intervals with JMRN on the track's teacher-pose heatmaps"
    batch_size = 16
    reads_pixels = False  # poses only

    @dataclass
    class Options:
        weights: str = ""  # JMRN .safetensors (with its .json); empty = the bundled Penn Action model
        min_frames: int = 4  # intervals with fewer poses are left unlabelled
        max_frames: int = 1500  # poses kept per track (the longest interval that can be labelled)
        set_label: bool = True  # replace event.label with the JMRN class
        # Joints the teacher scored below this are missing (not drawn, not in the crop box).
        # None: what the weights were trained with (their sidecar's heatmap.min_score; the
        # bundled model: skeleton.MIN_JOINT_SCORE, the project's missing-joint rule).
        min_score: float | None = None

        def __post_init__(self) -> None:
            if self.min_frames < 1 or self.max_frames < self.min_frames:
                raise ConfigError("plugins.jmrn: need 1 <= min_frames <= max_frames")
            if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
                raise ConfigError("plugins.jmrn: min_score must be in [0, 1]")

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        self.model = None
        self.classes: list[str] = []
        self.heatmap = HeatmapConfig()
        self._poses: dict[str, dict[int, deque]] = {}

    def setup(self, context: PluginContext) -> None:
        from vpd_stream.models.jmrn import load_jmrn

        super().setup(context)
        path = Path(self.options.weights) if self.options.weights else DEFAULT_WEIGHTS
        if not path.is_absolute() and context.model_dir and not path.exists():
            path = Path(context.model_dir) / path
        from engines import create_engine

        self.model, meta = load_jmrn(path)
        self.model.input_names = ("maps",)  # forward's return_projections is for training only
        # Every network runs through engines/; the torch engine is the heads' reference backend.
        self.engine = create_engine("torch", module=self.model, max_batch=2, channels_last=False)
        self.classes = list(meta["classes"])
        hm = dict(meta["heatmap"])
        hm.setdefault("min_score", 0.0)  # a sidecar without it predates the rule: every joint drawn
        if self.options.min_score is not None:
            hm["min_score"] = self.options.min_score
        self.heatmap = HeatmapConfig(**hm)

    # -- the stream -----------------------------------------------------------------
    def process(self, batch: list[Frame]) -> None:
        for frame in batch:
            tracks = self._poses.setdefault(frame.stream_id, {})
            for tid, pose in (frame.annotations.get("pose") or {}).items():
                buf = tracks.setdefault(int(tid), deque(maxlen=self.options.max_frames))
                buf.append((frame.index, np.asarray(pose.keypoints, dtype=np.float32)))
            self._label(frame.stream_id, frame.events)
            labels = {ev.track_id: ev.label for ev in frame.events if (ev.extra.get("jmrn") or {}).get("label") == ev.label}
            if labels:
                frame.annotations.setdefault("label", {}).update(labels)

    def end_stream(self, eos: EndOfStream) -> None:
        self._label(eos.stream_id, eos.events)
        self._poses.pop(eos.stream_id, None)

    def close(self) -> None:
        self._poses.clear()

    # -- labelling --------------------------------------------------------------------
    def interval_keypoints(self, stream_id: str, event: Event) -> np.ndarray | None:
        """(T, 13, 3) poses of the event's track (or, with no track, the best-covered one)."""
        tracks = self._poses.get(stream_id, {})
        candidates = [event.track_id] if event.track_id is not None else list(tracks)
        best: list[np.ndarray] = []
        for tid in candidates:
            inside = [kp for idx, kp in tracks.get(int(tid), ()) if event.start_frame <= idx <= event.end_frame]
            if len(inside) > len(best):
                best = inside
        return np.stack(best) if len(best) >= self.options.min_frames else None

    def heatmaps(self, keypoints: np.ndarray) -> np.ndarray:
        """(T, 13|17, 2|3) keypoints → the (13, 3, H, W) heatmaps JMRN sees (training's function)."""
        return clip_heatmaps(keypoints, self.heatmap)

    @torch.no_grad()
    def classify(self, keypoints: np.ndarray) -> np.ndarray:
        """(T, 13|17, 2|3) keypoints → class probabilities."""
        maps = self.heatmaps(keypoints)
        logits = self.engine.run({"maps": np.stack([maps, flip_heatmaps(maps)])})["output"]
        return torch.from_numpy(logits).softmax(-1).mean(0).numpy()

    def _label(self, stream_id: str, events: list[Event]) -> None:
        for event in events:
            if "jmrn" in event.extra:
                continue
            kp = self.interval_keypoints(stream_id, event)
            if kp is None:
                event.extra["jmrn"] = None
                continue
            probs = self.classify(kp)
            top = np.argsort(-probs)[:3]
            best = int(top[0])
            event.extra["jmrn"] = {"label": self.classes[best], "prob": round(float(probs[best]), 6),
                                   "top3": [[self.classes[i], round(float(probs[i]), 6)] for i in top],
                                   "frames": int(len(kp))}
            if self.options.set_label:
                event.relabel(self.classes[best], probs[best])

    def describe(self, frame: Frame) -> dict[str, Any]:
        labels = frame.annotations.get("label")
        return {"tracks": {tid: {"label": lab} for tid, lab in labels.items()}} if labels else {}
