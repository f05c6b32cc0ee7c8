"""RTSP through the real CLI against a real RTSP server on 127.0.0.1: GStreamer's
gst-rtsp-server from Debian (`make rtsp-deps` installs it; skipped with the reason where
it is not installed). The server runs under the system Python, which has python3-gi."""
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from cli_helpers import CLI, assert_clean_error, jsonl_records, run_cli
from test_live import StderrLines, wait_for_output

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
SLOW_RETRY = "[source]\nreconnect_attempts = 10\nbackoff_initial = 5\nbackoff_max = 10\nopen_timeout = 5\n"


def _gst_rtsp_missing() -> str | None:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True)
    if probe.returncode:
        return ("GStreamer's RTSP server is not installed for the system Python (`make rtsp-deps`: "
                "gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good)")
    return None


MISSING = _gst_rtsp_missing() if Path(SYSTEM_PYTHON).exists() else "no system python3"
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    def __init__(self, port: int, *args: str) -> None:
        self.port, self.args, self.proc = port, args, None

    def start(self) -> "RtspServer":
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        assert line.strip() == "ready", (line, self.proc.stderr.read(2000) if self.proc.poll() is not None else "")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def rtsp():
    servers = []

    def start(*args: str, port: int | None = None) -> RtspServer:
        server = RtspServer(port or free_port(), *args).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def test_wrong_credentials_fail_at_once_without_showing_the_password(tmp_path, rtsp):
    server = rtsp("--user", "cam", "--password", "s3cret")
    config = tmp_path / "c.toml"
    config.write_text(SLOW_RETRY)
    url = f"rtsp://cam:wrong@127.0.0.1:{server.port}/live"
    result = run_cli("run", "--chain", "framerecord", url, "--config", str(config), timeout=60)
    err = assert_clean_error(result, "access refused", "401", "cam:***@")
    assert "wrong" not in result.stderr.decode() and "reconnecting" not in result.stderr.decode(), err
    good = run_cli("run", "--chain", "framerecord", f"rtsp://cam:s3cret@127.0.0.1:{server.port}/live",
                   "--max-frames", "10", "-q", timeout=60)
    assert good.returncode == 0, good.stderr.decode()


def test_unknown_path_fails_at_once(tmp_path, rtsp):
    server = rtsp()
    config = tmp_path / "c.toml"
    config.write_text(SLOW_RETRY)
    result = run_cli("run", "--chain", "framerecord", f"rtsp://127.0.0.1:{server.port}/nothere",
                     "--config", str(config), timeout=60)
    assert_clean_error(result, "not found", "404")
    assert "reconnecting" not in result.stderr.decode()


def test_server_restart_is_one_reconnect_and_one_gap_then_sigterm_drains(tmp_path, rtsp):
    server = rtsp()
    config = tmp_path / "c.toml"
    config.write_text("[source]\nreconnect_attempts = -1\nbackoff_initial = 0.3\nbackoff_max = 0.5\n"
                      "open_timeout = 3\nread_timeout = 3\nstall_timeout = 2\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", f"rtsp://127.0.0.1:{server.port}/live",
                             "--config", str(config), "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr = StderrLines(proc)
    try:
        wait_for_output(out)
        server.kill()  # the camera goes away ...
        assert stderr.wait_for("(attempt 2 of unlimited)"), stderr.text()
        rtsp(port=server.port)  # ... and comes back on the same address
        assert stderr.wait_for("feed back after"), stderr.text()
        size = out.stat().st_size
        wait_for_output(out, size + 2000)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = stderr.text()
    assert proc.returncode == 0, err
    assert "terminated" in err and ", 1 reconnects" in err, err
    records = jsonl_records(out)
    gaps = [r for r in records if r["type"] == "gap"]
    frames = [r for r in records if r["type"] == "frame"]
    assert len(gaps) == 1 and gaps[0]["reconnect_attempts"] >= 2 and gaps[0]["lost_seconds"] > 0, gaps
    pts = [f["pts"] for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    end = records[-1]
    assert end["type"] == "end" and end["frames"] == len(frames) and "error" not in end
