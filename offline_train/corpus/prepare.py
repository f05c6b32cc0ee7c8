"""Corpus preparation of one video: the stream's own plugins over a file, into the store.

The chain is the live one — tracker → pose → crop → flow, built from the same entry
points and ``[plugins.NAME]`` options as ``vpd-stream run`` — run by the same
``vpd_stream.pipeline.Pipeline``; only the sink differs (``StoreSink`` writes the video's
HDF5 file instead of JSONL). So training crops, flows and poses are exactly the ones the
student will later see in serving.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from vpd_stream.errors import VpdError
from vpd_stream.frame import EndOfStream, Event, Frame

from .store import CorpusStore, VideoEntry, VideoWriter

log = logging.getLogger(__name__)
CHAIN = ("tracker", "pose", "crop", "flow")


@dataclass
class PrepareSettings:
    """What every worker needs to prepare a video the same way (picklable)."""

    fps: float | None = 25.0  # target rate; None keeps the source rate
    device: str = "cpu"
    engine: str = "onnxruntime"
    config_path: str | None = None  # TOML whose [plugins.*] tables configure the chain
    max_frames: int | None = None  # stop each video after this many frames (smoke runs)
    threads: int = 1  # torch / OpenCV threads per worker process
    # "module:function" returning the plugin list, instead of the standard chain: for a
    # custom chain (it must still provide tracks, crop and flow) and for tests.
    chain_factory: str | None = None


class StoreSink:
    """A pipeline sink that writes every (frame, athlete) row of one stream to the store."""

    def __init__(self, store: CorpusStore, name: str, source: str, attrs: dict[str, Any],
                 on_frame: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.name = name
        self.source = source
        self.attrs = dict(attrs)
        self.on_frame = on_frame
        self.writer: VideoWriter | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None

    def _open(self, frame: Frame) -> VideoWriter:
        attrs = dict(self.attrs, name=self.name, source=self.source,
                     fps=float(frame.target_fps or frame.source_fps or 0.0),
                     source_fps=float(frame.source_fps or 0.0), width=frame.width, height=frame.height)
        return VideoWriter(self.store.video_path(self.name), attrs)

    def write_frame(self, frame: Frame, plugins: list) -> None:
        if self.writer is None:
            self.writer = self._open(frame)
        self.writer.add_frame(frame.index, frame.pts, frame.source_index)
        ann = frame.annotations
        tracks = ann.get("tracks") or {}
        poses = ann.get("pose") or {}
        flows = ann.get("flow") or {}
        for track_id in sorted(ann.get("crop") or {}):
            crop = ann["crop"][track_id]
            flow = flows.get(track_id)
            if flow is None:
                continue
            track = tracks.get(track_id)
            pose = poses.get(track_id)
            self.writer.add_row(
                frame=frame.index, pts=frame.pts, track_id=int(track_id), crop=crop.rgb, flow=flow,
                box=track.box if track is not None else crop.box, crop_box=crop.box,
                keypoints=None if pose is None else pose.keypoints,
                pose=None if pose is None else pose.features,
                pose_score=0.0 if pose is None else float(pose.mean_score))
        if self.on_frame is not None:
            self.on_frame(1)

    def write_event(self, event: Event) -> None:
        pass

    def end_stream(self, eos: EndOfStream) -> None:
        if eos.error:
            self.error = eos.error
            self._abort()
            return
        if self.writer is None:
            self.error = "no frame could be decoded"
            return
        self.result = self.writer.commit()
        self.writer = None

    def _abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def close(self) -> None:
        self._abort()  # anything not committed by now is incomplete: leave no file


def chain_config(settings: PrepareSettings):
    """The configuration of ``vpd-stream run`` (``settings.config_path``), narrowed to the
    tracker → pose → crop → flow chain at the settings' rate, device and engine."""
    from vpd_stream.config import load_config

    config = load_config(settings.config_path)
    config.pipeline.chain = list(CHAIN)
    config.pipeline.fps = settings.fps
    config.pipeline.device = settings.device
    config.pipeline.engine = settings.engine
    return config


def build_chain(settings: PrepareSettings, config=None) -> list:
    """The tracker → pose → crop → flow plugins, configured as ``vpd-stream run`` would."""
    from vpd_stream.runner import build_plugins

    if settings.chain_factory:
        import importlib

        module, _, attr = settings.chain_factory.partition(":")
        return list(getattr(importlib.import_module(module), attr)())
    return build_plugins(config if config is not None else chain_config(settings))


def plugin_options(plugins: list) -> dict[str, Any]:
    return {p.name: dataclasses.asdict(p.options) if dataclasses.is_dataclass(p.options) else {}
            for p in plugins}


def prepare_video(source: str, name: str, store_root: str, settings: PrepareSettings,
                  on_frame: Callable[[int], None] | None = None) -> VideoEntry:
    """Prepare one video; never raises for a bad video — the entry says what failed."""
    from vpd_stream.runner import build_pipeline

    store = CorpusStore(store_root)
    try:
        config = chain_config(settings)
        plugins = build_chain(settings, config)
    except VpdError as exc:
        return VideoEntry(name, source, "failed", error=str(exc))
    attrs = {"teacher": "pose2d", "chain": [p.name for p in plugins], "options": plugin_options(plugins),
             "max_frames": settings.max_frames if settings.max_frames is not None else -1}
    sink = StoreSink(store, name, source, attrs, on_frame)
    try:  # the source is checked before the sink can write anything
        pipeline = build_pipeline(config, [source], [sink], max_frames=settings.max_frames, plugins=plugins,
                                  names=[name])
    except VpdError as exc:
        return VideoEntry(name, source, "failed", error=str(exc))
    try:
        summary = pipeline.run()
    except VpdError as exc:
        sink.close()
        return VideoEntry(name, source, "failed", error=str(exc))
    except Exception as exc:  # one broken video must not end the corpus
        log.debug("prepare %s crashed", source, exc_info=True)
        sink.close()
        return VideoEntry(name, source, "failed", error=f"{type(exc).__name__}: {exc}")
    if sink.result is None:  # the sink commits only a stream that ended cleanly
        error = summary.error or sink.error or summary.streams[0].error
        return VideoEntry(name, source, "failed", error=error or "the stream ended without being written")
    r = sink.result
    return VideoEntry(name, source, "complete", file=f"videos/{name}.h5", frames=int(r["frames"]),
                      rows=int(r["rows"]), confident_rows=int(r["confident_rows"]))


def entry_from_store(store: CorpusStore, name: str, source: str) -> VideoEntry:
    """The manifest entry of a video already complete on disk (a resumed run)."""
    with store.open(name) as video:
        a = video.attrs()
    return VideoEntry(name, source, "complete", file=f"videos/{name}.h5", frames=int(a["frames"]),
                      rows=int(a["rows"]), confident_rows=int(a["confident_rows"]))


def expected_frames(source: str, fps: float | None, max_frames: int | None) -> int:
    """Roughly how many frames a video will give at ``fps`` (for the progress bar's ETA)."""
    import av

    try:
        with av.open(source) as container:
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
            rate = float(stream.average_rate or 0) or None
            duration = float(stream.duration * stream.time_base) if stream.duration else (
                float(container.duration) / 1e6 if container.duration else None)
    except Exception:
        return 0
    if fps is not None and duration:
        n = int(np.ceil(duration * fps))
    elif not n and duration and rate:
        n = int(duration * rate)
    return min(n, max_frames) if max_frames is not None else n
