"""Real time on real footage: the default chain and the VPD chain on a 1080p and a 720p clip.

    python -m offline_train.benchmarks.realtime [--clips tennis_broadcast_rally.mp4,sprint_start_sports2d.mp4]
        [--max-frames 250] [--student DISTILLED.safetensors] [--workers 1,0] [--out table.md]

Every row runs in a fresh child process (so peak RSS and CPU time are that row's alone), all
in one invocation, and prints: frames processed at 25 fps, the real-time factor (media
seconds / processing seconds, from the first frame written to the last; "whole" counts the
model setup too), CPU utilization over that interval (100 % = one core), peak RSS, and the
per-stage breakdown (ms of stage time per frame, from the vpd_stage_duration_seconds
histogram; stages overlap in their threads, so they add up to more than the wall time when
cores are busy). The header has the CPU model, flags, core count and the load average.

Rows per clip: decode only (``framerecord``); the default chain with one worker per stage
(``--workers 1``, the default) and with replicas of the parallel-safe stages (0 = one per core,
``[pipeline] stage_workers``); the VPD
chain (``--chain vpd``: tracker, crop, flow, student, detector, recognizer, no pose) with a
ResNet-34 student at fp32 and at int8, and with ``--student`` under the CPU dispatch
(precision auto). The ResNet-34 rows are seeded random weights: speed only (the int8 one is
quantized on real crops but fails the accuracy gate on random weights, as BENCHMARKS.md
says). The VPD chain's heads are the shipped pose heads saved as embedding heads: the same
networks and cost as heads trained on a 2D-VPD student's 26-d features, but not their accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vpd_stream.data_dir import data_root

REPO = Path(__file__).resolve().parents[2]
CLIPS = "tennis_broadcast_rally.mp4,sprint_start_sports2d.mp4"


def _peak_rss_mb() -> float:
    """VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class _Timing:
    """A sink that notes when frames reach it; a sampler of this process's CPU time."""

    def __init__(self) -> None:
        self.first = self.last = None
        self.cpu_first = self.cpu_last = 0.0
        self.frames = 0

    def write_frame(self, frame, plugins) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first, self.cpu_first = now, _cpu_seconds()
        self.last, self.cpu_last = now, _cpu_seconds()
        self.frames += 1

    def write_event(self, event) -> None:
        pass

    def end_stream(self, eos) -> None:
        pass

    def close(self) -> None:
        pass


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One row: build the pipeline of ``spec`` with the runner API, run it, measure it."""
    from vpd_stream.config import config_from_dict
    from vpd_stream.runner import build_pipeline

    config = config_from_dict({"pipeline": {"chain": spec["chain"], "fps": 25.0}, "plugins": spec.get("plugins", {})})
    timing = _Timing()
    t0 = time.perf_counter()
    config.pipeline.stage_workers = spec.get("workers", 1)
    pipeline = build_pipeline(config, [spec["clip"]], [timing], max_frames=spec.get("max_frames"))
    summary = pipeline.run()
    whole = time.perf_counter() - t0
    if not summary.ok:
        return {"error": summary.error or next(s.error for s in summary.streams if s.error)}
    steady = (timing.last - timing.first) if timing.frames > 1 else float("nan")
    steady_frames = timing.frames - 1  # frames written after the first one
    stages = {}
    for metric in pipeline.metrics.registry.collect():
        if metric.name != "vpd_stage_duration_seconds":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                stages[sample.labels["stage"]] = 1000.0 * sample.value / max(timing.frames, 1)
    return {"frames": timing.frames, "steady_s": steady, "whole_s": whole,
            "rtf": steady_frames / 25.0 / steady if steady == steady and steady > 0 else float("nan"),
            "rtf_whole": timing.frames / 25.0 / whole,
            "cpu": 100.0 * (timing.cpu_last - timing.cpu_first) / steady if steady and steady > 0 else float("nan"),
            "rss_mb": _peak_rss_mb(),
            "stages": stages, "workers": pipeline.stage_workers, "notes": summary.notes}


def _embedding_heads(root: Path) -> dict[str, str]:
    from plugins.detector import DEFAULT_DETECTOR
    from plugins.recognizer import DEFAULT_RECOGNIZER
    from vpd_stream.models.head_io import load_heads, save_heads

    out = {}
    for head, kind in ((DEFAULT_DETECTOR, "detector"), (DEFAULT_RECOGNIZER, "recognizer")):
        name = head.name
        bundle = load_heads(head, kind=kind)
        bundle.meta = {**bundle.meta, "features": "embedding", "feature_set": "benchmark: pose head as embedding head"}
        save_heads(root / name, bundle)
        out[kind] = str(root / name)
    return out


def _int8_resnet34(root: Path, cache: Path) -> str:
    """The seeded random ResNet-34 quantized to int8 on real crops (speed only: fails the gate)."""
    from engines.dispatch import calibration_videos
    from engines.export import export_student
    from engines.quantize import load_real_crops, quantize_int8
    from vpd_stream.models.student_loading import resolve_student

    student = resolve_student(None, random_init=True, seed=0, random_dim=26)
    fp32 = export_student(student.module, root / "r34-fp32.onnx", sidecar=student.sidecar)
    videos = calibration_videos()
    if videos is None:
        raise SystemExit("error: the int8 row needs real calibration videos (set VPD_DATA_DIR)")
    return str(quantize_int8(fp32, root / "r34-int8.onnx", load_real_crops(videos, 64, every=3, offset=0)))


def rows(clips: list[Path], args, tmp: Path) -> list[tuple[str, str, dict]]:
    heads = _embedding_heads(tmp)
    cache = tmp / "cache"
    vpd_heads = {"detector": {"weights": heads["detector"]}, "recognizer": {"weights": heads["recognizer"]}}
    int8 = _int8_resnet34(tmp, cache)
    specs = []
    for clip in clips:
        base = {"clip": str(clip), "max_frames": args.max_frames}
        specs.append((clip.name, "decode only (framerecord)", {**base, "chain": ["framerecord"]}))
        for w in args.workers:
            label = "1 per stage" if w == 1 else "replicas" if w == 0 else f"{w} replicas"
            specs.append((clip.name, f"default chain, {label}", {**base, "chain": ["tracker", "pose", "crop", "flow",
                                                                                    "detector", "recognizer"],
                                                                 "workers": w}))
        student = {"random_init": True, "cache_dir": str(cache)}
        specs.append((clip.name, "VPD chain, ResNet-34 fp32 (random weights)",
                      {**base, "chain": ["vpd"], "plugins": {**vpd_heads, "student": student}}))
        specs.append((clip.name, "VPD chain, ResNet-34 int8 (random weights, speed only)",
                      {**base, "chain": ["vpd"], "plugins": {**vpd_heads, "student": {"model": int8, "cache_dir": str(cache)}}}))
        if args.student:
            specs.append((clip.name, f"VPD chain, {Path(args.student).parent.name}/{Path(args.student).name} auto",
                          {**base, "chain": ["vpd"], "plugins": {**vpd_heads, "student": {"model": args.student,
                                                                                          "precision": "auto"}}}))
    out = []
    for clip, label, spec in specs:
        try:
            proc = subprocess.run([sys.executable, "-u", "-m", "offline_train.benchmarks.realtime", "--child",
                                   json.dumps(spec)], capture_output=True, text=True, cwd=REPO, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess([], 1, "", f"timed out after {args.timeout:g} s")
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            result = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        result["load"] = os.getloadavg()[0]
        print(f"  {clip}: {label}: " + (result.get("error") or f"{result['rtf']:.2f}x real time"), file=sys.stderr,
              flush=True)
        out.append((clip, label, result))
    return out


def table(results: list[tuple[str, str, dict]]) -> list[str]:
    lines = ["| clip | configuration | frames | real-time factor | whole run | CPU | peak RSS | per stage, ms/frame | load after |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    notes = []
    for clip, label, r in results:
        if "error" in r:
            lines.append(f"| {clip} | {label} | – | {r['error']} | | | | | {r['load']:.1f} |")
            continue
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        lines.append(f"| {clip} | {label} | {r['frames']} | {r['rtf']:.2f}× | {r['rtf_whole']:.2f}× | {r['cpu']:.0f} % | "
                     f"{r['rss_mb']:.0f} MB | {stages} | {r['load']:.1f} |")
        notes += [f"{clip}, {label}: {n}" for n in r.get("notes", [])]
    return lines + ([""] + notes if notes else [])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--clips", default=CLIPS, help="comma-separated clips under $VPD_DATA_DIR/videos")
    ap.add_argument("--max-frames", type=int, default=250, help="frames per clip (at 25 fps)")
    ap.add_argument("--student", help="a distilled student (.safetensors): a VPD chain row under the CPU dispatch")
    ap.add_argument("--workers", default="1,0", help="stage_workers of the default-chain rows (0 = one per core)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per row")
    ap.add_argument("--out", help="also write the markdown here")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from engines.dispatch import read_cpuinfo

    args.workers = [int(w) for w in args.workers.split(",")]
    clips = [data_root() / "videos" / c for c in args.clips.split(",")]
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        raise SystemExit(f"error: clips not found: {', '.join(missing)} (set VPD_DATA_DIR)")
    cpu = read_cpuinfo()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vpd-realtime-") as tmp:
        results = rows(clips, args, Path(tmp))
    header = [f"Real-time factor at 25 fps (≥ 1.00× is real time), {os.cpu_count()} cores, {cpu.model} "
              f"(ISA {cpu.isa}; flags {' '.join(cpu.relevant_flags()) or 'none'}); load average "
              f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; up to {args.max_frames} frames per clip.", ""]
    text = "\n".join(header + table(results))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
