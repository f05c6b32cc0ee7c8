"""Test helpers for plugin authors: generated clips, in-memory frames, one-call chain runs.

Everything here runs the real thing: ``make_clip`` encodes a real video with PyAV,
``run_chain`` pushes frames through the real ``Pipeline`` (threads, queues, batches,
``setup`` → ``process`` → ``end_stream`` → ``close``) from an in-memory source, and the
records it returns are the lines the real JSONL sink wrote. A plugin is therefore tested
exactly as ``vpd-stream run`` would run it, without a video file::

    from vpd_stream.testing import make_frames, run_chain

    run = run_chain(["tracker", MyPlugin()], make_frames(30))
    assert all("my_field" in r for r in run.records if r["type"] == "frame")

The generated picture is a stick figure with a face walking across a green court, plus a
bouncing ball: the built-in tracker (BlazePose person detector) finds the figure, and
``figure_box`` gives its true box, so a plugin that needs ``tracks`` can be checked
against known motion. Only ``vpd_stream`` modules and numpy / PyAV are imported.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, cast

import numpy as np

from .config import build_dataclass
from .errors import PluginError
from .frame import EndOfStream, Event, Frame
from .plugin import Plugin, PluginContext, instantiate, load_plugin_class

__all__ = [
    "ChainFailed", "ChainRun", "Given", "InMemorySource", "figure_box", "figure_track", "frames_from_arrays",
    "given", "load_plugins", "make_clip", "make_frames", "records", "run_chain", "synthetic_image",
]

DEFAULT_SIZE = (640, 360)  # width, height: the figure is found reliably at this size and above
_COURT = np.array([150, 190, 120], np.float32)  # RGB
_BODY = np.array([40, 40, 40], np.float32)
_SKIN = np.array([200, 160, 130], np.float32)


# -- the synthetic picture ----------------------------------------------------------------


def figure_box(index: int, frames: int, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """The walking figure's true box (x1, y1, x2, y2, float32 pixels) in frame ``index``.

    The figure's centre line walks at constant speed from 20 % to 80 % of the width over
    ``frames`` frames: ``0.6 * width / (frames - 1)`` pixels per frame; its height is
    75 % of the frame's. The box is the extent of what is drawn (arms and legs swing).
    """
    x1 = y1 = math.inf
    x2 = y2 = -math.inf
    for kind, *geometry in _figure_parts(index, frames, size):
        if kind == "disc":
            cx, cy, r, _ = geometry
            xs, ys = (cx - r, cx + r), (cy - r, cy + r)
        else:
            (px, py), (qx, qy), width, _ = geometry
            r = width / 2.0
            xs, ys = (min(px, qx) - r, max(px, qx) + r), (min(py, qy) - r, max(py, qy) + r)
        x1, x2, y1, y2 = min(x1, xs[0]), max(x2, xs[1]), min(y1, ys[0]), max(y2, ys[1])
    return np.array([x1, y1, x2, y2], np.float32)


def _figure_parts(index: int, frames: int, size: tuple[int, int]) -> list[tuple]:
    """The figure as drawing primitives, back to front: ("segment", p, q, width, colour) / ("disc", x, y, r, colour)."""
    width, height = size
    h = 0.75 * height
    top = (height - h) / 2.0
    cx = width * (0.2 + 0.6 * index / max(1, frames - 1))
    head = h / 8.0
    neck, hip, shoulder = top + 2 * head, top + 0.55 * h, top + 2 * head + h / 20.0
    swing = math.sin(index * 0.4)  # arms and legs swing in opposition, as in walking
    parts: list[tuple] = []
    for sign in (-1.0, 1.0):
        parts.append(("segment", (cx, shoulder), (cx + h / 6.0 * (sign * 0.5 + 0.2 * swing), shoulder + h / 4.0),
                      h / 18.0, _BODY))
        parts.append(("segment", (cx, hip), (cx + h / 7.0 * (sign * 0.6 - 0.15 * swing), top + h), h / 14.0, _BODY))
    parts.append(("segment", (cx, neck), (cx, hip), h / 10.0, _BODY))
    parts.append(("disc", cx, top + head, head, _SKIN))
    eye = max(1.0, head / 5.0)
    for dx in (-head / 3.0, head / 3.0):
        parts.append(("disc", cx + dx, top + head - head / 5.0, eye, np.array([20, 20, 20], np.float32)))
    parts.append(("disc", cx, top + head + head / 3.0, max(1.0, head / 6.0), np.array([120, 40, 40], np.float32)))
    return parts


def synthetic_image(index: int, frames: int = 50, size: tuple[int, int] = DEFAULT_SIZE, *,
                    figure: bool = True, ball: bool = True) -> np.ndarray:
    """Frame ``index`` of the generated scene as an H×W×3 uint8 RGB array.

    A green court with two lines, a figure walking left to right (arms and legs
    swinging, see ``figure_box``) and a white ball bouncing along the top.
    """
    width, height = size
    if width < 16 or height < 16:
        raise ValueError(f"size must be at least 16×16, got {width}×{height}")
    image = np.empty((height, width, 3), np.float32)
    image[:] = _COURT
    shade = np.linspace(0.92, 1.05, height, dtype=np.float32)[:, None, None]
    image *= shade  # a little vertical gradient, so flow and crops see texture
    for y in (int(height * 0.88), int(height * 0.95)):
        image[y: y + max(1, height // 120)] = 235.0
    if ball:
        r = max(3.0, height / 40.0)
        bx = (index * width / 37.0) % width
        by = height * (0.12 + 0.06 * abs(math.sin(index * 0.35)))
        _disc(image, bx, by, r, np.array([245, 245, 235], np.float32))
    if figure:
        _draw_figure(image, index, frames, size)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _draw_figure(image: np.ndarray, index: int, frames: int, size: tuple[int, int]) -> None:
    for kind, *geometry in _figure_parts(index, frames, size):
        (_disc if kind == "disc" else _segment)(image, *geometry)


def _paint(image: np.ndarray, x1: float, y1: float, x2: float, y2: float, coverage, color: np.ndarray) -> None:
    """Blend ``color`` into the box region with the per-pixel coverage ``coverage(xx, yy)``."""
    h, w = image.shape[:2]
    ix1, iy1 = max(0, int(math.floor(x1))), max(0, int(math.floor(y1)))
    ix2, iy2 = min(w, int(math.ceil(x2)) + 1), min(h, int(math.ceil(y2)) + 1)
    if ix2 <= ix1 or iy2 <= iy1:
        return
    yy, xx = np.mgrid[iy1:iy2, ix1:ix2].astype(np.float32)
    alpha = coverage(xx + 0.5, yy + 0.5)[..., None]
    region = image[iy1:iy2, ix1:ix2]
    region += alpha * (color - region)


def _disc(image: np.ndarray, cx: float, cy: float, r: float, color: np.ndarray) -> None:
    _paint(image, cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1,
           lambda xx, yy: np.clip(r + 0.5 - np.hypot(xx - cx, yy - cy), 0.0, 1.0), color)


def _segment(image: np.ndarray, p: tuple[float, float], q: tuple[float, float], width: float,
             color: np.ndarray) -> None:
    """A thick line with round caps (distance to the segment ≤ width / 2), anti-aliased."""
    (px, py), (qx, qy), r = p, q, width / 2.0
    dx, dy = qx - px, qy - py
    length2 = max(dx * dx + dy * dy, 1e-9)

    def coverage(xx, yy):
        t = np.clip(((xx - px) * dx + (yy - py) * dy) / length2, 0.0, 1.0)
        return np.clip(r + 0.5 - np.hypot(xx - (px + t * dx), yy - (py + t * dy)), 0.0, 1.0)

    _paint(image, min(px, qx) - r - 1, min(py, qy) - r - 1, max(px, qx) + r + 1, max(py, qy) + r + 1,
           coverage, color)


# -- clips and frames ------------------------------------------------------------------------


def make_clip(path: str | Path, frames: int = 50, size: tuple[int, int] = DEFAULT_SIZE, fps: float = 25.0,
              codec: str = "libx264", *, gop: int = 10, figure: bool = True, ball: bool = True) -> Path:
    """Encode ``frames`` frames of the generated scene into a real video file at ``path``.

    The container follows the extension (.mp4, .mkv, .avi, .ts, .webm ...); ``codec`` is
    any FFmpeg encoder PyAV has (libx264, mpeg4, libvpx-vp9, ...). Returns the path.
    """
    import av

    width, height = size
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if width % 2 or height % 2:
        raise ValueError(f"size must be even for yuv420p video, got {width}×{height}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"libx264": {"preset": "ultrafast", "crf": "18"},
               "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}.get(codec)
    with av.open(str(path), mode="w") as container:
        encode_video(container, (synthetic_image(i, frames, size, figure=figure, ball=ball) for i in range(frames)),
                     fps, size, codec, gop=gop, options=options)
    return path


def encode_video(container: Any, images: Iterable[np.ndarray], fps: float, size: tuple[int, int],
                 codec: str = "libx264", *, gop: int = 10, options: Mapping[str, str] | None = None,
                 times: Sequence[float] | None = None) -> None:
    """Encode H×W×3 uint8 RGB ``images`` as a yuv420p video stream of an open PyAV output
    ``container`` and flush the encoder.

    Frame i is stamped i / fps, or ``times[i]`` seconds (millisecond time base) when given.
    ``options`` are the encoder's (FFmpeg private options).
    """
    import av

    rate = Fraction(fps).limit_denominator(1001)
    stream: Any = container.add_stream(codec, rate=rate)  # a VideoStream
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.gop_size = gop
    if options is not None:
        stream.options = dict(options)
    time_base = Fraction(1, 1000) if times else 1 / rate
    stream.codec_context.time_base = time_base
    for i, image in enumerate(images):
        picture = av.VideoFrame.from_ndarray(image, format="rgb24")
        picture.pts = int(round(times[i] * 1000)) if times else i
        picture.time_base = time_base
        for packet in stream.encode(picture):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def frames_from_arrays(arrays: Iterable[np.ndarray], *, fps: float | None = 25.0, stream_id: str = "test",
                       start_index: int = 0, start_pts: float = 0.0) -> list[Frame]:
    """Frames as a source would emit them: indices, pts = index / fps, ``prev_rgb`` linked.

    Each array is H×W×3 uint8 RGB. ``fps=None`` stamps 25 fps times but leaves the
    frames' ``target_fps`` / ``source_fps`` unset, as ``--fps none`` does for the target.
    """
    rate = fps or 25.0
    frames: list[Frame] = []
    previous: np.ndarray | None = None
    for i, array in enumerate(arrays):
        rgb = np.asarray(array)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"frame {i}: expected an H×W×3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
        index = start_index + i
        frames.append(Frame(stream_id=stream_id, index=index, pts=start_pts + i / rate, rgb=rgb,
                            source_index=index, source_fps=fps, target_fps=fps, prev_rgb=previous, prev_step=1))
        previous = rgb
    return frames


def make_frames(n: int = 25, size: tuple[int, int] = DEFAULT_SIZE, *, fps: float | None = 25.0,
                stream_id: str = "test", figure: bool = True, ball: bool = True) -> list[Frame]:
    """``n`` frames of the generated scene (see ``synthetic_image``), in memory, no codec."""
    return frames_from_arrays((synthetic_image(i, n, size, figure=figure, ball=ball) for i in range(n)),
                              fps=fps, stream_id=stream_id)


def figure_track(frames: int, size: tuple[int, int] = DEFAULT_SIZE, track_id: int = 1):
    """A ``given(tracks=...)`` value: the walking figure as the athlete's ``Track`` per frame.

    The box is the figure's standing box: centred on its centre line (which moves at
    exactly ``0.6 * width / (frames - 1)`` px per frame), as wide as the arms' reach and
    as tall as the figure, so its centre moves at constant speed although the limbs swing.
    For testing a plugin that needs ``tracks`` against exact motion, without the tracker.
    """
    from .annotations import Track

    width, height = size
    h = 0.75 * height
    top = (height - h) / 2.0

    def tracks(frame: Frame) -> dict[int, Track]:
        cx = width * (0.2 + 0.6 * frame.index / max(1, frames - 1))
        box = np.array([cx - h / 5.0, top, cx + h / 5.0, top + h], np.float32)
        return {track_id: Track(track_id=track_id, box=box, score=1.0, is_athlete=True, age=frame.index)}

    return tracks


class Given(Plugin):
    """A stage that sets annotations you give it, so a plugin can be tested without the
    stages (and models) that would normally provide its inputs.

    Build it with ``given(key=value, ...)``: each value is a callable ``f(frame)`` returning
    the annotation, a list (or tuple) indexed by ``frame.index`` (frames past its end are
    left without the key), or any other value (a dict of tracks, say), set on every frame
    as it is. It provides those keys, so the plugin under test may require them.
    """

    name = "given"
    description = "sets the annotations a test gives it (vpd_stream.testing)"
    batch_size = 64

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        super().__init__(None)
        self.values = dict(values or {})
        self.provides = tuple(self.values)  # type: ignore[misc]  # an instance narrows its class's keys

    def process(self, batch: list[Frame]) -> None:
        for frame in batch:
            for key, value in self.values.items():
                if callable(value):
                    frame.annotations[key] = value(frame)
                elif isinstance(value, (list, tuple)):
                    if 0 <= frame.index < len(value):
                        frame.annotations[key] = value[frame.index]
                else:
                    frame.annotations[key] = value


def given(**values: Any) -> Given:
    """``Given`` over keyword arguments: ``given(tracks=figure_track(30))``."""
    return Given(values)


# -- the in-memory source ----------------------------------------------------------------------


class InMemorySource:
    """A source over frames already in memory, with the interface ``Pipeline`` uses.

    It behaves as a file: never live, nothing dropped; ``status`` is a real
    ``SourceStatus`` so the run's summary and the watchdog read it as they read a file's.
    """

    kind = "file"
    is_live = False

    def __init__(self, frames: Sequence[Frame], stream_id: str | None = None, spec: str | None = None) -> None:
        from .sources import SourceStatus

        self._frames = list(frames)
        ids = {f.stream_id for f in self._frames}
        if stream_id is None:
            if len(ids) > 1:
                raise ValueError(f"frames of several streams ({', '.join(sorted(ids))}); give one source each")
            stream_id = ids.pop() if ids else "test"
        elif ids - {stream_id}:
            raise ValueError(f"frames of stream(s) {', '.join(sorted(ids - {stream_id}))} in source '{stream_id}'")
        self.stream_id = stream_id
        self.spec = spec or f"<memory:{stream_id}>"
        self.status = SourceStatus()
        first = self._frames[0] if self._frames else None
        if first is not None:
            self.status.width, self.status.height, self.status.fps = first.width, first.height, first.source_fps
        self.status.expected_frames = len(self._frames)

    def check(self) -> None:
        """Nothing to open."""

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        self.status.connected = True
        try:
            for frame in self._frames:
                if stop.is_set():
                    return
                self.status.last_packet = time.monotonic()
                self.status.decoded += 1
                # A fresh frame each run: the caller's frames keep their annotations as given.
                yield dataclasses.replace(frame, annotations=dict(frame.annotations), events=list(frame.events),
                                          decoded_at=time.monotonic())
        finally:
            self.status.connected = False


# -- building plugins ---------------------------------------------------------------------------


def load_plugins(plugins: Any, options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Plugin]:
    """Plugin instances from instances, classes, entry-point names or ``"package.module:Class"``.

    ``plugins`` may also be one comma-separated string (``"tracker,crop"``) or a chain
    preset name (``"vpd"``). Classes and names are built from their ``Options`` with
    ``options[name]`` (a ``[plugins.NAME]`` table as a dict; for a ``module:Class`` entry
    the spec or the class's ``name``), validated exactly as the TOML configuration is.
    """
    options = dict(options or {})
    if isinstance(plugins, (str, Plugin)) or isinstance(plugins, type):
        plugins = [plugins]
    specs: list[Any] = []
    for item in plugins:
        if isinstance(item, str):
            specs.extend(part.strip() for part in item.split(",") if part.strip())
        else:
            specs.append(item)
    if len(specs) == 1 and isinstance(specs[0], str):  # a chain preset (`vpd`) as `--chain vpd` has it
        from .plugin import available_plugins
        from .presets import expand_chain

        specs, options = expand_chain(specs, {k: dict(v) for k, v in options.items()}, set(available_plugins()))
    built: list[Plugin] = []
    used: set[str] = set()
    for item in specs:
        if isinstance(item, Plugin):
            built.append(item)
            continue
        if isinstance(item, type) and issubclass(item, Plugin):
            cls, key = item, item.name
        elif isinstance(item, str):
            cls, key = load_plugin_class(item), item
        else:
            raise PluginError(f"cannot make a plugin of {item!r}: give an instance, a Plugin class, "
                              "an entry-point name or 'package.module:Class'")
        table = options.get(key, options.get(cls.name, {}))
        used.update({key, cls.name})
        built.append(_instantiate(cls, table, key))
    unknown = sorted(set(options) - used)
    if unknown:
        raise PluginError(f"options given for plugin(s) not in the chain: {', '.join(unknown)}")
    return built


def _instantiate(cls: type[Plugin], table: Mapping[str, Any], key: str) -> Plugin:
    """As the runner builds a chain entry: options validated, then the constructor checks them."""
    section = f"plugins.{key}"
    opts = build_dataclass(cls.Options, dict(table), section)
    return instantiate(cls, opts, name=key if ":" not in key else cls.name)


# -- running a chain ---------------------------------------------------------------------------


class ChainFailed(RuntimeError):
    """A run whose pipeline reported a failure; ``__cause__`` is the plugin's own exception."""


class ChainRun(list):
    """The frames that reached the sinks, in order (a list of ``Frame``), plus what else came out.

    - ``events``: every ``Event`` the sinks received, in order (from ``frame.events`` and
      from ``eos.events`` at the end of a stream);
    - ``ends``: the ``EndOfStream`` markers, one per stream;
    - ``records``: the JSONL records the real sink wrote (frame, event and end records,
      in file order), parsed back with ``json.loads``;
    - ``plugins``: the plugin instances that ran (already closed);
    - ``summary``: the pipeline's ``RunSummary``.
    """

    events: list[Event]
    ends: list[EndOfStream]
    records: list[dict[str, Any]]
    plugins: list[Plugin]
    summary: Any

    def stream(self, stream_id: str) -> list[Frame]:
        return [f for f in self if f.stream_id == stream_id]


class _CollectSink:
    """Keeps what reaches the sinks (the frames and events themselves)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.events: list[Event] = []
        self.ends: list[EndOfStream] = []

    def write_frame(self, frame: Frame, plugins: list) -> None:
        self.frames.append(frame)

    def write_event(self, event: Event) -> None:
        self.events.append(event)

    def end_stream(self, eos: EndOfStream) -> None:
        self.ends.append(eos)

    def close(self) -> None:
        pass


class _CrashCatcher(logging.Filter):
    """Catches the exception the pipeline logs when a plugin crashes, and nothing else."""

    def __init__(self, show_debug: bool) -> None:
        super().__init__()
        self.show_debug = show_debug
        self.exceptions: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.DEBUG and record.exc_info and record.exc_info[1] is not None:
            self.exceptions.append(record.exc_info[1])
            return self.show_debug
        return record.levelno > logging.DEBUG or self.show_debug


def run_chain(plugins: Any, frames_or_arrays: Any, *, context: PluginContext | None = None,
              options: Mapping[str, Mapping[str, Any]] | None = None, fps: float | None = 25.0,
              queue_size: int = 8, max_frames: int | None = None, raise_errors: bool = True) -> ChainRun:
    """Run plugins over in-memory frames (or video files) through the real ``Pipeline``.

    ``plugins``: instances, classes, entry-point names or ``"package.module:Class"`` specs
    (or one comma-separated string), built with ``options`` as in ``load_plugins``.
    ``frames_or_arrays``: ``Frame`` objects (several ``stream_id``s make several streams,
    run side by side as several sources would be), H×W×3 uint8 RGB arrays (one stream,
    ``"test"``, stamped at ``fps``), or a video path / list of paths, decoded by the real
    ``VideoSource`` at ``fps`` (``None`` keeps the source rate) through
    ``vpd_stream.runner.build_pipeline``. The caller's frames are not modified: each run
    works on copies.

    The chain is validated first (a missing requirement raises ``PluginError``), every
    plugin's ``setup`` runs before the first frame (an error there is raised as it is),
    ``end_stream`` after each stream and ``close`` at the end (instances you pass are
    closed too). A plugin that fails makes this raise ``ChainFailed`` (its
    exception as the cause) unless ``raise_errors=False``; then read ``run.summary.error``.
    """
    from .pipeline import Pipeline
    from .sinks import JsonlSink

    built = load_plugins(plugins, options)
    collect = _CollectSink()
    with tempfile.TemporaryDirectory(prefix="vpd-testing-") as tmp:
        jsonl = Path(tmp) / "out.jsonl"
        paths = _as_paths(frames_or_arrays)
        if paths is not None:
            from .config import Config
            from .runner import build_pipeline

            config = Config()
            config.pipeline.fps, config.pipeline.queue_size = fps, queue_size
            pipeline = build_pipeline(config, paths, lambda: [collect, JsonlSink(str(jsonl))],
                                      max_frames=max_frames, plugins=built)
            if context is not None:
                context.metrics = context.metrics or pipeline.metrics
                pipeline.context = context
        else:
            frames = _as_frames(frames_or_arrays, fps)
            by_stream: dict[str, list[Frame]] = {}
            for frame in frames:
                kept = by_stream.setdefault(frame.stream_id, [])
                if max_frames is None or len(kept) < max_frames:
                    kept.append(frame)
            if not by_stream:
                raise ValueError("no frames to run")
            sources = [InMemorySource(fs, sid) for sid, fs in by_stream.items()]
            if context is None:
                context = PluginContext(target_fps=frames[0].target_fps)
            pipeline = Pipeline(cast(list, sources), built, [collect, JsonlSink(str(jsonl))], context=context,
                                queue_size=queue_size)
        try:
            summary, crashes = _run_catching(pipeline)
        finally:
            for sink in pipeline.sinks:  # the pipeline closes them, unless a setup() raised first
                sink.close()
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    run = ChainRun(collect.frames)
    run.events, run.ends, run.plugins, run.summary = collect.events, collect.ends, built, summary
    run.records = [json.loads(line) for line in lines]
    if raise_errors and not summary.ok:
        message = summary.error or "; ".join(s.error for s in summary.streams if s.error)
        raise ChainFailed(message) from (crashes[0] if crashes else None)
    return run


def _run_catching(pipeline) -> tuple[Any, list[BaseException]]:
    """``pipeline.run()``, keeping the exception of a plugin that crashed (the pipeline turns
    it into a one-line message and logs the traceback at DEBUG level only)."""
    pipeline_log = logging.getLogger("vpd_stream.pipeline")
    catcher = _CrashCatcher(show_debug=pipeline_log.isEnabledFor(logging.DEBUG))
    level = pipeline_log.level
    pipeline_log.addFilter(catcher)
    pipeline_log.setLevel(logging.DEBUG)
    try:
        summary = pipeline.run()
    finally:
        pipeline_log.setLevel(level)
        pipeline_log.removeFilter(catcher)
    return summary, catcher.exceptions


def _as_paths(items: Any) -> list[str] | None:
    if isinstance(items, (str, Path)):
        return [str(items)]
    if isinstance(items, (list, tuple)) and items and all(isinstance(i, (str, Path)) for i in items):
        return [str(i) for i in items]
    return None


def _as_frames(items: Any, fps: float | None) -> list[Frame]:
    if isinstance(items, np.ndarray) and items.ndim == 4:  # N×H×W×3
        items = list(items)
    items = list(items)
    if all(isinstance(f, Frame) for f in items):
        return items
    if any(isinstance(f, Frame) for f in items):
        raise TypeError("give either Frame objects or arrays, not both")
    return frames_from_arrays(items, fps=fps)


def records(run_or_frames: Any, plugins: Sequence[Plugin] | None = None, *, events: bool = True) -> list[dict]:
    """The JSONL records of a run (``run_chain``'s result), or of frames under ``plugins``.

    For a ``ChainRun`` these are the lines the real sink wrote, with the events and the
    end records; ``events=False`` keeps the frame records only. For plain frames it builds
    each frame's record with the sinks' own ``frame_record`` (and its events after it),
    serialised and parsed back as the JSONL sink would.
    """
    if isinstance(run_or_frames, ChainRun) and plugins is None:
        written = run_or_frames.records
        return [r for r in written if r["type"] == "frame"] if not events else list(written)
    if plugins is None:
        raise TypeError("records(frames, plugins): give the plugins that describe the frames")
    from .sinks import _default, frame_record

    out: list[dict] = []
    for frame in run_or_frames:
        out.append(frame_record(frame, list(plugins)))
        if events:
            out.extend(e.to_record() for e in frame.events)
    return [json.loads(json.dumps(r, default=_default)) for r in out]
