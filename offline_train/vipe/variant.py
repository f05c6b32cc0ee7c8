"""Train one VIPE* variant from a JSON description (the issue-15 search; see RESULTS.md).

    python -m offline_train.vipe.variant OUT.safetensors '{"steps": 1500, "model": {"inputs": "box"},
        "cameras": {"drop_prob": 0.08, "occlusion_prob": 0.7}}' [--msr DIR]

The JSON sets ``TrainConfig`` fields; ``model``, ``cameras``, ``synthetic`` and ``augment``
set the nested ``VipeConfig``, ``CameraConfig``, ``SyntheticConfig`` and
``PoseAugmentConfig`` fields. The sidecar keeps
the whole configuration (``extra.train``) and the validation history, as ``train-vipe``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from vpd_stream.models.vipe import VipeConfig

from .augment import PoseAugmentConfig
from .cameras import CameraConfig
from .synthetic import SyntheticConfig
from .train import TrainConfig, train_and_save

_NESTED = {"model": VipeConfig, "cameras": CameraConfig, "synthetic": SyntheticConfig,
           "augment": PoseAugmentConfig}


def config_from_json(spec: dict) -> TrainConfig:
    """A ``TrainConfig`` from a (possibly nested) dict; unknown keys raise TypeError."""
    kw = dict(spec)
    for key, cls in _NESTED.items():
        if key in kw:
            sub = {k: tuple(v) if isinstance(v, list) else v for k, v in kw[key].items()}
            kw[key] = cls(**sub)
    return TrainConfig(**kw)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("spec", help="JSON TrainConfig fields")
    ap.add_argument("--msr", type=Path, default=Path("../shared/data/msr_action3d"))
    a = ap.parse_args(argv)
    cfg = config_from_json(json.loads(a.spec))
    print(json.dumps(dataclasses.asdict(cfg)), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    summary = train_and_save(cfg, a.msr, a.out, log=lambda s: print(s, flush=True))
    print(json.dumps({"out": str(a.out), "train_seconds": summary["train_seconds"]}), flush=True)


if __name__ == "__main__":
    main()
