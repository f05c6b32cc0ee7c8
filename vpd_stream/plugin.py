"""The plugin API: what a stage is, how it is found, and how a chain is checked.

A plugin is a class with a ``name``, the annotation keys it ``requires`` and ``provides``,
and ``setup(context)`` / ``process(batch)`` / ``close()``. Built-ins and third-party
plugins register the same way, through the ``vpd_stream.plugins`` entry-point group::

    [options.entry_points]
    vpd_stream.plugins =
        myplugin = mypackage.module:MyPlugin

For development without installing, a chain entry may name the class directly:
``"package.module:Class"``.

A plugin's options are a dataclass (``Options``); the ``[plugins.NAME]`` table of the
TOML configuration is validated into it and the constructor checks the values
(``instantiate``), before anything runs. ``requires``/``provides`` name
``vpd_stream.annotations.Key`` members (``Key.EVENTS`` for detections), so a chain is
checked when it is built. docs/plugins.md is the whole contract.
"""
from __future__ import annotations

import dataclasses
import logging
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np

from .annotations import Key
from .errors import ConfigError, PluginError, VpdError
from .frame import EndOfStream, Frame

ENTRY_POINT_GROUP = "vpd_stream.plugins"
log = logging.getLogger(__name__)


@dataclass
class PluginContext:
    """What a plugin may know about the run it is part of."""

    device: str = "cpu"  # "cpu" or "cuda"
    engine: str = "onnxruntime"  # default inference backend for plugins that run networks
    target_fps: float | None = 25.0
    metrics: Any = None  # vpd_stream.metrics.Metrics or None
    model_dir: str | None = None  # where plugins look for model files by default


class Plugin:
    """Base class of a pipeline stage. Subclasses set the class attributes below.

    ``process`` receives up to ``batch_size`` frames (possibly from several streams, each
    stream's frames in order) and annotates them in place. Per-stream state must be keyed
    by ``frame.stream_id``; ``end_stream`` is called once a stream's last frame has passed.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @dataclass
    class Options:
        """No options."""

    def __init__(self, options: Any | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.context = PluginContext()

    # -- life cycle -------------------------------------------------------------
    batch_size: int = 1  # the most frames one process() call takes
    batch_timeout: float = 0.005  # how long to wait to fill a batch (bounds live latency)

    def setup(self, context: PluginContext) -> None:
        self.context = context

    def process(self, batch: list[Frame]) -> None:
        raise NotImplementedError

    def end_stream(self, eos: EndOfStream) -> None:
        """A stream has ended: flush its state and drop it.

        Events that close only now are appended to ``eos.events``; a downstream plugin
        (the recognizer) sees them there and may label them, as it would ``frame.events``.
        """

    def close(self) -> None:
        pass

    # -- output -----------------------------------------------------------------
    def describe(self, frame: Frame) -> dict[str, Any]:
        """This plugin's fields for the frame's JSONL record.

        The key ``"tracks"`` maps track id → dict; sinks merge those per track across
        plugins, so several stages can describe the same track. Values must be JSON
        serialisable (lists, not arrays).
        """
        return {}

    def draw(self, frame: Frame, image: np.ndarray) -> None:
        """Draw this plugin's overlay onto ``image`` (BGR, HxWx3 uint8) in place."""


# -- discovery -------------------------------------------------------------------


def available_plugins() -> dict[str, Any]:
    """Entry points of the plugin group, by name (not yet imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin_class(name: str) -> type[Plugin]:
    """The class an entry-point name, or a ``package.module:Class`` spec, stands for."""
    if ":" in name:
        return _load_spec(name)
    eps = available_plugins()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise PluginError(
            f"unknown plugin '{name}'; registered plugins: {known} (see `vpd-stream plugins`)"
        )
    try:
        cls = eps[name].load()
    except ImportError as exc:
        raise PluginError(
            f"plugin '{name}' could not be imported ({exc}); reinstall vpd-stream with its extras"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"entry point '{name}' does not name a vpd_stream Plugin subclass")
    return cls


def _load_spec(spec: str) -> type[Plugin]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"plugin '{spec}': module {module_name} cannot be imported ({exc}); "
                          "check the spelling and that it is on PYTHONPATH") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"plugin '{spec}': {module_name} has no vpd_stream Plugin subclass named '{attr}'")
    return cls


def instantiate(cls: type[Plugin], options: Any | None = None, name: str | None = None) -> Plugin:
    """Build a plugin from validated options: every error it raises about them gets the one
    prefix ``[plugins.NAME]``, so the user knows which table to fix."""
    label = name or cls.name
    try:
        return cls(options)
    except VpdError as exc:
        raise type(exc)(with_prefix(label, str(exc))) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(with_prefix(label, str(exc))) from None


def with_prefix(name: str, message: str) -> str:
    """``[plugins.NAME] message``; older plugins' own ``name:`` prefixes are dropped."""
    prefix = f"[plugins.{name}]"
    if message.startswith(prefix):
        return message
    for old in (f"{name}: ", f"plugin '{name}': "):
        if message.startswith(old):
            message = message[len(old):]
    return f"{prefix} {message}"


def validate_chain(plugins: list[Any], initial: tuple[str, ...] = (Key.RGB,)) -> None:
    """Check, before any frame is decoded, that every requirement is provided upstream.

    Takes plugin classes or instances: an instance may narrow ``requires``/``provides``
    from its options (the detector reads whichever feature key it is configured with).
    A labeller requires ``Key.EVENTS``: without a detector before it, it has nothing to label.
    """
    have = set(initial)
    seen: set[str] = set()
    for cls in plugins:
        if cls.name in seen:
            raise PluginError(f"[plugins.{cls.name}] appears twice in the chain")
        seen.add(cls.name)
        missing = [key for key in cls.requires if key not in have]
        if missing:
            providers = _providers_of(missing)
            hint = f"; add {providers} before it" if providers else ""
            raise PluginError(
                f"[plugins.{cls.name}] requires {', '.join(missing)}, which no earlier plugin "
                f"in the chain provides{hint}"
            )
        have.update(cls.provides)


def _providers_of(keys: list[str]) -> str:
    names = []
    for name, ep in sorted(available_plugins().items()):
        try:
            cls = ep.load()
        except Exception:  # a broken third-party plugin must not hide the real error
            continue
        if any(key in getattr(cls, "provides", ()) for key in keys):
            names.append(f"'{name}'")
    return " or ".join(names)


def options_fields(cls: type[Plugin]) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls.Options)) if dataclasses.is_dataclass(cls.Options) else []
