"""Preparing a corpus: many videos over local worker processes or a Ray cluster.

One unit of work is one video (``prepare.prepare_video``); a video either ends complete in
the store or is reported failed with its reason, and never stops the others. Videos that
are already complete on disk are skipped, so a killed run resumes where it stopped. The
parent process alone writes the manifest (after every video), so workers never race on it.

Backends:

* in-process (``workers=1``): simplest, and what tests use;
* local processes (``workers=N``): a spawn-context process pool (fork is unsafe with the
  plugins' threads and torch), each worker with ``threads`` intra-op threads;
* Ray (``ray_address``): one remote task per video; ``auto`` joins the running cluster,
  ``local`` starts a private instance on this machine, anything else is a cluster
  address. A task asks for one GPU when the chain runs on ``cuda``. Ray is optional
  (``pip install 'vpd-stream[distributed]'``).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Callable

from vpd_stream.errors import ConfigError

from .prepare import PrepareSettings, entry_from_store, expected_frames, prepare_video
from .store import CONFIDENT, CorpusStore, VideoEntry, video_names

log = logging.getLogger(__name__)


@dataclass
class CorpusSummary:
    done: list[VideoEntry] = field(default_factory=list)  # prepared in this run
    resumed: list[VideoEntry] = field(default_factory=list)  # already complete on disk
    failed: list[VideoEntry] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> list[VideoEntry]:
        return self.resumed + self.done

    def lines(self) -> list[str]:
        frames = sum(e.frames for e in self.complete)
        rows = sum(e.rows for e in self.complete)
        confident = sum(e.confident_rows for e in self.complete)
        frac = confident / rows if rows else 0.0
        out = [f"prepared {len(self.done)} video(s), {len(self.resumed)} already complete, "
               f"{len(self.failed)} failed, in {self.seconds:.1f} s",
               f"  {frames} frames, {rows} athlete rows, {confident} with a confident pose "
               f"(mean joint score >= {CONFIDENT}): {100 * frac:.1f} %"]
        for e in self.failed:
            out.append(f"  FAILED {e.name} ({e.source}): {e.error}")
        return out


def prepare_corpus(sources: list[str], out: str, settings: PrepareSettings, *, workers: int = 1,
                   ray_address: str | None = None, progress: bool = True) -> CorpusSummary:
    """Prepare every source into the store at ``out``; returns what happened."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    started = time.monotonic()
    store = CorpusStore(out)
    store.create()
    store.remove_temporaries()
    manifest = store.read_manifest()
    summary = CorpusSummary()
    names = video_names(sources)
    todo: list[tuple[str, str]] = []
    for source, name in zip(sources, names):
        if store.is_complete(name):
            entry = entry_from_store(store, name, source)
            manifest.videos[name] = entry
            summary.resumed.append(entry)
        else:
            todo.append((source, name))
    store.write_manifest(manifest)
    bars = _Bars(len(sources), len(summary.resumed),
                 sum(expected_frames(s, settings.fps, settings.max_frames) for s, _ in todo), progress)

    def finished(entry: VideoEntry) -> None:
        manifest.videos[entry.name] = entry
        store.write_manifest(manifest)
        (summary.done if entry.status == "complete" else summary.failed).append(entry)
        bars.video_done(entry)

    try:
        if ray_address:
            _run_ray(todo, out, settings, ray_address, finished, bars)
        elif workers == 1 or len(todo) <= 1:
            for source, name in todo:
                finished(prepare_video(source, name, out, settings, on_frame=bars.frames))
        else:
            _run_processes(todo, out, settings, workers, finished, bars)
    finally:
        bars.close()
    summary.seconds = time.monotonic() - started
    return summary


# -- local processes --------------------------------------------------------------------


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        import cv2

        cv2.setNumThreads(max(1, threads))
    except ImportError:
        pass


def _worker_task(source: str, name: str, out: str, settings: PrepareSettings, progress_queue) -> VideoEntry:
    return prepare_video(source, name, out, settings, on_frame=lambda n: progress_queue.put(n))


def _run_processes(todo: list[tuple[str, str]], out: str, settings: PrepareSettings, workers: int,
                   finished: Callable[[VideoEntry], None], bars: "_Bars") -> None:
    ctx = get_context("spawn")
    manager = ctx.Manager()
    progress_queue = manager.Queue()
    stop = threading.Event()

    def drain() -> None:  # frame ticks from the workers → the frames bar
        while not stop.is_set():
            try:
                bars.frames(progress_queue.get(timeout=0.2))
            except queue.Empty:
                continue

    listener = threading.Thread(target=drain, daemon=True)
    listener.start()
    try:
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(settings.threads,)) as pool:
            futures = {pool.submit(_worker_task, s, n, out, settings, progress_queue): (s, n) for s, n in todo}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    source, name = futures[fut]
                    try:
                        entry = fut.result()
                    except Exception as exc:  # a worker died (out of memory, a crash in native code)
                        entry = VideoEntry(name, source, "failed", error=f"worker process failed: {type(exc).__name__}: {exc}")
                    finished(entry)
    finally:
        stop.set()
        listener.join(timeout=1.0)
        manager.shutdown()


# -- Ray ---------------------------------------------------------------------------------


def _run_ray(todo: list[tuple[str, str]], out: str, settings: PrepareSettings, address: str,
             finished: Callable[[VideoEntry], None], bars: "_Bars") -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'vpd-stream[distributed]' (ray[default])") from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    num_gpus = 1 if settings.device.startswith("cuda") else 0
    out = os.path.abspath(out)  # the workers' working directory is not ours

    @ray.remote(num_cpus=max(1, settings.threads), num_gpus=num_gpus, max_retries=1)
    def task(source: str, name: str) -> VideoEntry:
        _init_worker(settings.threads)
        return prepare_video(source, name, out, settings)

    refs = {task.remote(os.path.abspath(s), n): (s, n) for s, n in todo}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            source, name = refs[ref]
            try:
                entry = ray.get(ref)
                entry.source = source
            except Exception as exc:
                entry = VideoEntry(name, source, "failed", error=f"Ray task failed: {type(exc).__name__}: {exc}")
            bars.frames(entry.frames)  # Ray tasks report frames when their video is done
            finished(entry)


# -- progress ----------------------------------------------------------------------------


class _Bars:
    """Two tqdm bars (videos, frames with ETA) on stderr, or nothing when quiet."""

    def __init__(self, videos: int, already: int, frames: int, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        if enabled:
            from tqdm import tqdm

            self.videos = tqdm(total=videos, initial=already, desc="videos", unit="video", position=0)
            self.frame_bar = tqdm(total=frames or None, desc="frames", unit="frame", position=1)

    def frames(self, n: int) -> None:
        if self.enabled:
            with self._lock:
                self.frame_bar.update(n)

    def video_done(self, entry: VideoEntry) -> None:
        if self.enabled:
            with self._lock:
                self.videos.update(1)
                self.videos.set_postfix_str(f"{entry.name}: {entry.status}")

    def close(self) -> None:
        if self.enabled:
            self.frame_bar.close()
            self.videos.close()
