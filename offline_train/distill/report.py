"""Per-frame validation errors of a motion student (F + D) and a ``--no-motion`` student.

The table RESULTS.md reports: on the held-out frames of the split ``distill`` used (same
store, threshold, validation fraction and seed), the squared L2 error per frame of

* the trivial predictor (the training mean of [p_t, Δp]);
* the motion student: D(F(x_t)) predicts p_t and Δp from one frame;
* the ``--no-motion`` student: F(x_t) predicts p_t; its Δp is F(x_t) − F(x_{t−1}), from two frames;

as means over all held-out frames and over the frames where the teacher did not swap left
and right between t−1 and t. Such a swap (p_t closer to p_{t−1} with its left/right joints
exchanged than to p_{t−1} itself) makes the plain |Δp|² jump to ~3 where a normal frame has
~0.004, and no image of frame t can predict it. With ``--swap-aware-motion`` (the default,
as in ``distill``) the Δp target of such a frame is taken against the relabelled p_{t−1}
(offline_train.distill.dataset), for every predictor alike; ``--no-swap-aware-motion``
gives the plain targets. Medians are reported too.

    python -m offline_train.distill.report STORE --motion M.safetensors --no-motion N.safetensors
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vpd_stream.errors import InputError

from .dataset import DistillData, FrameDataset
from .decoder import MotionDecoder
from .train import run_dir


def teacher_swaps(data: DistillData, idx: np.ndarray) -> np.ndarray:
    """Rows (of ``idx``, with a Δp target) where the teacher swapped left and right since t−1
    (dataset.teacher_swapped on the stored poses; the same rows whether or not the Δp
    targets were made swap-aware)."""
    t = data.targets
    return t.motion_valid[idx] & t.swapped[idx]


def _load_decoder(model: str | Path, dim: int) -> MotionDecoder:
    from safetensors.torch import load_file

    path = run_dir(model) / "decoder.safetensors"
    if not path.is_file():
        raise InputError(f"{path}: no decoder D beside the motion student (was it trained with --no-motion?)")
    decoder = MotionDecoder(dim, dim)
    decoder.load_state_dict(load_file(str(path)))
    return decoder.eval()


@torch.no_grad()
def _predict(model: torch.nn.Module, ds: FrameDataset, rows: np.ndarray, prev: bool, batch: int = 50) -> np.ndarray:
    out = []
    for start in range(0, len(rows), batch):
        b = ds.read_rows(rows[start:start + batch], prev=prev)
        out.append(model(b["rgb"], b["flow"]).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def per_frame_errors(data: DistillData, motion_model: str | Path, nomotion_model: str | Path) -> dict[str, Any]:
    """Per held-out frame: squared L2 errors of pose and Δp for the three predictors."""
    from vpd_stream.models.checkpoint import load_student

    t = data.targets
    d = data.dim
    val = data.val_idx
    mrows = val[t.motion_valid[val]]
    mean = data.target_mean()
    ds = data.subset(val)
    f_motion, _ = load_student(motion_model)
    f_nomotion, _ = load_student(nomotion_model)
    f_motion.eval()
    f_nomotion.eval()
    decoder = _load_decoder(motion_model, d)

    def motion_net(rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return decoder(f_motion(rgb, flow))

    pred_m = _predict(motion_net, ds, val, prev=False)
    pred_n = _predict(f_nomotion, ds, val, prev=False)
    prev_n = _predict(f_nomotion, ds, mrows, prev=True)
    ds.close()
    in_m = t.motion_valid[val]
    err = {
        "trivial": {"pose": ((t.pose[val] - mean[:d]) ** 2).sum(1),
                    "motion": ((t.motion[mrows] - mean[d:]) ** 2).sum(1)},
        "motion": {"pose": ((pred_m[:, :d] - t.pose[val]) ** 2).sum(1),
                   "motion": ((pred_m[in_m, d:] - t.motion[mrows]) ** 2).sum(1)},
        "nomotion": {"pose": ((pred_n - t.pose[val]) ** 2).sum(1),
                     "motion": ((pred_n[in_m] - prev_n - t.motion[mrows]) ** 2).sum(1)},
    }
    return {"errors": err, "val_rows": val, "motion_rows": mrows, "swaps": teacher_swaps(data, mrows),
            "swap_aware_motion": data.swap_aware_motion}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    swaps = result["swaps"]
    out: dict[str, Any] = {"val_frames": int(len(result["val_rows"])), "motion_frames": int(len(result["motion_rows"])),
                           "teacher_swaps": int(swaps.sum()), "swap_aware_motion": bool(result.get("swap_aware_motion", True))}
    for name, e in result["errors"].items():
        out[name] = {"pose": float(e["pose"].mean()), "motion": float(e["motion"].mean()),
                     "motion_without_swaps": float(e["motion"][~swaps].mean()) if (~swaps).any() else float("nan"),
                     "motion_swaps_only": float(e["motion"][swaps].mean()) if swaps.any() else float("nan"),
                     "motion_median": float(np.median(e["motion"]))}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--motion", required=True, help="the motion student (F + D beside it in MODEL.train)")
    parser.add_argument("--no-motion", dest="nomotion", required=True, help="the --no-motion student")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--swap-aware-motion", action=argparse.BooleanOptionalAction, default=True,
                        help="Δp targets against the relabelled p_{t−1} where the teacher swapped left/right "
                             "(default; as distill). --no-swap-aware-motion: the plain p_t − p_{t−1}.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = DistillData(args.store, threshold=args.threshold, val_fraction=args.val_fraction, seed=args.seed,
                       swap_aware_motion=args.swap_aware_motion)
    s = summarize(per_frame_errors(data, args.motion, args.nomotion))
    print(json.dumps(s, indent=2))
    print(f"\n{s['val_frames']} held-out frames, {s['motion_frames']} with a Δp target, "
          f"{s['teacher_swaps']} of them teacher left/right swaps; Δp targets "
          f"{'swap-aware' if s['swap_aware_motion'] else 'plain (p_t − p_t−1)'}\n")
    print("| predictor | pose p_t | Δp, all | Δp, without swaps | Δp, swap frames only | Δp, median |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, label in (("trivial", "trivial: the training mean"), ("motion", "motion student D(F(x_t))"),
                        ("nomotion", "no-motion student, F(x_t) − F(x_t−1)")):
        r = s[name]
        print(f"| {label} | {r['pose']:.3f} | {r['motion']:.4f} | {r['motion_without_swaps']:.4f} | "
              f"{r['motion_swaps_only']:.3f} | {r['motion_median']:.4f} |")


if __name__ == "__main__":
    main()
