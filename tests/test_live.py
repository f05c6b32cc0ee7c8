"""A real local live feed (MPEG-TS over TCP), cut mid-stream; stdin; metrics over HTTP."""
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from clips import make_clip, make_ts_bytes
from cli_helpers import CLI, assert_clean_error, jsonl_records, run_cli, wait_for_output
from live_feed import LiveFeedServer

FAST_RECONNECT = """
[source]
reconnect_attempts = -1
backoff_initial = 0.05
backoff_max = 0.2
open_timeout = 3
read_timeout = 3
stall_timeout = 1
"""


@pytest.fixture(scope="module")
def ts_feed() -> bytes:
    return make_ts_bytes(fps=25, frames=750, size=(160, 120), gop=5)  # 30 s of broadcast


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_feed_cut_mid_stream_reconnects_and_metrics_show_it(tmp_path, ts_feed):
    config = tmp_path / "c.toml"
    config.write_text(FAST_RECONNECT)
    out = tmp_path / "out.jsonl"
    port = free_port()
    with LiveFeedServer(ts_feed, duration=30.0, cut_after=1.0) as feed:
        proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", feed.url, "--config", str(config), "-o", str(out),
                                 "--metrics-port", str(port), "--max-frames", "150"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        text, reconnects = "", 0.0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                text = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            reconnects = sample(text, "vpd_source_reconnects_total") or 0.0
            if reconnects >= 2:
                break
            time.sleep(0.3)
        assert reconnects >= 2, text
        stream = feed.url.replace("tcp://127.0.0.1:", "tcp-127.0.0.1-")
        assert sample(text, "vpd_frames_decoded_total", stream=stream) > 0
        assert sample(text, "vpd_frames_dropped_total", stream=stream, reason="backpressure") is not None
        assert "vpd_stage_duration_seconds_bucket" in text and "vpd_queue_depth" in text
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    records = jsonl_records(out)
    frames = [r for r in records if r["type"] == "frame"]
    assert len(frames) == 150
    pts = [r["pts"] for r in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))  # one timeline across reconnects
    assert feed.connections >= 3


def test_feed_that_dies_for_good_is_a_clear_error(tmp_path, ts_feed):
    config = tmp_path / "c.toml"
    config.write_text(FAST_RECONNECT.replace("reconnect_attempts = -1", "reconnect_attempts = 2"))
    out = tmp_path / "out.jsonl"
    with LiveFeedServer(ts_feed, duration=30.0, cut_after=1.0, max_connections=1) as feed:
        result = run_cli("run", "--chain", "framerecord", feed.url, "--config", str(config), "-o", str(out), timeout=60)
    assert_clean_error(result, feed.url)
    frames = [r for r in jsonl_records(out) if r["type"] == "frame"]
    assert len(frames) > 5  # what was received before the feed died is kept


def test_stdin_mpegts(tmp_path):
    clip = make_clip(tmp_path / "c.ts", frames=50, container_format="mpegts")
    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", "-", "-o", str(out), input=clip.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    frames = [r for r in jsonl_records(out) if r["type"] == "frame"]
    assert len(frames) == 50 and frames[0]["stream"] == "stdin" and frames[0]["pts"] == 0.0


def test_stdin_to_stdout(tmp_path):
    clip = make_clip(tmp_path / "c.mkv", frames=20)
    result = run_cli("run", "--chain", "framerecord", "-", "-o", "-", "-q", input=clip.read_bytes())
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 21 and '"type":"end"' in lines[-1]


def test_ctrl_c_drains_and_exits_zero(tmp_path, ts_feed):
    out = tmp_path / "out.jsonl"
    config = tmp_path / "c.toml"
    config.write_text(FAST_RECONNECT)
    with LiveFeedServer(ts_feed, duration=30.0) as feed:
        proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", feed.url, "-o", str(out), "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_output(out)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
    records = jsonl_records(out)
    assert records[-1]["type"] == "end"


class StderrLines:
    """Collect a child's stderr lines as they come (to act on what it says)."""

    def __init__(self, proc) -> None:
        import threading

        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode(errors="replace"))

    def wait_for(self, text: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.1)
        return False

    def text(self) -> str:
        self._thread.join(5.0)
        return "".join(self.lines)


def test_sigterm_drains_like_the_first_ctrl_c(tmp_path, ts_feed):
    out = tmp_path / "out.jsonl"
    config = tmp_path / "c.toml"
    config.write_text(FAST_RECONNECT)
    with LiveFeedServer(ts_feed, duration=30.0) as feed:
        proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", feed.url, "-o", str(out), "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_output(out)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    err = err.decode()
    assert proc.returncode == 0, err  # before: 143, no drain, no summary, no end record
    assert "terminated" in err and "frames processed" in err and "Traceback" not in err
    records = jsonl_records(out)
    frames = [r for r in records if r["type"] == "frame"]
    assert records[-1]["type"] == "end" and records[-1]["frames"] == len(frames) and "error" not in records[-1]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_during_reconnect_backoff_drains_and_exits_zero(tmp_path, ts_feed, signum):
    out = tmp_path / "out.jsonl"
    config = tmp_path / "c.toml"
    config.write_text("[source]\nreconnect_attempts = 10\nbackoff_initial = 30\nbackoff_max = 60\n"
                      "open_timeout = 3\nread_timeout = 3\n")
    with LiveFeedServer(ts_feed, duration=30.0, cut_after=1.0, max_connections=1) as feed:
        proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", feed.url, "-o", str(out), "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stderr = StderrLines(proc)
        assert stderr.wait_for("reconnecting in 30.0 s"), stderr.text()
        proc.send_signal(signum)
        proc.wait(timeout=30)
    err = stderr.text()
    # before: exit 1, "feed unreachable after 3 attempts" although 10 were configured
    assert proc.returncode == 0, err
    assert not [line for line in err.splitlines() if line.startswith("error:")], err
    records = jsonl_records(out)
    assert records[-1]["type"] == "end" and "error" not in records[-1]
    assert sum(r["type"] == "frame" for r in records) > 5


def test_an_outage_is_a_gap_record_and_reconnects_count_outages(tmp_path, ts_feed):
    out = tmp_path / "out.jsonl"
    config = tmp_path / "c.toml"
    config.write_text(FAST_RECONNECT.replace("backoff_initial = 0.05", "backoff_initial = 0.2"))
    port = free_port()
    with LiveFeedServer(ts_feed, duration=30.0) as feed:
        proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", feed.url, "-o", str(out), "--config", str(config),
                                 "--metrics-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stderr = StderrLines(proc)
        wait_for_output(out)
        feed.refusing = True  # the feed goes down ...
        feed.cut()
        assert stderr.wait_for("(attempt 3 of unlimited)"), stderr.text()
        feed.refusing = False  # ... and comes back
        assert stderr.wait_for("feed back after"), stderr.text()
        size = out.stat().st_size
        wait_for_output(out, size + 2000)
        text = scrape(port)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, stderr.text()
    stream = feed.url.replace("tcp://127.0.0.1:", "tcp-127.0.0.1-")
    assert sample(text, "vpd_source_reconnects_total", stream=stream) == 1.0  # one outage: one reconnect
    assert sample(text, "vpd_source_reconnect_attempts_total", stream=stream) >= 3.0  # several attempts
    records = jsonl_records(out)
    gaps = [r for r in records if r["type"] == "gap"]
    assert len(gaps) == 1, gaps
    gap = gaps[0]
    assert gap["lost_seconds"] > 0 and gap["reconnect_attempts"] >= 3 and gap["reason"]
    frames = [r for r in records if r["type"] == "frame"]
    after = next(i for i, r in enumerate(records) if r["type"] == "gap")
    assert records[after + 1]["type"] == "frame" and records[after + 1]["frame"] == gap["before_frame"]
    assert records[after + 1]["pts"] == gap["pts"]
    end = records[-1]
    assert end["type"] == "end" and end["frames"] == len(frames)
    assert end.get("dropped", 0) == end.get("decoded", len(frames)) - len(frames)
