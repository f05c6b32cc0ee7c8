"""The offline commands of ``vpd-stream``: one module per family, each command small.

``vpd_stream/cli.py`` (the composition root) loads these lazily, by name:

* ``train_group``: ``train recognizer|detector|nns-index`` (heads.py), ``train jmrn``
  (jmrn.py), ``train vipe`` (vipe.py);
* ``eval_group``: ``eval penn-action`` (heads.py), ``eval jmrn``, ``eval vipe``;
* ``prepare``, ``distill``, ``embed`` (corpus.py).

The old spellings — ``train-vipe``, ``eval-vipe``, ``eval penn-action-jmrn`` — stay as hidden
aliases for one release. Every module imports only click and the light core here; the
heavy imports happen inside the commands.
"""
from __future__ import annotations

import click

from .common import hidden_alias
from .corpus import distill, embed, prepare
from .heads import eval_penn
# The generic train commands (--labels ...; issue 14); without --labels they train the Penn defaults as before.
from .sport import eval_few_shot, train_detector, train_nns_index, train_recognizer
from .jmrn import eval_jmrn, train_jmrn
from .vipe import eval_vipe, train_vipe, train_vipe_legacy

__all__ = ["distill", "embed", "eval_group", "eval_vipe_alias", "prepare", "train_group", "train_vipe_legacy"]


@click.group("train")
def train_group() -> None:
    """Train heads and teachers: the recognizer, the detector, an NNS index, JMRN, VIPE*."""


@click.group("eval")
def eval_group() -> None:
    """Evaluate on real benchmarks: Penn Action (heads), JMRN, VIPE*."""


for _command in (train_recognizer, train_detector, train_nns_index, train_jmrn, train_vipe):
    train_group.add_command(_command)
for _command in (eval_penn, eval_few_shot, eval_jmrn, eval_vipe, hidden_alias(eval_jmrn, "penn-action-jmrn")):
    eval_group.add_command(_command)

eval_vipe_alias = hidden_alias(eval_vipe, "eval-vipe")  # `vpd-stream eval-vipe`, the old spelling
