"""http(s) sources through the real CLI against a real server on 127.0.0.1 (issue 17).

HLS segments are written by PyAV's HLS muxer and served by Python's http.server with a
playlist that advances in real time; a plain MP4 is served by the same server.
"""
import av
import pytest

from clips import _encode
from cli_helpers import assert_clean_error, jsonl_records, run_cli
from hls_server import HlsServer, write_hls

SLOW_RETRY = "[source]\nreconnect_attempts = 10\nbackoff_initial = 5\nbackoff_max = 10\nopen_timeout = 3\n"


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hls")
    segments = write_hls(directory, seconds=6.0)
    # A web MP4: index first (faststart), as http.server answers no range requests.
    with av.open(str(directory / "clip.mp4"), "w", options={"movflags": "faststart"}) as container:
        _encode(container, "libx264", 25, 250, 160, 120, 10, None)
    return directory, segments


def frames_of(path):
    return [r for r in jsonl_records(path) if r["type"] == "frame"]


def repeated_windows(values, length=25):
    """Windows of ``length`` consecutive values that occur more than once (a replay)."""
    seen, repeats = set(), 0
    for i in range(len(values) - length + 1):
        window = tuple(values[i: i + length])
        repeats += window in seen
        seen.add(window)
    return repeats


def test_live_hls_that_ends_is_read_once_and_ends_cleanly(tmp_path, hls_dir):
    directory, segments = hls_dir
    out = tmp_path / "out.jsonl"
    with HlsServer(directory, segments) as server:
        result = run_cli("run", "--chain", "framerecord", f"{server.base}/live.m3u8", "-o", str(out), timeout=90)
        playlist_fetches = sum(p == "/live.m3u8" for p in server.requests)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    frames = frames_of(out)
    published = int(sum(d for d, _ in segments) * 25)
    # Before the fix the ended playlist was reopened again and again and its segments
    # emitted as new frames (10 s published: 4,524 frames within 40 s, still going).
    assert 0 < len(frames) <= published
    assert repeated_windows([f["brightness"] for f in frames]) == 0
    pts = [f["pts"] for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    end = jsonl_records(out)[-1]
    assert end["type"] == "end" and end["frames"] == len(frames) and "error" not in end
    assert "reconnect" not in err  # the end of the broadcast is not an outage
    assert playlist_fetches < 3 * len(segments)


def test_frozen_hls_playlist_meets_the_retry_limit(tmp_path, hls_dir):
    """The publisher stops without ENDLIST: reopening replays old segments, which must
    neither be emitted again nor reset the reconnect attempts (before: 'attempt 1' forever)."""
    directory, segments = hls_dir
    config = tmp_path / "c.toml"
    config.write_text("[source]\nreconnect_attempts = 2\nbackoff_initial = 0.2\nbackoff_max = 0.5\n"
                      "open_timeout = 3\nread_timeout = 2\n")
    out = tmp_path / "out.jsonl"
    with HlsServer(directory, segments, freeze=True) as server:
        result = run_cli("run", "--chain", "framerecord", f"{server.base}/live.m3u8", "--config", str(config),
                         "-o", str(out), timeout=120)
    assert_clean_error(result, "live.m3u8", "not back after 2 reconnect attempts")
    frames = frames_of(out)
    assert 0 < len(frames) <= int(sum(d for d, _ in segments) * 25)
    assert repeated_windows([f["brightness"] for f in frames]) == 0
    assert "(attempt 2 of 2)" in result.stderr.decode()


def test_complete_hls_playlist_is_read_like_a_file(tmp_path, hls_dir):
    directory, segments = hls_dir
    out = tmp_path / "out.jsonl"
    with HlsServer(directory, segments) as server:
        result = run_cli("run", "--chain", "framerecord", f"{server.base}/vod.m3u8", "-o", str(out), timeout=90)
    assert result.returncode == 0, result.stderr.decode()
    assert len(frames_of(out)) == int(sum(d for d, _ in segments) * 25)  # every frame, from the start


def test_plain_http_mp4_is_a_file_not_a_feed(tmp_path, hls_dir):
    directory, segments = hls_dir
    out = tmp_path / "out.jsonl"
    with HlsServer(directory, segments) as server:
        result = run_cli("run", "--chain", "framerecord", f"{server.base}/clip.mp4", "-o", str(out), timeout=90)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert len(frames_of(out)) == 250  # before: "0/0 frames ... 6 reconnects [failed]"
    assert "reconnect" not in err and "dropped" not in err


def test_http_404_fails_at_once(tmp_path, hls_dir):
    directory, segments = hls_dir
    config = tmp_path / "c.toml"
    config.write_text(SLOW_RETRY)
    with HlsServer(directory, segments) as server:
        result = run_cli("run", "--chain", "framerecord", f"{server.base}/missing.m3u8", "--config", str(config),
                         timeout=60)
    err = assert_clean_error(result, "missing.m3u8", "not found", "404")
    assert result.returncode == 1 and "reconnecting" not in result.stderr.decode(), err


def test_srt_is_refused_at_once_with_what_to_do(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(SLOW_RETRY)
    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", "srt://127.0.0.1:9000", "--config", str(config),
                     "-o", str(out), timeout=60)
    err = assert_clean_error(result, "srt://", "not supported")
    assert "relay" in err and "reconnecting" not in result.stderr.decode()
    end = jsonl_records(out)[-1]
    assert end["type"] == "end" and "not supported" in end["error"]


def test_mp4_with_its_index_at_the_end_over_range_requests(tmp_path, hls_dir):
    from clips import make_clip

    directory, segments = hls_dir
    make_clip(directory / "moov_last.mp4", frames=100)  # PyAV writes the index at the end
    out = tmp_path / "out.jsonl"
    with HlsServer(directory, segments, ranges=True) as server:  # as web servers answer
        result = run_cli("run", "--chain", "framerecord", f"{server.base}/moov_last.mp4", "-o", str(out), timeout=90)
    assert result.returncode == 0, result.stderr.decode()
    assert len(frames_of(out)) == 100
