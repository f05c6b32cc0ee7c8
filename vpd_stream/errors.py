"""User-facing errors: each one is a single line that says what went wrong and what to do.

The CLI prints ``str(error)`` and exits with ``error.exit_code``; no traceback is shown.
"""
from __future__ import annotations


class VpdError(Exception):
    """Base class for errors caused by the user's input, configuration or environment."""

    exit_code = 1


class InputError(VpdError):
    """A source that cannot be opened or decoded (missing, empty, not a video, truncated...)."""

    exit_code = 1


class ConfigError(VpdError):
    """A configuration file or command-line option that is invalid."""

    exit_code = 2


class PluginError(VpdError):
    """A plugin that is unknown, cannot load, or whose requirements nobody provides."""

    exit_code = 2


class ModelError(VpdError):
    """A model file that is missing, unreadable or does not match what the plugin expects."""

    exit_code = 3
