"""examples/box_speed, a third-party plugin package, installed for real and run by the CLI.

The package is built and installed with pip into a temporary directory (never into the
venv), which the CLI subprocesses get on PYTHONPATH: the entry point ``box_speed`` is
found the way an installed plugin's would be. The same plugin also runs uninstalled, as
``box_speed_pkg.plugin:BoxSpeedPlugin`` with only its source directory on PYTHONPATH.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from cli_helpers import assert_clean_error, jsonl_records, run_cli
from vpd_stream.testing import figure_box, make_clip

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "box_speed"
N, SIZE, FPS = 30, (640, 360), 25.0
TRUE_SPEED = 0.6 * SIZE[0] / (N - 1) * FPS  # px/s of the generated figure's centre line


def _env(path: Path | None = None) -> dict[str, str]:
    """The environment with ``path`` first on PYTHONPATH (None: as it is), pip kept quiet."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pip-install a copy of the example into a temporary target; return the target."""
    root = tmp_path_factory.mktemp("box_speed")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    local_backend = importlib.util.find_spec("setuptools") is not None
    if local_backend:  # build with the venv's setuptools: no network needed
        cmd = [*pip, "--no-build-isolation", "--no-index", str(src)]
    else:  # pip must fetch setuptools into an isolated build environment
        cmd = [*pip, str(src)]
    result = subprocess.run(cmd, capture_output=True, timeout=300, env=_env())
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace")
        if not local_backend:
            pytest.skip(f"cannot build the example: no setuptools in this venv and pip could not fetch it "
                        f"(no network?): {err.strip().splitlines()[-1] if err.strip() else 'no output'}")
        raise AssertionError(f"pip install of the example failed:\n{err}")
    assert list(target.glob("vpd_stream_box_speed-*.dist-info/entry_points.txt")), "no entry points installed"
    return target


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", frames=N, size=SIZE, fps=FPS)


def _tracks(records):
    return [(r["frame"], t) for r in records if r["type"] == "frame" for t in r.get("tracks", [])]


def test_installed_plugin_runs_from_its_entry_point(installed, clip, tmp_path):
    listing = run_cli("plugins", env=_env(installed))
    assert listing.returncode == 0, listing.stderr.decode()
    text = listing.stdout.decode()
    assert "box_speed: speed of each tracked box" in text and "option alert_speed = None" in text

    config = tmp_path / "run.toml"
    config.write_text("[plugins.box_speed]\nalert_speed = 150.0\n")
    out, video = tmp_path / "out.jsonl", tmp_path / "annotated.mp4"
    result = run_cli("run", str(clip), "--chain", "tracker,box_speed", "--config", str(config),
                     "-o", str(out), "--annotate", str(video), "-q", env=_env(installed))
    assert result.returncode == 0, result.stderr.decode()
    records = jsonl_records(out)
    measured = [(i, t) for i, t in _tracks(records) if "speed_px_s" in t]
    assert len(measured) >= N - 6, "box_speed's fields did not reach the JSONL"
    assert all(t["is_athlete"] and t["speed_px_s"] >= 0 and len(t["velocity_px_s"]) == 2 for _, t in measured)
    # the figure walks right at TRUE_SPEED: the tracker's boxes follow it (with jitter)
    vx = np.median([t["velocity_px_s"][0] for _, t in measured])
    assert vx == pytest.approx(TRUE_SPEED, rel=0.2)
    events = [r for r in records if r["type"] == "event"]
    assert events and all(e["label"] == "fast" and e["peak_speed_px_s"] >= 150.0 for e in events)
    assert records[-1]["type"] == "end" and records[-1]["frames"] == N
    with av.open(str(video)) as container:  # the plugin's draw() ran into a real video
        assert sum(1 for _ in container.decode(video=0)) == N


def test_uninstalled_plugin_runs_as_module_colon_class(clip, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_cli("run", str(clip), "--chain", "tracker,box_speed_pkg.plugin:BoxSpeedPlugin", "-o", str(out),
                     "-q", env=_env(EXAMPLE))
    assert result.returncode == 0, result.stderr.decode()
    measured = [t for _, t in _tracks(jsonl_records(out)) if "speed_px_s" in t]
    assert len(measured) >= 6
    frame, first = next((i, t) for i, t in _tracks(jsonl_records(out)) if "speed_px_s" in t)
    truth = figure_box(frame, N, SIZE)
    assert first["box"][0] < (truth[0] + truth[2]) / 2 < first["box"][2]  # it measured the figure's track


def test_bad_option_is_one_clear_error(installed, clip, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[plugins.box_speed]\npoint = \"head\"\n")
    result = run_cli("run", str(clip), "--chain", "tracker,box_speed", "--config", str(config), env=_env(installed))
    line = assert_clean_error(result, "[plugins.box_speed] point must be 'centre' or 'feet'")
    assert result.returncode == 2, line


def test_the_examples_own_tests_pass(installed, monkeypatch):
    """The package's tests (what docs/plugins.md shows an author writing), run here on the
    installed copy; each takes no fixtures, so they are called as they are."""
    monkeypatch.syspath_prepend(str(installed))
    spec = importlib.util.spec_from_file_location("box_speed_own_tests", EXAMPLE / "tests" / "test_box_speed.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        assert Path(sys.modules["box_speed_pkg"].__file__).is_relative_to(installed)  # the installed copy
        tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
        assert len(tests) == 4
        for test in tests:
            test()
    finally:
        for name in [m for m in sys.modules if m == "box_speed_pkg" or m.startswith("box_speed_pkg.")]:
            del sys.modules[name]
