"""The runner API: sources checked before sinks exist; SIGINT/SIGTERM drain, a second quits."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from clips import make_clip, make_ts_bytes
from cli_helpers import CLI, jsonl_records, wait_for_output
from live_feed import LiveFeedServer
from vpd_stream.config import Config
from vpd_stream.errors import InputError
from vpd_stream.plugin import Plugin
from vpd_stream.runner import build_pipeline, run
from vpd_stream.sinks import Sink


class SignalAt(Plugin):
    """Sends this process ``signum`` when the frames with the given indexes pass."""

    name = "signal_at"

    def __init__(self, signum: int, at: tuple[int, ...]) -> None:
        super().__init__()
        self.signum, self.at = signum, set(at)

    def process(self, batch) -> None:
        for frame in batch:
            if frame.index in self.at:
                os.kill(os.getpid(), self.signum)
                time.sleep(0.3)  # let the main thread's handler run before more frames pass


class Collect(Sink):
    def __init__(self) -> None:
        self.frames: list[int] = []
        self.ended: list[str] = []

    def write_frame(self, frame, plugins) -> None:
        self.frames.append(frame.index)

    def end_stream(self, eos) -> None:
        self.ended.append(eos.stream_id)


def config(fps: float | None = None) -> Config:
    c = Config()
    c.pipeline.chain = []
    c.pipeline.fps = fps
    return c


def test_sources_are_checked_before_any_sink_is_built(tmp_path):
    made = []
    good = make_clip(tmp_path / "a.mp4", frames=5, size=(64, 48))
    with pytest.raises(InputError, match="missing.mp4"):
        build_pipeline(config(), [str(good), str(tmp_path / "missing.mp4")], lambda: made.append(1) or [],
                       plugins=[])
    assert made == []  # nothing was opened for writing


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_drains_and_handlers_are_restored(tmp_path, signum):
    clip = make_clip(tmp_path / "a.mp4", frames=400, size=(64, 48))
    sink = Collect()
    sentinel = lambda *_: None  # noqa: E731
    before = signal.signal(signum, sentinel)
    try:
        pipeline = build_pipeline(config(), [str(clip)], [sink], plugins=[SignalAt(signum, (3,))])
        summary = run(pipeline, quiet=True)
        assert signal.getsignal(signum) is sentinel
    finally:
        signal.signal(signum, before)
    assert summary.interrupted and summary.ok
    assert sink.ended == ["a"]  # the stream still ended, with its records
    assert 4 <= len(sink.frames) < 400 and sink.frames == list(range(len(sink.frames)))  # drained, in order


def test_a_second_signal_quits_at_once(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", frames=400, size=(64, 48))
    before = signal.getsignal(signal.SIGTERM)
    pipeline = build_pipeline(config(), [str(clip)], [Collect()], plugins=[SignalAt(signal.SIGTERM, (3, 4))])
    with pytest.raises(KeyboardInterrupt):
        run(pipeline, quiet=True)
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_to_the_cli_drains_and_exits_zero(tmp_path):
    out = tmp_path / "out.jsonl"
    feed_bytes = make_ts_bytes(fps=25, frames=500, size=(160, 120), gop=5)
    with LiveFeedServer(feed_bytes, duration=20.0) as feed:
        proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", feed.url, "-o", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_output(out)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "terminated: draining" in text and "Traceback" not in text
    records = jsonl_records(out)
    assert records[-1]["type"] == "end" and sum(r["type"] == "frame" for r in records) > 0
