"""Named chains: ``--chain vpd`` (or ``[pipeline] chain = ["vpd"]``) stands for a shipped chain
and its plugin options (``vpd_stream/data/chain_NAME.toml``).

A chain that is exactly one preset name (and not a registered plugin of that name) is
replaced by the preset's chain; the preset's ``[plugins.NAME]`` values fill in only the keys
the user's configuration leaves unset, so a user's table always wins.
"""
from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from .errors import ConfigError


def preset_names() -> list[str]:
    folder = resources.files("vpd_stream") / "data"
    if not folder.is_dir():
        return []
    return sorted(p.name[len("chain_"):-len(".toml")] for p in folder.iterdir()
                  if p.name.startswith("chain_") and p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's TOML as a dict (``pipeline.chain`` and ``plugins``)."""
    path = resources.files("vpd_stream") / "data" / f"chain_{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown chain preset '{name}'; presets: {', '.join(preset_names()) or 'none'}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    chain = data.get("pipeline", {}).get("chain")
    if not isinstance(chain, list) or not chain:
        raise ConfigError(f"chain preset {path} has no [pipeline] chain")
    return data


def expand_chain(chain: list[str], plugins: dict[str, dict[str, Any]],
                 registered: set[str] | frozenset[str] = frozenset()) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``chain`` and ``plugins`` with a one-name preset chain expanded (otherwise unchanged).

    ``registered``: plugin names, which are never taken for a preset.
    """
    if len(chain) != 1 or chain[0] in registered or chain[0] not in preset_names():
        return list(chain), plugins
    data = load_preset(chain[0])
    merged = {name: dict(values) for name, values in plugins.items()}
    for name, values in data.get("plugins", {}).items():
        table = merged.setdefault(name, {})
        for key, value in values.items():
            table.setdefault(key, value)
    return list(data["pipeline"]["chain"]), merged
