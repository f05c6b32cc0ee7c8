"""The pipeline runner: sources → stages (threads, bounded queues, batches) → sinks.

Every source has a decoder thread feeding its own lane of the ingest queue (files block
when it is full; live feeds drop their oldest frame). Each plugin runs in one thread that
takes batches of up to ``plugin.batch_size`` frames from its input queue (across streams)
and passes them on in order. The last thread writes to the sinks. Streams end with an
EndOfStream marker that flows through every stage, so plugins flush per stream.

Every core busy: a plugin whose ``process`` depends on nothing but the frames it is given
(no state across frames; it says so with ``parallel_safe = True``: pose, flow, student)
runs as ``stage_workers`` replicas (``[pipeline] stage_workers``; None here = one per core,
at most 4; the configuration's default is 1, see BENCHMARKS.md), each its own plugin
instance in its own thread. Their heavy work (mediapipe, OpenCV, onnxruntime, torch) runs
outside the GIL, so replicas of the slowest stateless stage use the cores the pipelined
stages leave idle. Batches are numbered as they leave the input queue and passed on in
that order, so the output is the same as with one worker, frame for frame. Replicas were
slower on the issue-16 clips (the tracker, not pose, bounded the chain): what keeps both
cores busy by default are the model pools inside the tracker and pose stages
(plugins/model_pool.py: the regions of a detection pass, the athletes of a batch side by
side), which change nothing here.
"""
from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import VpdError
from .frame import EndOfStream, Frame
from .metrics import Metrics
from .plugin import Plugin, PluginContext, validate_chain, with_prefix
from .queues import LANE_BYTES, FrameQueue
from .sources import VideoSource, redact_url

log = logging.getLogger(__name__)


@dataclass
class StreamSummary:
    stream_id: str
    spec: str
    kind: str
    decoded: int = 0
    processed: int = 0
    dropped: int = 0
    reconnects: int = 0
    stalls: int = 0
    events: int = 0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)  # reset when the stream starts decoding
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


@dataclass
class RunSummary:
    streams: list[StreamSummary]
    seconds: float
    interrupted: bool = False
    error: str | None = None  # a pipeline-wide failure (a plugin raised)
    notes: list[str] = field(default_factory=list)  # plugins' summary_lines(): e.g. which CPU path ran

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.error is None for s in self.streams)


class Pipeline:
    def __init__(
        self,
        sources: list[VideoSource],
        plugins: list[Plugin],
        sinks: list[Any],
        metrics: Metrics | None = None,
        context: PluginContext | None = None,
        queue_size: int = 32,
        stall_timeout: float = 5.0,
        stage_workers: int | None = None,
        queue_bytes: int | None = LANE_BYTES,
    ) -> None:
        validate_chain(plugins)
        self.sources = sources
        self.plugins = plugins
        self.sinks = sinks
        self.metrics = metrics or Metrics()
        self.context = context or PluginContext(metrics=self.metrics)
        if self.context.metrics is None:
            self.context.metrics = self.metrics
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes  # pixels per lane of each queue (None: frames only)
        self.stall_timeout = stall_timeout
        # Replicas per parallel-safe stage: one per core (at most 4), 1 = every stage single.
        self.stage_workers = max(1, stage_workers if stage_workers is not None else min(os.cpu_count() or 1, 4))
        self._replicas: list[Plugin] = []  # extra instances of parallel-safe plugins, closed with the run
        self.stop_event = threading.Event()  # sources stop reading; the stages drain
        self._abort = threading.Event()  # something failed: stop everything now
        self.summaries = {s.stream_id: StreamSummary(s.stream_id, s.spec, s.kind) for s in sources}
        self._error: str | None = None
        self._queues: list[FrameQueue] = []
        self._open_streams = len(sources)
        self._sink_series: dict[str, tuple] = {}
        self._lock = threading.Lock()
        self._release_after: int | None = None  # set in run(): see pixel_release_stage

    # -- public -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading sources; frames already decoded still flow through and are written."""
        self.stop_event.set()

    def run(self) -> RunSummary:
        started = time.monotonic()
        for plugin in self.plugins:
            self._setup(plugin)  # models load here, before the first frame is decoded
        self._release_after = pixel_release_stage(self.plugins, self.sinks)
        m = self.metrics
        self._queues = [FrameQueue(self.queue_size, self._depth_setter("ingest"), self.queue_bytes)]
        for plugin in self.plugins:
            self._queues.append(FrameQueue(self.queue_size, self._depth_setter(plugin.name), self.queue_bytes))
        threads = [threading.Thread(target=self._source_loop, args=(s,), name=f"source:{s.stream_id}", daemon=True)
                   for s in self.sources]
        for i, plugin in enumerate(self.plugins):
            workers = self.stage_workers if getattr(plugin, "parallel_safe", False) else 1
            if workers == 1:
                threads.append(threading.Thread(target=self._stage_loop, args=(i, plugin), name=f"stage:{plugin.name}",
                                                daemon=True))
                continue
            stage = _ParallelStage(self, i, [plugin, *self._replicate(plugin, workers - 1)])
            threads += [threading.Thread(target=stage.worker, args=(k,), name=f"stage:{plugin.name}#{k}", daemon=True)
                        for k in range(workers)]
        sink_thread = threading.Thread(target=self._sink_loop, name="sinks", daemon=True)
        watchdog = threading.Thread(target=self._watchdog, name="watchdog", daemon=True)
        m.streams_active.set(len(self.sources))
        for t in threads:
            t.start()
        sink_thread.start()
        watchdog.start()
        try:
            while sink_thread.is_alive():
                sink_thread.join(0.2)
        finally:
            self._abort.set()
            self.stop_event.set()
            for t in threads:
                t.join(timeout=5.0)
            for plugin in [*self.plugins, *self._replicas]:
                try:
                    plugin.close()
                except Exception as exc:  # closing must not hide the run's result
                    log.warning("plugin %s failed to close: %s", plugin.name, exc)
            for sink in self.sinks:
                sink.close()
            m.streams_active.set(0)
        notes = [line for plugin in self.plugins for line in getattr(plugin, "summary_lines", list)()]
        return RunSummary(list(self.summaries.values()), time.monotonic() - started,
                          interrupted=False, error=self._error, notes=notes)

    def _replicate(self, plugin: Plugin, count: int) -> list[Plugin]:
        """``count`` more instances of a parallel-safe plugin, set up like the first."""
        import copy

        replicas = []
        for _ in range(count):
            replica = type(plugin)(copy.deepcopy(plugin.options))
            self._setup(replica)
            replicas.append(replica)
            self._replicas.append(replica)
        return replicas

    def _setup(self, plugin: Plugin) -> None:
        """``plugin.setup``; a VpdError it raises comes back prefixed with the plugin's section."""
        try:
            plugin.setup(self.context)
        except VpdError as exc:
            raise type(exc)(with_prefix(plugin.name, str(exc))) from None

    # -- threads ------------------------------------------------------------------------

    def _source_loop(self, source: VideoSource) -> None:
        m, sid = self.metrics, source.stream_id
        summary = self.summaries[sid]
        ingest = self._queues[0]
        decoded = m.label(m.frames_decoded, stream=sid)
        dropped = m.label(m.frames_dropped, stream=sid, reason="backpressure")
        blocked = m.label(m.blocked, stream=sid)
        on_block = lambda b: blocked.set(1 if b else 0)  # noqa: E731 - made once per stream, not per frame
        eos = EndOfStream(sid)
        # The stream's rate counts from its first decode: the models' setup, shared by every
        # stream, is in the run's own seconds (a 42-frame clip read 16 fps with it, 25+ without).
        summary.started = time.monotonic()
        try:
            for frame in source.frames(self.stop_event):
                if self._abort.is_set():
                    break
                decoded.inc()
                summary.decoded += 1
                old = ingest.put(frame, lane=sid, drop_oldest=source.is_live, stop=self._abort,
                                 on_block=on_block)
                if old is not None:
                    dropped.inc()
                    summary.dropped += 1
        except VpdError as exc:
            eos.error = summary.error = str(exc)
        except Exception as exc:  # a decoder bug must end this stream, not the process
            log.debug("source %s crashed", sid, exc_info=True)
            eos.error = summary.error = f"{redact_url(source.spec)}: decoding failed unexpectedly ({type(exc).__name__}: {exc})"
        finally:
            summary.reconnects = source.status.reconnects
            eos.frames = summary.decoded
            ingest.put(eos, lane=sid)

    def _stage_loop(self, index: int, plugin: Plugin) -> None:
        inbox, outbox = self._queues[index], self._queues[index + 1]
        m = self.metrics
        duration = m.stage_duration.labels(stage=plugin.name)
        batch_size = m.stage_batch.labels(stage=plugin.name)
        open_streams = len(self.sources)
        while open_streams and not self._abort.is_set():
            items = inbox.get_batch(max(1, int(plugin.batch_size)), plugin.batch_timeout)
            if not items:
                continue
            frames = [it for it in items if isinstance(it, Frame)]
            try:
                if frames:
                    self._process(index, plugin, frames, duration, batch_size)
                for it in items:
                    if isinstance(it, EndOfStream):
                        plugin.end_stream(it)
            except VpdError as exc:
                self._fail(with_prefix(plugin.name, str(exc)))
                return
            except Exception as exc:
                log.debug("plugin %s crashed", plugin.name, exc_info=True)
                self._fail(with_prefix(plugin.name, f"failed: {type(exc).__name__}: {exc}"))
                return
            for it in items:
                outbox.put(it, stop=self._abort)
                if isinstance(it, EndOfStream):
                    open_streams -= 1

    def _process(self, index: int, plugin: Plugin, frames: list[Frame], duration: Any, batch_size: Any) -> None:
        """One batch through stage ``index`` (any of its replicas), timed; then the frames let
        go of their pixels if no later stage or sink reads them."""
        t0 = time.perf_counter()
        plugin.process(frames)
        duration.observe(time.perf_counter() - t0)
        batch_size.observe(len(frames))
        if index == self._release_after:
            for frame in frames:
                frame.release_pixels()

    def _sink_loop(self) -> None:
        inbox = self._queues[-1]
        open_streams = len(self.sources)
        while open_streams and not self._abort.is_set():
            for item in inbox.get_batch(64, 0.0):
                try:
                    if isinstance(item, EndOfStream):
                        open_streams -= 1
                        self._finish_stream(item)
                        continue
                    self._write(item)
                except VpdError as exc:
                    self._fail(str(exc))
                    return
                except BrokenPipeError:  # `... -o - | head`: the reader has had enough
                    self.stop_event.set()
                    self._abort.set()
                    return
                except OSError as exc:
                    self._fail(f"cannot write output: {exc}")
                    return

    def _write(self, frame: Frame) -> None:
        m, sid = self.metrics, frame.stream_id
        summary = self.summaries[sid]
        for sink in self.sinks:
            sink.write_frame(frame, self.plugins)
        for event in frame.events:
            self._emit(event)
        summary.processed += 1
        series = self._sink_series.get(sid)
        if series is None:  # look the labelled series up once per stream, not per frame
            series = self._sink_series[sid] = (m.label(m.frames_processed, stream=sid),
                                               m.label(m.end_to_end, stream=sid))
        series[0].inc()
        series[1].observe(time.monotonic() - frame.decoded_at)

    def _emit(self, event) -> None:
        m = self.metrics
        self.summaries[event.stream_id].events += 1
        m.label(m.detections, stream=event.stream_id, label=event.label).inc()
        for sink in self.sinks:
            sink.write_event(event)

    def _finish_stream(self, eos: EndOfStream) -> None:
        for event in eos.events:
            self._emit(event)
        for sink in self.sinks:
            sink.end_stream(eos)
        summary = self.summaries[eos.stream_id]
        summary.finished = time.monotonic()
        source = next(s for s in self.sources if s.stream_id == eos.stream_id)
        summary.stalls = source.status.stalls
        summary.reconnects = source.status.reconnects
        with self._lock:
            self._open_streams -= 1
            self.metrics.streams_active.set(self._open_streams)
        self._sink_series.pop(eos.stream_id, None)
        self.metrics.forget_stream(eos.stream_id)

    def _watchdog(self) -> None:
        """Tell a stalled source (no packets) from a blocked pipeline (downstream full)."""
        m = self.metrics
        while not self._abort.is_set():
            now = time.monotonic()
            for source in self.sources:
                st = source.status
                if not source.is_live or not st.connected or st.stalled:
                    continue
                if now - st.last_packet > self.stall_timeout:
                    st.stalled = True
                    st.stalls += 1
                    m.label(m.stalls, stream=source.stream_id).inc()
                    log.warning("%s: stalled: no packets for %.1f s", source.stream_id, now - st.last_packet)
            self._abort.wait(0.25)

    def _fail(self, message: str) -> None:
        with self._lock:
            if self._error is None:
                self._error = message
        self._abort.set()
        self.stop_event.set()

    def _depth_setter(self, name: str):
        gauge = self.metrics.queue_depth.labels(queue=name)
        return gauge.set


def pixel_release_stage(plugins: list[Plugin], sinks: list[Any]) -> int | None:
    """The stage after which frames can let go of their pixels, or None (keep them).

    That is the last plugin that reads ``frame.rgb`` — any plugin that does not say
    ``reads_pixels = False`` — provided every sink says ``reads_pixels = False`` too (the
    annotated video draws on the pixels; an unknown sink might)."""
    if any(getattr(sink, "reads_pixels", True) for sink in sinks):
        return None
    readers = [i for i, plugin in enumerate(plugins) if getattr(plugin, "reads_pixels", True)]
    return readers[-1] if readers else None


class _ParallelStage:
    """One stage run by several plugin instances: batches numbered as taken, passed on in order."""

    def __init__(self, pipeline: Pipeline, index: int, plugins: list[Plugin]) -> None:
        self.pipeline = pipeline
        self.index = index
        self.inbox, self.outbox = pipeline._queues[index], pipeline._queues[index + 1]
        self.plugins = plugins
        m = pipeline.metrics
        self.duration = m.stage_duration.labels(stage=plugins[0].name)
        self.batch_size = m.stage_batch.labels(stage=plugins[0].name)
        self.open_streams = len(pipeline.sources)
        self._take = threading.Lock()  # taking a batch and numbering it is one step
        self._emit = threading.Condition()
        self._ticket = 0
        self._next = 0  # the next ticket to pass on
        self._done: list[tuple[int, list]] = []  # (ticket, items) finished out of order
        self.finished = threading.Event()

    def worker(self, k: int) -> None:
        plugin, p = self.plugins[k], self.pipeline
        name = self.plugins[0].name
        while not self.finished.is_set() and not p._abort.is_set():
            with self._take:
                if self.finished.is_set():
                    return
                items = self.inbox.get_batch(max(1, int(plugin.batch_size)), plugin.batch_timeout)
                if not items:
                    continue
                ticket = self._ticket
                self._ticket += 1
                if any(isinstance(it, EndOfStream) for it in items):
                    # End of a stream: the other workers must finish what came before it.
                    self._wait_for(ticket)
            frames = [it for it in items if isinstance(it, Frame)]
            try:
                if frames:
                    p._process(self.index, plugin, frames, self.duration, self.batch_size)
            except VpdError as exc:
                p._fail(with_prefix(name, str(exc)))
                return
            except Exception as exc:
                log.debug("plugin %s crashed", name, exc_info=True)
                p._fail(with_prefix(name, f"failed: {type(exc).__name__}: {exc}"))
                return
            self._pass_on(ticket, items)

    def _wait_for(self, ticket: int) -> None:
        with self._emit:
            while self._next < ticket and not self.pipeline._abort.is_set():
                self._emit.wait(0.1)

    def _pass_on(self, ticket: int, items: list) -> None:
        with self._emit:
            heapq.heappush(self._done, (ticket, items))
            while self._done and self._done[0][0] == self._next:
                _, ready = heapq.heappop(self._done)
                for it in ready:
                    if isinstance(it, EndOfStream):
                        try:
                            self.plugins[0].end_stream(it)
                        except Exception as exc:  # noqa: BLE001 - as _stage_loop
                            self.pipeline._fail(with_prefix(self.plugins[0].name, f"failed: {type(exc).__name__}: {exc}"))
                    self.outbox.put(it, stop=self.pipeline._abort)
                    if isinstance(it, EndOfStream):
                        self.open_streams -= 1
                self._next += 1
                self._emit.notify_all()
            if self.open_streams <= 0:
                self.finished.set()
