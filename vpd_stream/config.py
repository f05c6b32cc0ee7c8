"""Pipeline configuration: TOML validated into dataclasses when it is loaded.

Unknown keys and wrong types are errors that name the key, the file and (where it can be
found) the line. Every field has a default, so no configuration is needed for the demo.
"""
from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .errors import ConfigError


# The serving chain that needs no trained student: track, teacher pose, crop, flow, and the
# default swing detector and recognizer heads on the teacher's pose features.
DEFAULT_CHAIN = ["tracker", "pose", "crop", "flow", "detector", "recognizer"]


@dataclass
class PipelineConfig:
    chain: list[str] = field(default_factory=lambda: list(DEFAULT_CHAIN))
    fps: float | None = 25.0  # target rate; None ("none" in TOML/CLI) keeps the source rate
    device: str = "cpu"
    engine: str = "onnxruntime"
    queue_size: int = 32  # frames buffered per source and between stages
    queue_mb: int = 16  # ... and at most this many MiB of pixels per source in each queue (0: frames only)
    model_dir: str | None = None
    stage_workers: int = 1  # replicas of each parallel-safe stage (pose, flow); 0 = one per core (at most 4)


@dataclass
class SourceConfig:
    live: str = "auto"  # "auto" (URLs and stdin are live), "yes" or "no"
    open_timeout: float = 10.0
    read_timeout: float = 10.0
    reconnect_attempts: int = 10  # -1 = forever
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    stall_timeout: float = 5.0
    threads: str = "AUTO"  # decoder threading for files: AUTO, FRAME, SLICE or NONE


@dataclass
class OutputConfig:
    frames: bool = True  # one JSONL record per processed frame
    events: bool = True  # one JSONL record per detection
    annotate_stream: str | None = None


@dataclass
class MetricsConfig:
    port: int = 0  # 0 = no HTTP endpoint
    host: str = "127.0.0.1"


@dataclass
class Config:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)  # raw; checked per plugin
    path: str | None = None
    text: str | None = None


# -- value checks, shared by the TOML loader and the command line ----------------------

MAX_FPS = 1000.0  # beyond any camera a sports feed comes from; 1e9 would only burn CPU
LIVE_CHOICES = ("auto", "yes", "no")
THREAD_CHOICES = ("AUTO", "FRAME", "SLICE", "NONE")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_seconds(value: Any) -> str | None:
    return None if _finite(value) and value > 0 else f"must be a positive number of seconds, got {value!r}"


def _fps_problem(value: Any) -> str | None:
    if value is None:
        return None
    if _finite(value) and 0 < value <= MAX_FPS:
        return None
    return f"must be a frame rate above 0 and at most {MAX_FPS:g}, or 'none', got {value!r}"


def _int_in(low: int, high: int | None, what: str):
    def check(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high):
            return None
        upper = f" and at most {high}" if high is not None else ""
        return f"must be {what} (an integer of at least {low}{upper}), got {value!r}"
    return check


def _one_of(choices: tuple[str, ...], fold_case: bool = False):
    def check(value: Any) -> str | None:
        found = value.upper() if fold_case and isinstance(value, str) else value
        return None if found in choices else f"must be one of {', '.join(choices)}, got {value!r}"
    return check


# (section, key) -> a function returning what is wrong with a value, or None.
VALUE_CHECKS: dict[tuple[str, str], Any] = {
    ("pipeline", "fps"): _fps_problem,
    ("pipeline", "queue_size"): _int_in(1, 100_000, "a number of frames"),
    ("pipeline", "queue_mb"): _int_in(0, 1_000_000, "MiB of pixels per queue lane, 0 = count frames only"),
    ("pipeline", "stage_workers"): _int_in(0, 64, "a number of workers, 0 = one per core"),
    ("source", "live"): _one_of(LIVE_CHOICES),
    ("source", "open_timeout"): _positive_seconds,
    ("source", "read_timeout"): _positive_seconds,
    ("source", "reconnect_attempts"): _int_in(-1, None, "a number of attempts, -1 = forever"),
    ("source", "backoff_initial"): _positive_seconds,
    ("source", "backoff_max"): _positive_seconds,
    ("source", "stall_timeout"): _positive_seconds,
    ("source", "threads"): _one_of(THREAD_CHOICES, fold_case=True),
    ("metrics", "port"): _int_in(0, 65535, "a TCP port, 0 = no metrics server"),
}


def value_problem(section: str, key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``[section] key`` (None if it is fine or unchecked)."""
    check = VALUE_CHECKS.get((section, key))
    return check(value) if check else None


def check_option(flag: str, section: str, key: str, value: Any) -> None:
    """A command-line value for ``[section] key``: a ConfigError naming ``flag`` if it is bad."""
    problem = value_problem(section, key, value)
    if problem:
        raise ConfigError(f"{flag} {problem}")


def check_max_frames(value: int | None, flag: str = "--max-frames") -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be at least 1 (it is a number of frames per stream), got {value}")


def validate_config(config: "Config", locate: "_Locator | None" = None) -> None:
    """Every checked value of ``config`` and the rules between values; ConfigError naming the key.

    Call it again after the command line changed values (the CLI names its own flags first
    with ``check_option``; this catches the rest)."""
    locate = locate or _Locator(config.path or "<config>", config.text)
    for (section, key), check in VALUE_CHECKS.items():
        value = getattr(getattr(config, section), key)
        problem = check(value)
        if problem:
            raise ConfigError(f"{locate(key, section)}: [{section}] {key} {problem}")
    s = config.source
    if s.backoff_max < s.backoff_initial:
        raise ConfigError(f"{locate('backoff_max', 'source')}: [source] backoff_max ({s.backoff_max:g} s) must not "
                          f"be below backoff_initial ({s.backoff_initial:g} s)")


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return config_from_dict(data, str(path), text)


def config_from_dict(data: dict[str, Any], where: str = "<config>", text: str | None = None) -> Config:
    locate = _Locator(where, text)
    sections = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("path", "text")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in sections:
            raise ConfigError(
                f"{locate(key)}: unknown section [{key}]; expected one of "
                f"{', '.join(sorted(sections))}"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{locate(key)}: [{key}] must be a table")
        if key == "plugins":
            for name, table in value.items():
                if not isinstance(table, dict):
                    raise ConfigError(f"{locate(name, 'plugins')}: [plugins.{name}] must be a table")
            kwargs[key] = value
        else:
            cls = typing.get_type_hints(Config)[key]
            kwargs[key] = build_dataclass(cls, value, key, locate)
    config = Config(**kwargs, path=where, text=text)
    validate_config(config, locate)
    return config


def build_dataclass(cls: type, values: dict[str, Any], section: str, locate: "_Locator | None" = None) -> Any:
    """Validate a TOML table into dataclass ``cls``; raise ConfigError naming key and line."""
    locate = locate or _Locator("<config>", None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"{locate(key, section)}: unknown key '{key}' in [{section}]; expected one of "
                f"{', '.join(sorted(fields)) or 'no keys'}"
            )
        try:
            out[key] = coerce(value, hints[key])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{locate(key, section)}: [{section}] {key} {exc}") from None
        problem = value_problem(section, key, out[key])
        if problem:
            raise ConfigError(f"{locate(key, section)}: [{section}] {key} {problem}")
    return cls(**out)


def coerce(value: Any, hint: Any) -> Any:
    """Check ``value`` against a type hint, with the few conversions TOML needs."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(errors[0] if errors else f"must be one of {options}")
    if hint is Any:
        return value
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if isinstance(value, str):  # "a,b,c" from the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise TypeError(f"must be a list, got {type(value).__name__} {value!r}")
        return [coerce(v, item) for v in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"must be a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0]) for v in value)
        if len(args) != len(value):
            raise TypeError(f"must have {len(args)} items, got {len(value)}")
        return tuple(coerce(v, a) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"must be a table, got {type(value).__name__}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise TypeError(f"must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"must be an integer, got {type(value).__name__} {value!r}")
        try:
            return int(value)
        except ValueError:
            raise TypeError(f"must be an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"must be a number, got {type(value).__name__} {value!r}")
        try:
            return float(value)
        except ValueError:
            raise TypeError(f"must be a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"must be a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise TypeError(f"must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


class _Locator:
    """Finds 'file:line' of a key in a TOML text (best effort; tomllib has no positions)."""

    def __init__(self, where: str, text: str | None) -> None:
        self.where = where
        self.lines = text.splitlines() if text else []

    def __call__(self, key: str, section: str | None = None) -> str:
        current = ""
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        for number, line in enumerate(self.lines, 1):
            m = header.match(line)
            if m:
                current = m.group(1).replace('"', "").replace(" ", "")
                if section is None and current == key:
                    return f"{self.where}:{number}"
                if section is not None and current == f"{section}.{key}":
                    return f"{self.where}:{number}"
                continue
            if section is not None and current == section and re.match(
                rf'^\s*"?{re.escape(key)}"?\s*=', line
            ):
                return f"{self.where}:{number}"
        return self.where
