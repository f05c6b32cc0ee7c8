"""Distillation data-path and training throughput.

    python -m offline_train.benchmarks.distill [--store STORE] [--reads 4000] [--workers 2]
                                                [--train-batches 5] [--batch 100]

1. Data loader: random-frame reads per second from the store, through the very
   DataLoader + FrameDataset the trainer uses (goal ≥ 2,000/s on 2 cores), and, as the
   reference measured in the same run, a bare h5py loop reading the same rows one by one.
2. Distillation: frames per second of full training steps (augment + F + D + AdamW) on
   this machine's device, with the time split between waiting for data and compute.

Without ``--store`` a synthetic store (``make_synthetic_store``: stick figures with
flows and poses, written by the corpus writer itself) is generated in a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from offline_train.corpus.store import CorpusStore, VideoStore, VideoWriter
from vpd_stream.flowcodec import encode_flow
from vpd_stream.skeleton import EDGES, NUM_JOINTS, pose_features


def synthetic_keypoints(t: float, phase: float = 0.0) -> np.ndarray:
    """A stick figure in a 128×128 crop doing lunges with arm swings; (13, 3) with scores."""
    a = math.sin(2 * math.pi * (t / 40.0) + phase)
    b = math.cos(2 * math.pi * (t / 27.0) + phase)
    kp = np.array([
        [64, 22], [52, 38], [76, 38], [44 - 10 * a, 54], [84 + 10 * a, 54],
        [38 - 18 * a, 66 - 10 * b], [90 + 18 * a, 66 + 10 * b], [56, 72], [72, 72],
        [52 - 8 * b, 92], [76 + 8 * b, 92], [50 - 12 * b, 112], [78 + 12 * b, 112],
    ], dtype=np.float32)
    scores = np.full((NUM_JOINTS, 1), 0.9, np.float32)
    return np.concatenate([kp, scores], axis=1)


def render(kp: np.ndarray, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    # A smooth background with mild sensor noise: compresses like real crops, not like pure noise.
    ramp = np.linspace(60, 140, 128, dtype=np.float32)
    img = np.stack([ramp[None, :] + 0 * ramp[:, None], ramp[:, None] + 0 * ramp[None, :],
                    np.full((128, 128), 90.0, np.float32)], axis=-1)
    img = np.clip(img + rng.normal(0, 4, size=img.shape), 0, 255).astype(np.uint8)
    for a, b in EDGES:
        pa = tuple(int(round(v)) for v in kp[a, :2])
        pb = tuple(int(round(v)) for v in kp[b, :2])
        cv2.line(img, pa, pb, (230, 200, 40), 5)
    return img


def synthetic_flow(kp: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Flow that is each joint's motion in a disc around it (zero elsewhere)."""
    flow = np.zeros((2, 128, 128), np.float32)
    yy, xx = np.mgrid[:128, :128]
    for j in range(NUM_JOINTS):
        near = (xx - kp[j, 0]) ** 2 + (yy - kp[j, 1]) ** 2 < 100
        flow[0][near] = kp[j, 0] - prev[j, 0]
        flow[1][near] = kp[j, 1] - prev[j, 1]
    return encode_flow(flow)


def make_synthetic_store(root: str | Path, videos: int = 2, frames: int = 60, low_score_every: int = 7) -> CorpusStore:
    """A corpus store written by the real writer; every ``low_score_every``-th row has a weak pose."""
    store = CorpusStore(root)
    store.create()
    for v in range(videos):
        name = f"synthetic{v:02d}"
        attrs = {"name": name, "source": f"synthetic://{v}", "fps": 25.0, "source_fps": 25.0, "width": 128,
                 "height": 128, "teacher": "pose2d", "chain": ["synthetic"], "options": {}, "max_frames": -1}
        writer = VideoWriter(store.video_path(name), attrs)
        prev = synthetic_keypoints(-1, phase=v)
        for t in range(frames):
            kp = synthetic_keypoints(t, phase=v)
            if low_score_every and t % low_score_every == low_score_every - 1:
                kp[:, 2] = 0.2
            writer.add_frame(t, t / 25.0, t)
            writer.add_row(frame=t, pts=t / 25.0, track_id=1, crop=render(kp, seed=1000 * v + t),
                           flow=synthetic_flow(kp, prev), box=np.array([0, 0, 128, 128], np.float32),
                           crop_box=np.array([0, 0, 128, 128], np.float32), keypoints=kp,
                           pose=pose_features(kp), pose_score=float(kp[:, 2].mean()))
            prev = kp
        writer.commit()
    return store


def bench_reads(store_root: str, reads: int, workers: list[int], batch: int) -> list[dict[str, object]]:
    """Random-row reads (crop + flow) per second, every path in the same run.

    * ``bare h5py``: a bare loop, one h5py row read per array (the floor of any h5py reader);
    * ``VideoStore.images``: direct chunk reads vs through h5py, random rows of one batch;
    * the trainer's path: ``FrameDataset`` batches from a DataLoader with N worker processes
      (0 = in-process), with direct chunk reads and with h5py reads.
    """
    from offline_train.distill.dataset import DistillData, RandomFrameSampler, whole_batch

    data = DistillData(store_root, threshold=0.0, val_fraction=0.0)
    n_rows = len(data.targets.row)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, n_rows, size=reads)
    out: list[dict[str, object]] = []

    def row(path: str, rate: float, n: int) -> None:
        out.append({"path": path, "rows_per_s": rate, "rows": n})

    for direct in (True, False):
        videos = [VideoStore(p, direct=direct) for p in data.paths]
        if not direct:  # the reference loop
            t0 = time.perf_counter()
            for i in pick:
                v = videos[int(data.targets.video[i])]
                r = int(data.targets.row[i])
                _ = v.crop[r], v.flow[r]
            row("bare h5py loop (crop[r], flow[r])", len(pick) / (time.perf_counter() - t0), len(pick))
        t0 = time.perf_counter()
        for start in range(0, len(pick), batch):
            p = pick[start:start + batch]
            for vi in np.unique(data.targets.video[p]):
                videos[int(vi)].images(np.sort(data.targets.row[p[data.targets.video[p] == vi]]))
        row(f"VideoStore.images, {'direct chunk reads' if direct else 'h5py'}", len(pick) / (time.perf_counter() - t0),
            len(pick))
        for v in videos:
            v.close()
    for w in workers:
        for direct in (True, False):
            ds = data.subset(np.arange(n_rows), direct=direct)
            sampler = RandomFrameSampler(len(ds), reads, seed=0)
            loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=w,
                                                 collate_fn=whole_batch, prefetch_factor=4 if w else None)
            t0 = time.perf_counter()
            n = 0
            for b in loader:
                n += len(b["target"])
            row(f"trainer's DataLoader, {w} workers, {'direct chunk reads' if direct else 'h5py'}",
                n / (time.perf_counter() - t0), n)
            ds.close()
    return out


def bench_train(store_root: str, batches: int, batch: int, threads: int) -> dict[str, float]:
    from offline_train.distill.augment import augment_batch
    from offline_train.distill.dataset import DistillData
    from offline_train.distill.decoder import DistillNet, MotionDecoder
    from vpd_stream.models.resnet import StudentConfig, build_student

    torch.set_num_threads(threads)
    data = DistillData(store_root, threshold=0.0, val_fraction=0.0)
    ds = data.subset(np.arange(len(data.targets.row)))
    net = DistillNet(build_student(StudentConfig(), seed=0), MotionDecoder(26, 26))
    opt = torch.optim.AdamW(net.parameters(), lr=5e-4)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    wait = compute = 0.0
    frames = 0
    for i in range(batches + 1):  # the first step warms up and is not counted
        t0 = time.perf_counter()
        b = ds.__getitems__(rng.integers(0, len(ds), size=batch).tolist())
        t1 = time.perf_counter()
        rgb, flow, target = augment_batch(b["rgb"], b["flow"], b["target"], b["mask"], gen,
                                          target_flipped=b["target_flipped"])
        loss = ((net(rgb, flow) - target) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i:
            wait += t1 - t0
            compute += t2 - t1
            frames += batch
    return {"train_frames_per_s": frames / (wait + compute), "data_s": wait, "compute_s": compute,
            "device": "cpu", "threads": threads}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store")
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="DataLoader worker counts to measure (0 = in-process)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--train-batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            store = str(Path(tmp) / "store")
            make_synthetic_store(store, videos=4, frames=250)
        reads = bench_reads(store, args.reads, args.workers, args.batch)
        print(json.dumps(reads))
        print(f"random rows (crop + flow), {args.reads} per path, batch {args.batch}; goal >= 2000/s")
        for r in reads:
            print(f"  {r['path']:<55} {r['rows_per_s']:8.0f} rows/s")
        if args.train_batches:
            train = bench_train(store, args.train_batches, args.batch, args.threads)
            print(json.dumps(train))
            share = train["data_s"] / (train["data_s"] + train["compute_s"])
            print(f"distillation (CPU, {args.threads} threads): {train['train_frames_per_s']:.1f} frames/s; "
                  f"data {100 * share:.1f} % / compute {100 * (1 - share):.1f} % of the time")


if __name__ == "__main__":
    main()
