"""Make heads trained on Penn Action's left/right labels exact heads for the person's own sides.

Penn Action names the joints from the viewer's side: facing the camera, Penn's "left
shoulder" is left in the image (96 % of the front-view frames with both shoulders visible;
right in the image in 78 % of the back-view ones), where BlazePose's, the stream's teacher,
is the person's own left (right in the image for the clean-and-jerk lifter, who faces the
camera, on 100 % of frames). A head trained on Penn's labels therefore sees the stream's
poses with the sides exchanged. ``recognition.swap_input_sides`` permutes the first
layer's input columns, so the converted head computes on anatomical joints exactly what the
old head computed on Penn's (same Penn test figures, nothing retrained); new heads are
trained on ``penn_action.penn_anatomical`` clips instead.

    python -m offline_train.penn_sides --out DIR            # converted copies of the committed heads
    python -m offline_train.penn_sides --check plugins/weights  # their Penn test figures, anatomical sides
"""
from __future__ import annotations

import argparse
from pathlib import Path


def convert(head: Path, kind: str, out: Path) -> dict:
    from vpd_stream.models.head_io import HeadBundle, load_heads, save_heads

    from .recognition import swap_input_sides

    bundle = load_heads(head, kind=kind)
    if bundle.meta.get("penn_sides") == "anatomical":
        raise SystemExit(f"error: {head} already reads anatomical sides")
    meta = dict(bundle.meta)
    meta["penn_sides"] = "anatomical"
    meta["penn_sides_conversion"] = ("first-layer input columns permuted for the person's own left/right "
                                     "(python -m offline_train.penn_sides); same function as the head trained "
                                     f"on Penn's labels: {bundle.meta.get('command', '')}")
    save_heads(out, HeadBundle(bundle.config, swap_input_sides(bundle.models), meta))
    return meta


def penn_test(folder: Path, data: Path | None = None) -> dict:
    """Recognizer top-1 (flip TTA) and swing-detector AP on Penn's official test split, the
    clips' sides as each head's sidecar says (the default-heads table's protocol)."""
    import numpy as np

    from vpd_stream.data_dir import data_folder
    from vpd_stream.heads.ensemble import predict_proba
    from vpd_stream.heads.intervals import proposals
    from vpd_stream.models.head_io import load_heads

    from .action_detection import SWING_CLASSES, activations, ap_table, concat_sequences
    from .features import get_feature_set
    from .penn_action import load_penn_action
    from .penn_action import penn_anatomical

    clips = load_penn_action(data_folder(data, "penn_action", "Penn Action"))
    out = {}
    rec = load_heads(folder / "penn_recognizer", kind="recognizer")
    test = [penn_anatomical(c) if rec.meta.get("penn_sides") == "anatomical" else c for c in clips if not c.train]
    fs = get_feature_set(rec.meta.get("feature_set", "pose2d"))
    probs = predict_proba(rec.models, [fs.extract(c) for c in test], fs.flip)
    out["recognizer_test_top1"] = float((probs.argmax(1) == np.array([c.label for c in test])).mean())
    det = load_heads(folder / "penn_swing_detector", kind="detector")
    test = [penn_anatomical(c) if det.meta.get("penn_sides") == "anatomical" else c for c in clips if not c.train]
    fs = get_feature_set(det.meta.get("feature_set", "pose2d"))
    seqs = concat_sequences([fs.extract(c) for c in test], [c.action in SWING_CLASSES for c in test],
                            [c.clip_id for c in test], 40, seed=0)
    preds = [proposals(activations(det.models, q.features), float(det.meta["mean_action_length"]), 0.2) for q in seqs]
    out["detector_test_ap"] = {str(t): round(a, 4) for t, a in ap_table(preds, [q.intervals for q in seqs]).items()}
    return out


def main() -> None:
    from plugins.detector import DEFAULT_DETECTOR
    from plugins.recognizer import DEFAULT_RECOGNIZER

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--check", type=Path, default=None, help="a folder with penn_recognizer and penn_swing_detector")
    a = ap.parse_args()
    if a.check is not None:
        print(penn_test(a.check))
        return
    if a.out is None:
        ap.error("--out or --check is needed")
    a.out.mkdir(parents=True, exist_ok=True)
    for head, kind in ((DEFAULT_DETECTOR, "detector"), (DEFAULT_RECOGNIZER, "recognizer")):
        convert(head, kind, a.out / head.name)
        print(f"wrote {a.out / head.name}.safetensors and .json")


if __name__ == "__main__":
    main()
