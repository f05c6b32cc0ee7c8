"""Perception stages on the real videos: per-stage ms/frame, and tracking/pose quality.

    python -m offline_train.benchmarks.perception [--frames 30] [--raft-frames 4]
    python -m offline_train.benchmarks.perception --quality [--annotate DIR]

Speed: lunge_cam01 (a real athlete, 1080×1920 portrait) at 1080p as decoded and resized
to 720p, subsampled to 25 fps. Every stage is timed on the same frames in one run:
the detectors alone, the tracker's update alone (replaying the detections), the tracker
plugin (detect every N frames), pose, crop, DIS flow at each preset and RAFT-small on the
CPU (untrained weights: the cost does not depend on them). Ratios are printed against
the 10 ms/frame target for tracker+crop+flow and RAFT-small against DIS.

Quality: per lunge camera, the distinct athlete ids and the fraction of frames whose
BlazePose mean joint score is ≥ 0.5; on pedestrians_vtest (many people), the track count,
how long tracks live and how often the athlete choice changes.

    python -m offline_train.benchmarks.perception --athletes [--clips a,b] [--annotate DIR]

Athletes (issue 13), tracker + pose as `vpd-stream run CLIP --chain tracker,pose` runs them
(25 fps, native resolution), on the real sports clips: per clip the fraction of frames
with an athlete whose mean pose score is ≥ 0.5 (and with all ``max_athletes`` of them),
the athlete ids seen, id switches (athlete ids seen beyond the first full set), and the
tracker and pose cost per frame; on tennis_broadcast_rally (max_athletes = 2) the recall
and precision at IoU 0.5 of the athlete boxes against the hand labels in
tests/data/tennis_broadcast_rally_boxes.json.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import av
import cv2
import numpy as np

from vpd_stream.data_dir import data_root
from vpd_stream.frame import Frame

TARGET_MS = 10.0


def data_dir() -> Path:
    path = data_root()
    if not path.is_dir():
        raise SystemExit(f"real data not found at {path}; set VPD_DATA_DIR")
    return path


def decode(path: Path, fps: float = 25.0, limit: int | None = None, height: int | None = None,
           stream_id: str = "s") -> Iterator[Frame]:
    """The frames ``vpd-stream run`` sees: decoded and resampled to ``fps`` by the real source
    (vpd_stream.sources.VideoSource: nearest source frame to each output time, prev_rgb the
    source frame prev_step earlier, portrait video turned upright), optionally resized to
    ``height`` (the speed benchmark's 720p rows)."""
    import threading

    from vpd_stream.sources import VideoSource

    source = VideoSource(str(path), stream_id, target_fps=fps, max_frames=limit)
    source.check()
    for frame in source.frames(threading.Event()):
        if height is not None and frame.rgb.shape[0] != height:
            scale = height / frame.rgb.shape[0]
            size = (round(frame.rgb.shape[1] * scale), height)
            frame.rgb = cv2.resize(frame.rgb, size, interpolation=cv2.INTER_AREA)
            if frame.prev_rgb is not None:
                frame.prev_rgb = cv2.resize(frame.prev_rgb, size, interpolation=cv2.INTER_AREA)
        yield frame


def _ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times) if times else float("nan")


def _time_each(fn: Any, items: list[Any]) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t0)
    return out


class _Replay:
    """A detector that returns detections recorded earlier (times the tracker alone)."""

    def __init__(self, results: list[list[Any]]) -> None:
        self.results, self.i = results, 0

    def detect(self, rgb: np.ndarray) -> list[Any]:
        out = self.results[self.i % len(self.results)]
        self.i += 1
        return out

    def close(self) -> None:
        pass


def bench_resolution(video: Path, height: int, frames: int, raft_frames: int) -> dict[str, float]:
    from plugins.crop import CropPlugin
    from plugins.flow import FlowPlugin
    from plugins.pose import PosePlugin
    from plugins.tracker import TrackerPlugin
    from plugins.person_detector import BlazePoseDetector, HogDetector

    clip = list(decode(video, limit=frames, height=height))
    rgbs = [f.rgb for f in clip]
    r: dict[str, float] = {}
    blaze = BlazePoseDetector()
    blaze.detect(rgbs[0])  # warm-up
    r["detector blazepose (per call)"] = _ms(_time_each(blaze.detect, rgbs))
    recorded = [blaze.detect(x) for x in rgbs]
    hog = HogDetector(max_side=640)
    r["detector hog, side 640 (per call)"] = _ms(_time_each(hog.detect, rgbs[:8]))

    replay = TrackerPlugin(TrackerPlugin.Options(detect_every=1))
    replay.setup(replay.context)
    replay._detector = _Replay(recorded)
    r["tracker update (norfair + athlete selection)"] = _ms(_time_each(lambda f: replay.process([f]), _copies(clip)))

    t_track: dict[int, list[float]] = {}
    for every in (2, 5):
        frames_n = _copies(clip)
        tracker = TrackerPlugin(TrackerPlugin.Options(detect_every=every))
        tracker.setup(tracker.context)
        tracker.process([_copies(clip)[0]])  # warm-up on its own stream state
        tracker._streams.clear()
        t_track[every] = _time_each(lambda f: tracker.process([f]), frames_n)
        r[f"tracker plugin (detect every {every}), mean"] = 1000 * statistics.mean(t_track[every])
        tracker.close()
        if every == 2:
            chain_frames = frames_n  # the default configuration feeds the later stages

    crop = CropPlugin()
    t_crop = _time_each(lambda f: crop.process([f]), chain_frames)
    r["crop (current + previous)"] = _ms(t_crop)
    flows: dict[str, list[float]] = {}
    for preset in ("ultrafast", "fast", "medium"):
        plugin = FlowPlugin(FlowPlugin.Options(dis_preset=preset))
        flows[preset] = _time_each(lambda f: plugin.process([f]), chain_frames)
        r[f"flow DIS {preset}"] = _ms(flows[preset])
    for every in (2, 5):
        chain = [a + b + c for a, b, c in zip(t_track[every], t_crop, flows["fast"])]
        r[f"chain tracker(every {every})+crop+flow(DIS fast), mean"] = 1000 * statistics.mean(chain)

    pose = PosePlugin()
    pose.setup(pose.context)
    pose.process([chain_frames[0]])  # warm-up
    r["pose (BlazePose full, per athlete)"] = _ms(_time_each(lambda f: pose.process([f]), chain_frames))
    pose.close()

    if raft_frames > 0:
        from engines.torch_engine import TorchEngine
        from plugins.flow import _raft_uint8_module
        from vpd_stream.models.raft import build_raft

        engine = TorchEngine(_raft_uint8_module(build_raft("small")), max_batch=1)
        crops = [f.annotations["crop"] for f in chain_frames if f.annotations.get("crop")][:raft_frames + 1]
        pairs = [next(iter(c.values())) for c in crops]
        run = lambda c: engine.run({"image1": c.prev_rgb[None], "image2": c.rgb[None]})  # noqa: E731
        run(pairs[0])
        r["flow RAFT-small, 12 iterations, CPU"] = _ms(_time_each(run, pairs[1:]))
    return r


def _copies(clip: list[Frame]) -> list[Frame]:
    return [Frame(f.stream_id, f.index, f.pts, f.rgb, f.source_index, f.source_fps, f.target_fps, f.prev_rgb,
                  f.prev_step) for f in clip]


def speed(frames: int, raft_frames: int) -> None:
    import torch

    video = data_dir() / "videos" / "lunge_cam01.mp4"
    print(f"perception stages on {video.name}, {frames} frames at 25 fps, {os.cpu_count()} CPU cores, "
          f"cv2 threads {cv2.getNumThreads()}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    results = {h: bench_resolution(video, h, frames, raft_frames) for h in (1280, 1920)}
    names = list(results[1280])
    print(f"{'stage':50s} {'720p ms':>9s} {'1080p ms':>9s}")
    for name in names:
        print(f"{name:50s} {results[1280][name]:9.2f} {results[1920].get(name, float('nan')):9.2f}")
    for h, label in ((1280, "720p"), (1920, "1080p")):
        chains = " ".join(f"every {n}: {results[h][f'chain tracker(every {n})+crop+flow(DIS fast), mean'] / TARGET_MS:.2f}"
                          for n in (2, 5))
        print(f"{label}: chain / {TARGET_MS:.0f} ms target: detect {chains}"
              + (f"; RAFT-small / DIS fast = {results[h]['flow RAFT-small, 12 iterations, CPU'] / results[h]['flow DIS fast']:.0f}x"
                 if raft_frames > 0 else ""))


@dataclass
class TrackStats:
    frames: int
    track_ids: collections.Counter
    athlete_per_frame: list[tuple[int, ...]]
    pose_scores: list[float]

    @property
    def athlete_ids(self) -> set[int]:
        return {tid for ids in self.athlete_per_frame for tid in ids}

    @property
    def athlete_coverage(self) -> float:
        return sum(1 for ids in self.athlete_per_frame if ids) / max(1, self.frames)

    @property
    def athlete_changes(self) -> int:
        firsts = [ids[0] for ids in self.athlete_per_frame if ids]
        return sum(1 for a, b in zip(firsts, firsts[1:]) if a != b)

    @property
    def confident_fraction(self) -> float:
        return float(np.mean(np.array(self.pose_scores) >= 0.5)) if self.pose_scores else 0.0


def _write_annotated(writer: Any, path: Path, frame: Frame, plugins: Any) -> Any:
    """Append ``frame``, drawn by ``plugins`` and labelled with its index, to the annotated video
    at ``path``; the writer is opened on the first frame (None before). Returns the writer."""
    image = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
    for p in plugins:
        p.draw(frame, image)
    cv2.putText(image, f"frame {frame.index}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2)
    if writer is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (image.shape[1], image.shape[0]))
    writer.write(image)
    return writer


def run_chain(video: Path, plugins: list[Any], limit: int | None = None, annotate: Path | None = None) -> TrackStats:
    for p in plugins:
        p.setup(p.context)
    writer = None
    stats = TrackStats(0, collections.Counter(), [], [])
    for frame in decode(video, limit=limit):
        for p in plugins:
            p.process([frame])
        tracks = frame.annotations.get("tracks", {})
        stats.frames += 1
        stats.track_ids.update(tracks.keys())
        stats.athlete_per_frame.append(tuple(t for t, tr in tracks.items() if tr.is_athlete))
        if "pose" in frame.annotations:
            stats.pose_scores.append(max([p.mean_score for p in frame.annotations["pose"].values()], default=0.0))
        if annotate is not None:
            writer = _write_annotated(writer, annotate, frame, plugins)
    for p in plugins:
        p.close()
    if writer is not None:
        writer.release()
    return stats


def quality(annotate_dir: str | None, pedestrian_frames: int | None, lunge: bool = True) -> None:
    from plugins.pose import PosePlugin
    from plugins.tracker import TrackerPlugin

    videos = data_dir() / "videos"
    out = Path(annotate_dir) if annotate_dir else None
    print("| video | frames (25 fps) | track ids | athlete ids | frames with athlete | pose mean score ≥ 0.5 |")
    print("|---|---|---|---|---|---|")
    for cam in range(1, 5) if lunge else ():
        name = f"lunge_cam{cam:02d}.mp4"
        s = run_chain(videos / name, [TrackerPlugin(), PosePlugin()],
                      annotate=out / f"{name[:-4]}_annotated.mp4" if out else None)
        print(f"| {name} | {s.frames} | {len(s.track_ids)} | {sorted(s.athlete_ids)} | "
              f"{s.athlete_coverage:.0%} | {s.confident_fraction:.0%} |")
    s = run_chain(videos / "pedestrians_vtest.avi", [TrackerPlugin(TrackerPlugin.Options(detector="hog"))],
                  limit=pedestrian_frames, annotate=out / "pedestrians_annotated.mp4" if out else None)
    lengths = np.array(list(s.track_ids.values()))
    held = collections.Counter(ids[0] for ids in s.athlete_per_frame if ids)
    print(f"\npedestrians_vtest.avi (HOG, detect every 2nd frame): {s.frames} frames, {len(s.track_ids)} tracks, "
          f"{int((lengths >= 10).sum())} lasting ≥ 10 frames, median track length {int(np.median(lengths))} frames; "
          f"athlete present on {s.athlete_coverage:.0%} of frames, choice changed {s.athlete_changes} times; "
          f"frames held per athlete id: {dict(held.most_common())}")


ATHLETE_CLIPS = {  # clip -> max_athletes
    "tennis_broadcast_rally.mp4": 2, "tennis_forehand_backhand_davis.mp4": 1, "golf_swing_golfdb.mp4": 1,
    "clean_and_jerk_mmskeleton.mp4": 1, "sprint_start_sports2d.mp4": 1, "archery_kinetics.avi": 1,
    "basketball_dribble.mp4": 1, "lunge_cam01.mp4": 1, "pedestrians_vtest.avi": 1, "walkers_sports2d.mp4": 1,
}
BROADCAST_LABELS = Path(__file__).resolve().parents[2] / "tests" / "data" / "tennis_broadcast_rally_boxes.json"


def load_labelled_boxes(path: Path = BROADCAST_LABELS) -> tuple[float, dict[int, list[list[float]]]]:
    """(source fps, source frame -> the labelled boxes) from a hand-label file."""
    import json

    data = json.loads(Path(path).read_text())
    return float(data["source_fps"]), {int(f["source_frame"]): [list(map(float, b)) for b in f["players"].values()]
                                       for f in data["frames"]}


def box_recall_precision(predicted: dict[int, list[np.ndarray]], labelled: dict[int, list[list[float]]],
                         iou: float = 0.5) -> tuple[float, float, int, int]:
    """Recall and precision at ``iou`` over the labelled frames (one-to-one greedy matching):
    (recall, precision, labelled boxes, predicted boxes)."""
    from plugins.person_detector import box_iou

    hits = n_gt = n_pred = 0
    for frame, gt in labelled.items():
        pred = predicted.get(frame, [])
        n_gt += len(gt)
        n_pred += len(pred)
        if not pred or not gt:
            continue
        m = box_iou(np.array(gt), np.stack(pred))
        while m.size and m.max() >= iou:
            i, j = np.unravel_index(int(m.argmax()), m.shape)
            hits += 1
            m[i, :] = -1.0
            m[:, j] = -1.0
    return hits / max(1, n_gt), hits / max(1, n_pred), n_gt, n_pred


@dataclass
class AthleteRun:
    frames: int = 0
    athletes: list[tuple[int, ...]] = None  # per frame
    confident: list[int] = None  # per frame: athletes with mean pose score ≥ 0.5
    boxes: dict[int, list[np.ndarray]] = None  # source frame -> athlete boxes
    tracker_s: list[float] = None
    pose_s: list[float] = None
    detector_calls: int = 0  # person detector calls (one per region looked at)
    pose_calls: int = 0  # athlete crops posed

    @property
    def ids(self) -> list[int]:
        return sorted({t for a in self.athletes for t in a})

    def switches(self, max_athletes: int) -> int:
        first = next((a for a in self.athletes if len(a) >= max_athletes), None) or \
            next((a for a in self.athletes if a), ())
        return len(self.ids) - len(first)

    def fraction(self, least: int) -> float:
        return sum(1 for c in self.confident if c >= least) / max(1, self.frames)


def run_athletes(video: Path, max_athletes: int, annotate: Path | None = None, limit: int | None = None,
                 tracker_options: dict | None = None, pose_options: dict | None = None) -> AthleteRun:
    from plugins.pose import PosePlugin
    from plugins.tracker import TrackerPlugin

    tracker = TrackerPlugin(TrackerPlugin.Options(max_athletes=max_athletes, **(tracker_options or {})))
    pose = PosePlugin(PosePlugin.Options(**(pose_options or {})))
    for p in (tracker, pose):
        p.setup(p.context)
    run = AthleteRun(0, [], [], {}, [], [])
    writer = None
    for frame in decode(video, limit=limit):
        t0 = time.perf_counter()
        tracker.process([frame])
        t1 = time.perf_counter()
        pose.process([frame])
        t2 = time.perf_counter()
        run.tracker_s.append(t1 - t0)
        run.pose_s.append(t2 - t1)
        tracks = frame.annotations["tracks"]
        athletes = tuple(t for t, tr in tracks.items() if tr.is_athlete)
        run.frames += 1
        run.athletes.append(athletes)
        poses = frame.annotations["pose"]
        run.confident.append(sum(1 for t in athletes if t in poses and poses[t].mean_score >= 0.5))
        run.pose_calls += sum(1 for t, tr in tracks.items() if tr.is_athlete or pose.options.all_tracks)
        run.boxes[frame.source_index] = [tracks[t].box for t in athletes]
        if annotate is not None:
            writer = _write_annotated(writer, annotate, frame, (tracker, pose))
    o = tracker.options
    run.detector_calls = getattr(tracker._detector, "calls", None) or -(-run.frames // o.detect_every)
    for p in (tracker, pose):
        p.close()
    if writer is not None:
        writer.release()
    return run


def unit_costs(video: Path, calls: int = 20) -> tuple[float, float]:
    """Median ms of one BlazePose detector call on a 360-px tile and of one pose call on a
    256-px athlete crop (mode roi), on a frame of ``video``, timed in the same run as the clips."""
    from plugins.person_detector import BlazePoseDetector
    from plugins.pose import BlazePoseLandmarks

    rgb = next(iter(decode(video, limit=1))).rgb
    tile = np.ascontiguousarray(rgb[0:360, 1080:1440])
    crop = cv2.resize(np.ascontiguousarray(rgb[100:400, 1100:1400]), (256, 256))
    det, lm = BlazePoseDetector(), BlazePoseLandmarks()
    det.detect(tile), lm.estimate(crop)
    d = _time_each(det.detect, [tile] * calls)
    p = _time_each(lm.estimate, [crop] * calls)
    det.close(), lm.close()
    return _ms(d), _ms(p)


def athletes(clips: list[str] | None, annotate_dir: str | None, pose_mode: str) -> None:
    import platform

    videos = data_dir() / "videos"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    print(f"tracker + pose (mode {pose_mode}) per clip, 25 fps, native resolution; {os.cpu_count()} cores ({cpu}); "
          f"load average at start {os.getloadavg()[0]:.1f}")
    tile_ms, pose_ms = unit_costs(videos / "tennis_broadcast_rally.mp4")
    print(f"unit costs in this run: one detector call on a 360-px tile {tile_ms:.1f} ms, one pose call "
          f"(256-px crop) {pose_ms:.1f} ms (load {os.getloadavg()[0]:.1f})")
    print("| clip | size | frames | max athletes | frames with an athlete | with an athlete, pose ≥ 0.5 | "
          "with all of them, pose ≥ 0.5 | athlete ids | id switches | detector calls/frame | pose calls/frame | "
          "tracker ms/frame | pose ms/frame | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = Path(annotate_dir) if annotate_dir else None
    for name in clips or list(ATHLETE_CLIPS):
        k = ATHLETE_CLIPS.get(name, 1)
        path = videos / name
        with av.open(str(path)) as c:
            size = f"{c.streams.video[0].codec_context.width}×{c.streams.video[0].codec_context.height}"
        r = run_athletes(path, k, annotate=out / f"{Path(name).stem}_athletes.mp4" if out else None,
                         pose_options={"mode": pose_mode})
        tracked = sum(1 for a in r.athletes if a) / max(1, r.frames)
        print(f"| {name} | {size} | {r.frames} | {k} | {tracked:.0%} | {r.fraction(1):.0%} | {r.fraction(k):.0%} | {r.ids} | "
              f"{r.switches(k)} | {r.detector_calls / r.frames:.2f} | {r.pose_calls / r.frames:.2f} | "
              f"{1000 * statistics.mean(r.tracker_s):.1f} | {1000 * statistics.mean(r.pose_s):.1f} | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)
        if name == "tennis_broadcast_rally.mp4":
            _, labelled = load_labelled_boxes()
            rec, prec, n_gt, n_pred = box_recall_precision(r.boxes, labelled)
            broadcast = (rec, prec, n_gt, n_pred)
    if clips is None or "tennis_broadcast_rally.mp4" in clips:
        rec, prec, n_gt, n_pred = broadcast
        print(f"\ntennis_broadcast_rally athlete boxes vs hand labels: recall {rec:.3f}, precision {prec:.3f} at IoU 0.5 "
              f"({n_gt} labelled boxes on {len(labelled)} frames, {n_pred} athlete boxes on those frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30, help="frames per resolution for the speed run")
    parser.add_argument("--raft-frames", type=int, default=3, help="crops timed for RAFT-small (0 = skip)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads for RAFT (2 spinning threads on a shared CPU ran 15x slower)")
    parser.add_argument("--quality", action="store_true", help="tracking/pose quality instead of speed")
    parser.add_argument("--annotate", help="with --quality: write annotated videos into this directory")
    parser.add_argument("--pedestrian-frames", type=int, default=200, help="with --quality: frames of pedestrians_vtest "
                        "(HOG is slow: ~0.3-1 s a call on 2 shared cores)")
    parser.add_argument("--skip-lunge", action="store_true", help="with --quality: pedestrians_vtest only")
    parser.add_argument("--athletes", action="store_true", help="tracker + pose on the real sports clips (issue 13)")
    parser.add_argument("--clips", help="with --athletes: comma-separated clip names (default: all ten)")
    parser.add_argument("--pose-mode", default="roi", choices=("roi", "detect"), help="with --athletes: the pose mode")
    args = parser.parse_args()
    cv2.setNumThreads(min(2, os.cpu_count() or 1))
    import torch

    torch.set_num_threads(args.torch_threads)
    if args.athletes:
        athletes(args.clips.split(",") if args.clips else None, args.annotate, args.pose_mode)
    elif args.quality:
        quality(args.annotate, args.pedestrian_frames, lunge=not args.skip_lunge)
    else:
        speed(args.frames, args.raft_frames)


if __name__ == "__main__":
    main()
