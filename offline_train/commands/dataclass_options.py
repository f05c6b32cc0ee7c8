"""Click parameters generated from a dataclass's fields, so a command never re-declares them.

    @click.command(cls=DeferredParamsCommand, deferred=lambda: dataclass_params(
        DistillOptions, arguments=("store",), skip=("progress",), help=HELP,
        choices={"teacher": ("pose2d", "vipe")}, short={"out": "-o"}))
    def distill(**values):
        opts = DistillOptions(**values)

A field ``name`` becomes ``--name`` (underscores as dashes) of the field's type, with its
default; a field without a default is required. ``bool`` fields become the pair
``--name/--no-name`` (``bool | None`` keeps None as "not given"). ``X | None`` takes an X or
nothing. Help texts and choices come from the dicts or from the field's metadata
(``field(metadata={"help": ..., "choices": (...)})``).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Iterable

import click

_SCALARS = (int, float, str, bool)


def field_type(hint: Any) -> tuple[type, bool]:
    """(scalar type, may be None) of a field's annotation; TypeError for anything else."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"cannot make a command-line option of {hint}")
        hint = args[0]
    if hint not in _SCALARS:
        raise TypeError(f"cannot make a command-line option of {hint}")
    return hint, optional


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def dataclass_params(cls: type, *, arguments: Iterable[str] = (), skip: Iterable[str] = (),
                     help: dict[str, str] | None = None, choices: dict[str, Iterable[str]] | None = None,
                     short: dict[str, str] | None = None) -> list[click.Parameter]:
    """One click Parameter per field of ``cls`` (in field order), except those in ``skip``."""
    help, choices, short = help or {}, choices or {}, short or {}
    arguments, skip = set(arguments), set(skip)
    hints = typing.get_type_hints(cls)
    params: list[click.Parameter] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        kind, _ = field_type(hints[f.name])  # None is the default that stands for "not given"
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        allowed = choices.get(f.name, f.metadata.get("choices"))
        click_type: Any = click.Choice(list(allowed)) if allowed else kind
        text = help.get(f.name, f.metadata.get("help"))
        given = {"default": default} if has_default else {}  # no default at all: click requires it
        if f.name in arguments:
            params.append(click.Argument([f.name], type=click_type, required=not has_default, **given))
            continue
        names = [option_name(f.name)] + ([short[f.name]] if f.name in short else [])
        if kind is bool:
            names[0] = f"{names[0]}/--no-{names[0][2:]}"
            params.append(click.Option([*names, f.name], required=not has_default, help=text,
                                       show_default=default is not None, **given))
            continue
        params.append(click.Option([*names, f.name], type=click_type, required=not has_default, help=text,
                                   show_default=has_default and default is not None, **given))
    return params


class DeferredParamsCommand(click.Command):
    """A command whose generated parameters are made on first use, not at import: their
    dataclass may live in a module that is slow to import (torch), and ``vpd-stream --help``
    should not pay for it. ``deferred`` returns the parameters to put first."""

    def __init__(self, *args: Any, deferred: Callable[[], list[click.Parameter]], **kwargs: Any) -> None:
        self._deferred: Callable[[], list[click.Parameter]] | None = deferred
        super().__init__(*args, **kwargs)

    @property
    def params(self) -> list[click.Parameter]:  # type: ignore[override]
        if self._deferred is not None:
            made, self._deferred = self._deferred(), None
            self._params[:0] = made
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value
