"""Decode + pipeline throughput on files, as a ratio to bare PyAV decoding of the same file.

    python -m offline_train.benchmarks.pipeline [--frames 250] [VIDEO ...]

The reference is the least any pipeline must do: PyAV decodes every frame and converts it
to an RGB array. Ours runs the full path (source with resampling → the framerecord stage
→ JSONL sink → metrics) over the same file in the same run. Generated 720p and 1080p
H.264 clips are always measured; real videos given on the command line are added.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av

from vpd_stream.config import Config
from vpd_stream.runner import build_pipeline
from vpd_stream.sinks import JsonlSink

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from clips import make_clip  # noqa: E402  (the tests' clip generator)


def reference_fps(path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n / (time.perf_counter() - t0), n


def pipeline_fps(path: str, fps: float | None, out_dir: str) -> tuple[float, int, int]:
    config = Config()
    config.pipeline.chain = ["framerecord"]
    config.pipeline.fps = fps
    pipeline = build_pipeline(config, [path], lambda: [JsonlSink(os.path.join(out_dir, "bench.jsonl"))],
                              names=["bench"])
    source = pipeline.sources[0]
    t0 = time.perf_counter()
    summary = pipeline.run()
    seconds = time.perf_counter() - t0
    s = summary.streams[0]
    return source.status.decoded / seconds, source.status.decoded, s.processed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*")
    parser.add_argument("--frames", type=int, default=250)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [
            ("720p H.264 (generated)", str(make_clip(Path(tmp) / "720p.mp4", frames=args.frames, size=(1280, 720), fps=25, gop=50))),
            ("1080p H.264 (generated)", str(make_clip(Path(tmp) / "1080p.mp4", frames=args.frames, size=(1920, 1080), fps=25, gop=50))),
        ] + [(Path(v).name, v) for v in args.videos]
        print(f"cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}")
        print("| input | source frames | PyAV decode+RGB fps (reference) | pipeline fps, source rate | ratio | pipeline fps, 25 fps out | ratio |")
        print("|---|---|---|---|---|---|---|")
        for name, path in inputs:
            ref, n = reference_fps(path)
            ours, _, _ = pipeline_fps(path, None, tmp)
            ours25, _, out25 = pipeline_fps(path, 25.0, tmp)
            print(f"| {name} | {n} | {ref:.1f} | {ours:.1f} | {ours / ref:.2f} | {ours25:.1f} | {ours25 / ref:.2f} |")


if __name__ == "__main__":
    main()
