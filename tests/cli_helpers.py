"""Run the real CLI in a subprocess and check the house rules for errors."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "vpd_stream.cli"]


def run_cli(*args: str, input: bytes | None = None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], input=input, capture_output=True, timeout=timeout, **kwargs)


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, no traceback, exactly one 'error:' line naming the problem."""
    err = result.stderr.decode()
    assert result.returncode != 0, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def jsonl_records(path: Path) -> list[dict]:
    """Every line parses: no partial line was left behind."""
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def wait_for_output(out: Path, size: int = 2000, timeout: float = 30.0) -> None:
    """Wait until the run has written ``size`` bytes to ``out`` (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < size):
        time.sleep(0.2)
