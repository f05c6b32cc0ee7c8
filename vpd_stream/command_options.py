"""Command-line options that every ``vpd-stream`` command spells the same way."""
from __future__ import annotations

import functools

import click


def out_option(*, required: bool = False, default=None, help: str, **kwargs):
    """``-o/--out``, the one spelling of an output (the old ``--output`` is still accepted,
    hidden from --help, for one release)."""
    def decorate(f):
        f = click.option("--output", "out_alias", hidden=True, default=None, **kwargs)(f)
        return click.option("-o", "--out", "out", default=default, show_default=default is not None,
                            help=help + ("  [required]" if required else ""), **kwargs)(_merge_out(f, required))
    return decorate


def _merge_out(f, required: bool):
    @functools.wraps(f)
    def wrapper(*args, out=None, out_alias=None, **kwargs):
        value = out_alias if out_alias is not None else out
        if value is None and required:
            raise click.UsageError("Missing option '-o' / '--out'.")
        return f(*args, out=value, **kwargs)

    return wrapper
