"""The few-shot protocol: k examples per class, 5 fixed random splits per k, in files.

Split files live in ``offline_train/splits/`` (JSON: clip ids per k and split) so every
method, run and machine sees the same examples.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
KS = (4, 8, 16, 32)
NUM_SPLITS = 5


def make_splits(clip_ids: list[str], labels: list[int], ks: tuple[int, ...] = KS,
                num_splits: int = NUM_SPLITS, seed: int = 0) -> dict[str, list[list[str]]]:
    """{str(k): [ids of split 0, ...]} drawn without replacement per class (all if fewer)."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(clip_ids)
    labels_arr = np.asarray(labels)
    out: dict[str, list[list[str]]] = {}
    for k in ks:
        splits = []
        for _ in range(num_splits):
            chosen: list[str] = []
            for c in np.unique(labels_arr):
                members = ids[labels_arr == c]
                take = min(k, len(members))
                chosen += sorted(rng.choice(members, size=take, replace=False).tolist())
            splits.append(chosen)
        out[str(k)] = splits
    return out


def write_splits(path: Path, splits: dict[str, list[list[str]]], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "splits": splits}, indent=0) + "\n", encoding="utf-8")


def read_splits(path: Path) -> dict[str, list[list[str]]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["splits"]


def penn_splits_path() -> Path:
    return SPLITS_DIR / "penn_action_fewshot.json"


def penn_splits(train_ids: list[str], train_labels: list[int]) -> dict[str, list[list[str]]]:
    """The committed Penn Action splits; created (deterministically, seed 0) if absent."""
    path = penn_splits_path()
    if not path.is_file():
        splits = make_splits(train_ids, train_labels)
        write_splits(path, splits, {"dataset": "penn_action", "pool": "official train split",
                                    "seed": 0, "ks": list(KS), "num_splits": NUM_SPLITS})
    return read_splits(path)
