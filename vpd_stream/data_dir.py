"""Where the real data lives (videos/, penn_action/, msr_action3d/, ...): one rule for all.

``$VPD_DATA_DIR`` when it is set, else ``../shared/data`` beside the repository. Offline
commands, benchmarks and tests all ask here, so they never disagree about a data folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

ENV = "VPD_DATA_DIR"
REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$VPD_DATA_DIR``, else ``../shared/data`` next to the repository (it may not exist)."""
    env = os.environ.get(ENV)
    return Path(env) if env else REPO.parent / "shared" / "data"


def find_data_root() -> Path | None:
    """``data_root()`` when it is a folder, else None (tests skip then)."""
    root = data_root()
    return root if root.is_dir() else None


def data_folder(given: str | Path | None, sub: str, what: str, option: str = "--data") -> Path:
    """``given`` if the user named a folder, else ``data_root() / sub``; a ConfigError naming
    ``option`` and ``$VPD_DATA_DIR`` when that folder does not exist."""
    root = Path(given) if given else data_root() / sub
    if not root.is_dir():
        raise ConfigError(f"{what} not found at {root}; pass {option} DIR or set {ENV} "
                          f"(the folder holding {sub}/)")
    return root
