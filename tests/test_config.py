"""TOML configuration: defaults, validation, errors that name the key and line."""
import pytest

from vpd_stream.config import Config, load_config
from vpd_stream.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_no_config_gives_defaults():
    config = load_config(None)
    assert isinstance(config, Config)
    assert config.pipeline.fps == 25.0 and config.pipeline.chain[:2] == ["tracker", "pose"]


def test_valid_config(tmp_path):
    config = load_config(write(tmp_path, """
[pipeline]
chain = ["framerecord"]
fps = "none"
queue_size = 8
[source]
reconnect_attempts = -1
[plugins.framerecord]
"""))
    assert config.pipeline.fps is None
    assert config.pipeline.queue_size == 8
    assert config.source.reconnect_attempts == -1
    assert config.plugins == {"framerecord": {}}


def test_unknown_key_names_key_and_line(tmp_path):
    path = write(tmp_path, "[pipeline]\nchain = ['framerecord']\nqueue_sise = 3\n")
    with pytest.raises(ConfigError, match=r"c\.toml:3: unknown key 'queue_sise' in \[pipeline\]"):
        load_config(path)


def test_wrong_type_names_key_and_line(tmp_path):
    path = write(tmp_path, "[source]\n\nopen_timeout = 'soon'\n")
    with pytest.raises(ConfigError, match=r"c\.toml:3: \[source\] open_timeout must be a number"):
        load_config(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.toml:1: unknown section \[pipline\]"):
        load_config(write(tmp_path, "[pipline]\nfps = 3\n"))


def test_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[pipeline\nfps = \n"))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
