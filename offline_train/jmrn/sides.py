"""JMRN weights for the person's own left/right (the teacher's), from weights trained on
Penn Action's labels (the viewer's sides; ``offline_train.penn_sides`` measures it).

Penn names the joints from the viewer's side, BlazePose from the person's: a JMRN trained on
Penn's heatmaps sees the stream's heatmaps with every left/right joint channel exchanged.
``vpd_stream.models.jmrn.permute_joints`` reorders the joint-indexed parameters so the
converted model computes on anatomical heatmaps exactly what the trained one computed on
Penn's (same Penn test figures; nothing retrained). The sidecar says ``penn_sides:
anatomical``; Penn clips are fed to such a model as ``penn_action.penn_anatomical`` clips.

    python -m offline_train.jmrn.sides runs/jmrn15/weights/jmrn_full.safetensors plugins/weights/jmrn_default.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vpd_stream.skeleton import FLIP_PERM

ANATOMICAL = "anatomical"


def reads_anatomical_sides(meta: dict) -> bool:
    return meta.get("penn_sides") == ANATOMICAL


def convert(src: Path, dst: Path) -> Path:
    from vpd_stream.models.jmrn import load_jmrn, permute_joints, save_jmrn

    model, meta = load_jmrn(src)
    if reads_anatomical_sides(meta):
        raise SystemExit(f"error: {src} already reads the person's own sides")
    meta = dict(meta)
    heatmap, classes = meta.pop("heatmap"), meta.pop("classes")
    for key in ("config", "format", "format_version", "weights_sha256"):
        meta.pop(key, None)
    meta["penn_sides"] = ANATOMICAL
    meta["penn_sides_conversion"] = ("joint-indexed parameters permuted for the person's own left/right "
                                     "(python -m offline_train.jmrn.sides); computes on anatomical heatmaps "
                                     f"what {src.name} computed on Penn's: {meta.get('command', '')}")
    return save_jmrn(dst, permute_joints(model, FLIP_PERM), heatmap, classes, meta)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args(argv)
    print(f"wrote {convert(args.src, args.dst)}")


if __name__ == "__main__":
    main()
