"""Building and running pipelines: the one API the CLI, ``prepare``, benchmarks and tests share.

    plugins = build_plugins(config)                      # the chain, options validated
    pipeline = build_pipeline(config, ["a.mp4"], lambda: [JsonlSink("out.jsonl")])
    summary = run(pipeline)                              # Ctrl-C / SIGTERM drain, then return

``build_pipeline`` checks the chain and every source (missing, empty, not-a-video files)
before it builds the sinks, so a bad input never leaves an output file behind: pass the
sinks as a zero-argument callable when constructing one opens a file. ``run`` installs the
signal handling: the first SIGINT or SIGTERM stops reading and lets what was decoded flow
through to the sinks (end records, summary, exit 0); a second one raises
KeyboardInterrupt at once. The previous handlers are restored afterwards.

Only the core is imported here; plugins are found through their entry points.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Callable, Sequence

from .config import Config, _Locator, build_dataclass
from .errors import ConfigError
from .metrics import Metrics
from .pipeline import Pipeline, RunSummary
from .plugin import (
    Plugin,
    PluginContext,
    instantiate,
    load_plugin_class,
    validate_chain,
)
from .sources import VideoSource, stream_names

Sinks = Sequence[Any] | Callable[[], Sequence[Any]]


def build_plugins(config: Config) -> list[Plugin]:
    """The plugins of ``config.pipeline.chain``, each with its ``[plugins.NAME]`` options.

    A ``[plugins.NAME]`` table for a plugin that is not registered is an error too (a typo
    in a table name must not pass silently).
    """
    from .plugin import available_plugins
    from .presets import expand_chain

    # A one-name chain that is a preset (`--chain vpd`) stands for its chain and options.
    config.pipeline.chain, config.plugins = expand_chain(config.pipeline.chain, config.plugins,
                                                         set(available_plugins()))
    locate = _Locator(config.path or "<config>", config.text)
    known: dict[str, type[Plugin]] = {}
    for name in [*config.pipeline.chain, *config.plugins]:
        if name not in known:
            known[name] = load_plugin_class(name)
    plugins = []
    for name in config.pipeline.chain:
        cls = known[name]
        options = build_dataclass(cls.Options, config.plugins.get(name, {}), f"plugins.{name}", locate)
        plugins.append(instantiate(cls, options))
    return plugins


def build_sources(config: Config, specs: Sequence[str], *, max_frames: int | None = None,
                  names: Sequence[str] | None = None) -> list[VideoSource]:
    """One checked VideoSource per spec (stream ids from the file names unless ``names``)."""
    names = list(names) if names is not None else stream_names(list(specs))
    if len(names) != len(specs):
        raise ValueError("one name per source")
    sources = [VideoSource(spec, name, config.source, config.pipeline.fps, max_frames=max_frames)
               for spec, name in zip(specs, names)]
    if sum(s.kind == "stdin" for s in sources) > 1:
        raise ConfigError("standard input (-) can be given only once")
    for source in sources:
        source.check()  # missing, empty, not-a-video files fail here, before anything is written
    return sources


def build_pipeline(config: Config, sources: Sequence[str], sinks: Sinks, *, max_frames: int | None = None,
                   metrics: Metrics | None = None, plugins: list[Plugin] | None = None,
                   names: Sequence[str] | None = None) -> Pipeline:
    """The pipeline of ``config`` over ``sources``; the chain and the sources are checked first.

    ``plugins`` replaces ``build_plugins(config)`` (a custom chain built elsewhere);
    ``names`` sets the stream ids. ``sinks`` is a list, or a callable returning one, called
    only once every source has been checked.
    """
    if plugins is None:
        plugins = build_plugins(config)
    validate_chain(plugins)  # before any file is opened
    video_sources = build_sources(config, sources, max_frames=max_frames, names=names)
    metrics = metrics if metrics is not None else Metrics()
    p = config.pipeline
    context = PluginContext(device=p.device, engine=p.engine, target_fps=p.fps, metrics=metrics,
                            model_dir=p.model_dir)
    built_sinks = list(sinks() if callable(sinks) else sinks)
    pipeline = Pipeline(video_sources, plugins, built_sinks, metrics, context, queue_size=p.queue_size,
                        stall_timeout=config.source.stall_timeout, stage_workers=p.stage_workers or None,
                        queue_bytes=(p.queue_mb << 20) or None)
    for source in video_sources:
        source.on_reconnect = lambda sid: metrics.label(metrics.reconnects, stream=sid).inc()
        source.on_reconnect_attempt = lambda sid: metrics.label(metrics.reconnect_attempts, stream=sid).inc()
    return pipeline


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_NAMES = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


def run(pipeline: Pipeline, *, quiet: bool = False, metrics_port: int = 0, metrics_host: str = "127.0.0.1",
        echo: Callable[[str], None] | None = None) -> RunSummary:
    """Run ``pipeline`` to its end, serving its metrics on ``metrics_port`` (0: none).

    The first SIGINT or SIGTERM drains (sources stop, decoded frames are written, streams
    end with their records) and the summary comes back with ``interrupted`` set and the
    streams' "interrupted" errors cleared; a second signal raises KeyboardInterrupt. Signal
    handlers are installed only from the main thread, and always restored.
    """
    echo = echo or (lambda text: print(text, file=sys.stderr, flush=True))
    try:
        pipeline.metrics.serve(metrics_port, metrics_host)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}") from None
    interrupted = threading.Event()

    def on_signal(signum, frame):  # the first drains, a second one quits at once
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        if not quiet:
            again = "Ctrl-C" if signum == signal.SIGINT else "a second signal"
            echo(f"\n{_NAMES.get(signum, 'interrupted')}: draining queued frames ({again} again to quit now)")
        pipeline.stop()

    previous: dict[signal.Signals, Any] = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                previous[signum] = signal.signal(signum, on_signal)
        summary = pipeline.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        pipeline.metrics.shutdown()
    summary.interrupted = interrupted.is_set()
    if summary.interrupted:  # a stream cut short by a signal is not an error
        for s in summary.streams:
            if s.error and "interrupted" in s.error:
                s.error = None
    return summary
