"""The commands ``vpd-stream`` imports only when used (keeps ``run`` fast), and the group
that loads them.

Names map to ``(module, attribute)``; nothing here is imported until a command is asked
for. A command that cannot be loaded is never dropped silently: a missing third-party
package (an optional extra) is one clear line when the command is used, and is left out
of ``--help``; an ImportError of the project's own modules (a typo, a broken install) is
an error everywhere, ``--help`` included.
"""
from __future__ import annotations

import importlib

import click

from .errors import PluginError

COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("engines.commands", "export"),
    "build-engine": ("engines.commands", "build_engine"),
    "convert-raft": ("vpd_stream.models.raft_weights", "convert_raft"),
    "prepare": ("offline_train.commands", "prepare"),
    "distill": ("offline_train.commands", "distill"),
    "embed": ("offline_train.commands", "embed"),
    "train": ("offline_train.commands", "train_group"),
    "eval": ("offline_train.commands", "eval_group"),
    # Old spellings, hidden from --help, kept for one release.
    "train-vipe": ("offline_train.commands", "train_vipe_legacy"),
    "eval-vipe": ("offline_train.commands", "eval_vipe_alias"),
}

PROJECT_PACKAGES = frozenset({"vpd_stream", "engines", "plugins", "offline_train"})


class LazyGroup(click.Group):
    """A click group whose ``lazy`` commands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(COMMANDS if lazy is None else lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(n for n in self.lazy if self.load(n, listing=True) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str):
        return super().get_command(ctx, name) or self.load(name)

    def load(self, name: str, listing: bool = False) -> click.Command | None:
        """The command ``name``; None if it is not one of ours (or, when ``listing``, if an
        optional package it needs is not installed). Raises PluginError otherwise."""
        if name not in self.lazy:
            return None
        module_name, attr = self.lazy[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = (getattr(exc, "name", None) or "").split(".")[0]
            if isinstance(exc, ModuleNotFoundError) and missing and missing not in PROJECT_PACKAGES:
                if listing:
                    return None
                raise PluginError(f"`vpd-stream {name}` needs the Python package '{missing}', which is not "
                                  "installed; reinstall vpd-stream with the extra that provides it") from exc
            raise PluginError(f"command '{name}' cannot be loaded from {module_name}: {exc} "
                              "(a bug or a broken install; reinstall vpd-stream)") from exc
        command = getattr(module, attr, None)
        if not isinstance(command, click.Command):
            raise PluginError(f"command '{name}': {module_name} has no click command '{attr}' "
                              "(a bug or a broken install; reinstall vpd-stream)")
        return command
