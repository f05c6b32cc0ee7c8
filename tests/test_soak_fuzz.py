"""Long runs (marked slow): a feed cut 100 times; 200 mutated and truncated clips."""
import json
import random
import signal
import subprocess
import time

import pytest

from clips import make_clip, make_ts_bytes
from cli_helpers import CLI, run_cli
from live_feed import LiveFeedServer

pytestmark = pytest.mark.slow


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def test_soak_feed_cut_100_times(tmp_path, capsys):
    data = make_ts_bytes(fps=25, frames=1500, size=(320, 240), gop=5)  # 60 s, looped
    config = tmp_path / "c.toml"
    config.write_text("[source]\nreconnect_attempts = -1\nbackoff_initial = 0.02\nbackoff_max = 0.05\n"
                      "open_timeout = 3\nread_timeout = 3\n")
    out = tmp_path / "out.jsonl"
    with LiveFeedServer(data, duration=60.0, cut_after=1.0) as feed:
        proc = subprocess.Popen([*CLI, "run", "--chain", "framerecord", feed.url, "--config", str(config), "-o", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        baseline = None
        deadline = time.monotonic() + 400
        while feed.connections <= 100 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if baseline is None and feed.connections >= 5:
                baseline = rss_mb(proc.pid)  # after imports, first connections and warm-up
        assert proc.poll() is None, proc.communicate()[1].decode()
        final = rss_mb(proc.pid)
        cuts = feed.connections - 1
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert cuts >= 100
    records = [json.loads(line) for line in out.read_text().splitlines()]
    frames = [r for r in records if r["type"] == "frame"]
    summary = [line for line in err.splitlines() if "frames processed" in line][0]
    processed, decoded = map(int, summary.split(":")[1].split()[0].split("/"))
    assert processed == decoded == len(frames)  # a record for every decoded frame
    assert len(frames) > 500
    growth = final - baseline
    with capsys.disabled():
        print(f"\nsoak: {cuts} cuts, {len(frames)} frames, RSS {baseline:.1f} → {final:.1f} MB "
              f"(+{growth:.1f} MB)")
    assert growth < 50


def test_fuzz_200_mutated_clips(tmp_path):
    rng = random.Random(1234)
    seeds = [make_clip(tmp_path / "a.mp4", frames=40).read_bytes(),
             make_clip(tmp_path / "b.mkv", codec="libvpx-vp9", frames=40).read_bytes(),
             make_clip(tmp_path / "c.ts", frames=40, container_format="mpegts").read_bytes(),
             make_clip(tmp_path / "d.avi", codec="mpeg4", frames=40).read_bytes()]
    outcomes = {"frames": 0, "clean error": 0}
    for i in range(200):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 20)):  # flip random bytes
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.5:  # truncate at a random byte
            data = data[: rng.randrange(1, len(data))]
        path = tmp_path / f"fuzz{i}{rng.choice(['.mp4', '.mkv', '.ts', '.avi'])}"
        path.write_bytes(bytes(data))
        result = run_cli("run", "--chain", "framerecord", str(path), "-o", str(tmp_path / "o.jsonl"), "-q", timeout=30)
        err = result.stderr.decode()
        assert "Traceback" not in err and "internal error" not in err, (path, err)
        for line in (tmp_path / "o.jsonl").read_text().splitlines() if (tmp_path / "o.jsonl").exists() else []:
            json.loads(line)
        if result.returncode == 0:
            outcomes["frames"] += 1
        else:
            assert err.startswith("error: "), (path, err)
            outcomes["clean error"] += 1
        (tmp_path / "o.jsonl").unlink(missing_ok=True)
        path.unlink()
    print(outcomes)
    assert outcomes["frames"] > 0 and outcomes["clean error"] > 0
