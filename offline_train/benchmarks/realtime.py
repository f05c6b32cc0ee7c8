"""Real time on real footage: the default chain and the VPD chain on the issue-16 clips.

    python -m offline_train.benchmarks.realtime [--clips lunge_cam01.mp4,...] [--chains default,vpd]
        [--max-frames 250] [--student DISTILLED.safetensors] [--workers 1,0] [--no-sequential] [--out table.md]

Every row runs in a fresh child process (so peak RSS and CPU time are that row's alone), all
in one invocation, and prints: frames processed at 25 fps, the real-time factor (media
seconds / processing seconds, from the first frame written to the last; "whole" counts the
model setup too), CPU utilization over that interval (100 % = one core), peak RSS, and the
per-stage breakdown (ms of stage time per frame, from the vpd_stage_duration_seconds
histogram; stages overlap in their threads, so they add up to more than the wall time when
cores are busy). The header has the CPU model, flags, core count and the load average.

Clips (``--clips``): lunge_cam01 (1080×1920 portrait, 60 fps), tennis_forehand_backhand_davis
(854×480), tennis_broadcast_rally (1920×1080, both players: ``max_athletes`` 2, as
offline_train.benchmarks.perception.ATHLETE_CLIPS says per clip) and sprint_start_sports2d
(1280×720). Rows per clip: decode only (``framerecord``); the default chain as configured
by default (the tracker's detector pool and the pose pool, ``detect_workers`` / ``workers``
= one per core), and the same chain sequential (``--no-sequential`` leaves it out: both
pools at 1, every model call one after the other in its stage's thread, the path before
issue 16), with ``--workers`` also replicas of the parallel-safe stages (0 = one per core,
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
CLIPS = "lunge_cam01.mp4,tennis_forehand_backhand_davis.mp4,tennis_broadcast_rally.mp4,sprint_start_sports2d.mp4"
DEFAULT_CHAIN = ["tracker", "pose", "crop", "flow", "detector", "recognizer"]
SEQUENTIAL = {"tracker": {"detect_workers": 1}, "pose": {"workers": 1}}  # one model call at a time per stage


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

    reads_pixels = False  # as the JSONL sink: frames drop their pixels after the last stage reading them

    def __init__(self) -> None:
        self.first = self.last = None
        self.cpu_first = self.cpu_last = 0.0
        self.frames = 0
        self.posed: dict[int, int] = {}  # athletes posed on a frame -> frames

    def write_frame(self, frame, plugins) -> None:
        now = time.perf_counter()
        posed = len(frame.annotations.get("pose") or {})
        self.posed[posed] = self.posed.get(posed, 0) + 1
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
    if spec.get("queue_mb") is not None:
        config.pipeline.queue_mb = spec["queue_mb"]
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
            "stages": stages, "workers": pipeline.stage_workers, "notes": summary.notes,
            "athletes": spec.get("plugins", {}).get("tracker", {}).get("max_athletes", 1),
            "posed": {str(k): v for k, v in sorted(timing.posed.items())}}


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


def _merge(*tables: dict[str, dict]) -> dict[str, dict]:
    """``[plugins.*]`` tables merged, later ones winning per option."""
    out: dict[str, dict] = {}
    for table in tables:
        for name, options in table.items():
            out[name] = {**out.get(name, {}), **options}
    return out


def specs_for(clips: list[Path], args, vpd_heads: dict | None = None, int8: str | None = None,
              cache: Path | None = None) -> list[tuple[str, str, dict]]:
    """(clip, configuration, child spec) of every row, in the order they run."""
    from offline_train.benchmarks.perception import ATHLETE_CLIPS

    specs = []
    for clip in clips:
        base = {"clip": str(clip), "max_frames": args.max_frames}
        athletes = ATHLETE_CLIPS.get(clip.name, 1)
        tracker = {"tracker": {"max_athletes": athletes}}
        players = f"{athletes} athletes, " if athletes > 1 else ""
        specs.append((clip.name, "decode only (framerecord)", {**base, "chain": ["framerecord"]}))
        if "default" in args.chains:
            for w in args.workers:
                label = "" if w == 1 else ", replicas" if w == 0 else f", {w} replicas"
                specs.append((clip.name, f"default chain, {players}pools (the default){label}",
                              {**base, "chain": DEFAULT_CHAIN, "plugins": tracker, "workers": w}))
                if args.sequential:
                    specs.append((clip.name, f"default chain, {players}sequential{label}",
                                  {**base, "chain": DEFAULT_CHAIN, "plugins": _merge(tracker, SEQUENTIAL), "workers": w}))
        if "vpd" not in args.chains:
            continue
        student = {"random_init": True, "cache_dir": str(cache)}
        specs.append((clip.name, f"VPD chain, {players}ResNet-34 fp32 (random weights)",
                      {**base, "chain": ["vpd"], "plugins": _merge(tracker, vpd_heads or {}, {"student": student})}))
        specs.append((clip.name, f"VPD chain, {players}ResNet-34 int8 (random weights, speed only)",
                      {**base, "chain": ["vpd"], "plugins": _merge(tracker, vpd_heads or {},
                                                                   {"student": {"model": int8, "cache_dir": str(cache)}})}))
        if args.student:
            specs.append((clip.name, f"VPD chain, {players}{Path(args.student).parent.name}/{Path(args.student).name} auto",
                          {**base, "chain": ["vpd"], "plugins": _merge(tracker, vpd_heads or {}, {
                              "student": {"model": args.student, "precision": "auto"}})}))
    return specs


def rows(clips: list[Path], args, tmp: Path) -> list[tuple[str, str, dict]]:
    vpd_heads, int8, cache = None, None, tmp / "cache"
    if "vpd" in args.chains:
        heads = _embedding_heads(tmp)
        vpd_heads = {"detector": {"weights": heads["detector"]}, "recognizer": {"weights": heads["recognizer"]}}
        int8 = _int8_resnet34(tmp, cache)
    specs = specs_for(clips, args, vpd_heads, int8, cache)
    for _, _, spec in specs:
        spec["queue_mb"] = args.queue_mb
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
    lines = ["| clip | configuration | frames | real-time factor | whole run | CPU | peak RSS | all athletes posed | "
             "per stage, ms/frame | load after |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    notes = []
    for clip, label, r in results:
        if "error" in r:
            lines.append(f"| {clip} | {label} | – | {r['error']} | | | | | | {r['load']:.1f} |")
            continue
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        posed = r.get("posed", {})
        if "pose" in r["stages"]:  # frames on which every athlete slot had a pose
            full = sum(v for k, v in posed.items() if int(k) >= r.get("athletes", 1))
            posed_cell = f"{full} of {r['frames']}"
        else:
            posed_cell = "–"
        lines.append(f"| {clip} | {label} | {r['frames']} | {r['rtf']:.2f}× | {r['rtf_whole']:.2f}× | {r['cpu']:.0f} % | "
                     f"{r['rss_mb']:.0f} MB | {posed_cell} | {stages} | {r['load']:.1f} |")
        notes += [f"{clip}, {label}: {n}" for n in r.get("notes", [])]
    return lines + ([""] + notes if notes else [])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--clips", default=CLIPS, help="comma-separated clips under $VPD_DATA_DIR/videos")
    ap.add_argument("--max-frames", type=int, default=250, help="frames per clip (at 25 fps)")
    ap.add_argument("--student", help="a distilled student (.safetensors): a VPD chain row under the CPU dispatch")
    ap.add_argument("--chains", default="default,vpd", help="which chains get rows: default, vpd or both")
    ap.add_argument("--workers", default="1", help="stage_workers of the default-chain rows (0 = one per core)")
    ap.add_argument("--no-sequential", dest="sequential", action="store_false",
                    help="no default-chain row with the pools at 1 (the sequential path)")
    ap.add_argument("--queue-mb", type=int, default=None,
                    help="[pipeline] queue_mb of every row (default: the configuration's own)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per row")
    ap.add_argument("--out", help="also write the markdown here")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from engines.dispatch import read_cpuinfo

    args.workers = [int(w) for w in args.workers.split(",")]
    args.chains = {c.strip() for c in args.chains.split(",") if c.strip()}
    if not args.chains or args.chains - {"default", "vpd"}:
        raise SystemExit(f"error: --chains takes default, vpd or both, got {','.join(sorted(args.chains)) or 'nothing'}")
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
