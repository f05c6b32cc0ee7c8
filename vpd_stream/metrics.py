"""Prometheus metrics, named by convention: the ``vpd_`` prefix, base units, ``_total``.

Each pipeline owns a registry (so several pipelines in one process, as in tests, do not
collide). A stream's series are removed when the stream ends, so label values stay bounded
on a long-running server that sees feeds come and go.
"""
from __future__ import annotations

import threading
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

# The *_created timestamp series double every counter and histogram and nobody graphs them.
disable_created_metrics()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.frames_decoded = Counter("vpd_frames_decoded", "Frames decoded and emitted by a source (after resampling)", ["stream"], registry=r)
        self.frames_processed = Counter("vpd_frames_processed", "Frames that passed every stage and reached the sinks", ["stream"], registry=r)
        self.frames_dropped = Counter("vpd_frames_dropped", "Frames dropped before processing", ["stream", "reason"], registry=r)
        self.stage_duration = Histogram("vpd_stage_duration_seconds", "Time a stage spends on one batch", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_batch = Histogram("vpd_stage_batch_size", "Frames per batch a stage processed", ["stage"], buckets=BATCH_BUCKETS, registry=r)
        self.end_to_end = Histogram("vpd_end_to_end_latency_seconds", "Time from decode to sink", ["stream"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("vpd_queue_depth", "Frames waiting in a queue", ["queue"], registry=r)
        self.reconnects = Counter("vpd_source_reconnects", "Times a live source came back (delivered new frames) after an outage", ["stream"], registry=r)
        self.reconnect_attempts = Counter("vpd_source_reconnect_attempts", "Reconnection attempts of a live source (several per outage while it is down)", ["stream"], registry=r)
        self.stalls = Counter("vpd_source_stalls", "Times a live source delivered no packets for stall_timeout", ["stream"], registry=r)
        self.blocked = Gauge("vpd_source_blocked", "1 while a source waits on a full pipeline (downstream slower than decode)", ["stream"], registry=r)
        self.detections = Counter("vpd_detections", "Action detections emitted", ["stream", "label"], registry=r)
        self.engine_batch = Histogram("vpd_engine_batch_size", "Inputs per inference call", ["engine", "model"], buckets=BATCH_BUCKETS, registry=r)
        self.engine_duration = Histogram("vpd_engine_inference_seconds", "Time of one inference call", ["engine", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.engine_path = Gauge("vpd_engine_path", "1 for the inference path a model runs: backend, precision and the CPU's vector ISA (CPU dispatch)", ["model", "backend", "precision", "isa"], registry=r)
        self.streams_active = Gauge("vpd_streams_active", "Sources currently open", registry=r)
        self._labels: dict[str, set[tuple]] = {}
        self._lock = threading.Lock()
        self._server: Any = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics over HTTP on host:port (port 0 = no server)."""
        if port:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def label(self, metric, **labels):
        """``metric.labels(**labels)``, remembered so a stream's series can be removed later."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._labels.setdefault(metric._name, set()).add(key)
        return metric.labels(**labels)

    def forget_stream(self, stream: str) -> None:
        """Remove every series labelled with ``stream``."""
        metrics = [self.frames_decoded, self.frames_processed, self.frames_dropped, self.end_to_end,
                   self.reconnects, self.reconnect_attempts, self.stalls, self.blocked, self.detections]
        with self._lock:
            for metric in metrics:
                keys = self._labels.get(metric._name, set())
                for key in list(keys):
                    labels = dict(key)
                    if labels.get("stream") == stream:
                        try:
                            metric.remove(*[labels[n] for n in metric._labelnames])
                        except KeyError:
                            pass
                        keys.discard(key)
