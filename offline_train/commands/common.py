"""What every offline command shares: threads, logging, the recorded command line, aliases."""
from __future__ import annotations

import copy
import logging
import sys

import click


def set_threads(n: int) -> None:
    """Torch intra-op threads (``--threads``); 0 leaves torch's default."""
    if n > 0:
        import torch

        torch.set_num_threads(n)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def command_line() -> str:
    """The command as typed, for the reports and sidecars that record how they were made
    (``vpd-stream train recognizer --epochs 5``), whichever spelling the user typed."""
    root = click.get_current_context().find_root()
    return " ".join([root.info_name or "vpd-stream", *sys.argv[1:]])


def hidden_alias(command: click.Command, name: str) -> click.Command:
    """``command`` under an old ``name``, left out of --help (kept for one release)."""
    alias = copy.copy(command)
    alias.name = name
    alias.hidden = True
    alias.deprecated = False
    return alias
