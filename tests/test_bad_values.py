"""Bad option and configuration values through the real CLI: exit 2, one line naming the option.

Before issue 17: --max-frames 0/-1 processed one frame (rc 0), --fps nan "decoding failed
unexpectedly", --fps 1e9 took 25 s for 5 frames, --metrics-port 70000 an OverflowError
(rc 70), queue_size 0/-3 raised to 1 silently, negative backoff/stall/attempts accepted.
"""
import pytest

from clips import make_clip
from cli_helpers import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", frames=10)


@pytest.mark.parametrize("flag,value", [
    ("--max-frames", "0"), ("--max-frames", "-1"),
    ("--fps", "nan"), ("--fps", "inf"), ("--fps", "-inf"), ("--fps", "1e9"), ("--fps", "0"), ("--fps", "-5"),
    ("--metrics-port", "70000"), ("--metrics-port", "-1"),
])
def test_bad_flag_value_is_a_configuration_error(tmp_path, clip, flag, value):
    out = tmp_path / "o.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(clip), flag, value, "-o", str(out))
    err = assert_clean_error(result, flag)
    assert result.returncode == 2, err
    assert not out.exists()  # refused before anything was opened or written


@pytest.mark.parametrize("section,key,value", [
    ("pipeline", "queue_size", "0"), ("pipeline", "queue_size", "-3"),
    ("pipeline", "fps", "nan"), ("pipeline", "fps", "inf"), ("pipeline", "fps", "1e9"),
    ("source", "backoff_initial", "-1"), ("source", "backoff_max", "0"),
    ("source", "stall_timeout", "-5"), ("source", "open_timeout", "0"), ("source", "read_timeout", "nan"),
    ("source", "reconnect_attempts", "-7"), ("source", "live", '"sometimes"'), ("source", "threads", '"MANY"'),
    ("metrics", "port", "70000"),
])
def test_bad_config_value_names_key_and_line(tmp_path, clip, section, key, value):
    config = tmp_path / "bad.toml"
    config.write_text(f"# a comment\n[{section}]\n{key} = {value}\n")
    result = run_cli("run", "--chain", "framerecord", str(clip), "--config", str(config))
    err = assert_clean_error(result, "bad.toml:3", f"[{section}] {key}")
    assert result.returncode == 2, err


def test_backoff_max_below_backoff_initial(tmp_path, clip):
    config = tmp_path / "c.toml"
    config.write_text("[source]\nbackoff_initial = 4\nbackoff_max = 2\n")
    err = assert_clean_error(run_cli("run", "--chain", "framerecord", str(clip), "--config", str(config)),
                             "backoff_max", "backoff_initial")
    assert "c.toml:3" in err


def test_good_edge_values_still_run(tmp_path, clip):
    config = tmp_path / "c.toml"
    config.write_text("[pipeline]\nqueue_size = 1\nfps = 1000\n[source]\nreconnect_attempts = -1\n"
                      "threads = 'frame'\n")
    result = run_cli("run", "--chain", "framerecord", str(clip), "--config", str(config), "--max-frames", "1",
                     "--metrics-port", "0", "-q")
    assert result.returncode == 0, result.stderr.decode()
