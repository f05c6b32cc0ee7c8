"""Embed a prepared corpus with a distilled student: per-video feature arrays for the heads.

The student runs through the very code path of the stream's ``student`` plugin
(``plugins.student.resolve_student`` / ``student_engine`` / ``embed_with_mirror``, the
same engines), so the embedding of a frame here equals the one ``vpd-stream run`` computes
for that frame of that file with the same engine.

Concat-VPD: ``concat`` (or ``--model A,B``) names a second student; the features are the
two embeddings stacked, ``[A, B]``, and the flipped features the two flipped ones stacked —
what the student plugin gives with ``model = A`` and ``concat = B``.

Output, in ``FEATURES/``:

* ``NAME.npz`` per video — ``embedding`` (n, d) and ``embedding_flipped`` (n, d) float32,
  ``frame`` (n,) int64, ``pts`` (n,) float64, ``track_id`` (n,) int32, ``pose_score``
  (n,) float32: one row per (frame, athlete) of the store, in the store's row order;
* ``features.json`` — the model (path, sha256, d, teacher; with ``concat`` also ``parts``,
  one entry per stacked student), engine, and the videos.

Each file is written to a temporary name and renamed, so it is complete or absent.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vpd_stream.errors import ConfigError, InputError

from .corpus.store import open_store

FORMAT = "vpd-stream/features"


@dataclass
class EmbedOptions:
    store: str
    model: str  # a student, or "A,B": A's embedding with B's appended (as ``concat``)
    out: str
    concat: str | None = None  # a second student whose embedding is appended (Concat-VPD)
    engine: str = "onnxruntime"
    precision: str | None = None
    max_batch: int = 32
    device: str = "cpu"
    threads: int = 0
    cache_dir: str | None = None
    progress: bool = True


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """One video's feature arrays (what the heads read)."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def model_paths(model: str, concat: str | None = None) -> list[str]:
    """The students to stack: ``model`` (split at commas unless a file has that very name)
    then ``concat``."""
    paths = [model] if Path(model).expanduser().exists() or "," not in model else \
        [m.strip() for m in model.split(",")]
    if concat is not None:
        paths.append(concat)
    if any(not m for m in paths):
        raise ConfigError(f"--model '{model}': an empty model path")
    if len(paths) > 2:
        raise ConfigError(f"at most two students can be concatenated, got {len(paths)}: {', '.join(paths)}")
    return paths


def embed_rows(engines, rgb: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of crops and of their mirrors, batched exactly as the student plugin does."""
    from engines.student import embed_with_mirror

    if not isinstance(engines, (list, tuple)):
        engines = [engines]
    return embed_with_mirror(list(engines), rgb, flow)


def embed_store(opts: EmbedOptions) -> dict[str, Any]:
    from engines import BACKENDS
    from engines.student import student_engine
    from vpd_stream.models.student_loading import check_concat, concat_sidecar, resolve_student

    if opts.engine not in BACKENDS:
        raise ConfigError(f"unknown engine '{opts.engine}'; choose one of {', '.join(BACKENDS)}")
    if opts.max_batch < 2:
        raise ConfigError("--max-batch must be at least 2 (a crop and its mirror)")
    paths = model_paths(opts.model, opts.concat)
    store = open_store(opts.store)
    students = [resolve_student(m) for m in paths]
    check_concat(students, paths)
    student = students[0]
    dim = sum(s.dim for s in students)
    precision = opts.precision or ("fp16" if opts.engine == "tensorrt" else "fp32")
    engines = []
    try:
        for s in students:
            engines.append(student_engine(s, opts.engine, precision=precision, max_batch=opts.max_batch,
                                          device=opts.device if opts.engine != "tensorrt" else "cuda",
                                          threads=opts.threads, cache_root=opts.cache_dir))
    except BaseException:
        for e in engines:
            e.close()
        raise
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror or exc}") from None
    names = store.complete_videos()
    total = 0
    videos: dict[str, Any] = {}
    bar = None
    if opts.progress:
        from tqdm import tqdm

        rows_total = 0
        for name in names:
            with store.open(name) as v:
                rows_total += v.rows
        bar = tqdm(total=rows_total, desc="embed", unit="frame")
    # The plugin runs max_batch // 2 crops (plus their mirrors) per engine call; so do we.
    per_call = max(1, opts.max_batch // 2)
    try:
        for name in names:
            with store.open(name) as video:
                emb = np.zeros((video.rows, dim), np.float32)
                flipped = np.zeros((video.rows, dim), np.float32)
                for sl, crops, flows in video.iter_blocks(per_call):
                    if crops.shape[1:3] != (student.input_size, student.input_size):
                        raise ConfigError(f"{name}: the store's crops are {crops.shape[1]}px, the model expects "
                                          f"{student.input_size}px; prepare the corpus with a matching crop size")
                    emb[sl], flipped[sl] = embed_rows(engines, crops, flows)
                    if bar is not None:
                        bar.update(sl.stop - sl.start)
                a = video.arrays
                arrays = {"embedding": emb, "embedding_flipped": flipped, "frame": a["frame"], "pts": a["pts"],
                          "track_id": a["track_id"], "pose_score": a["pose_score"]}
                attrs = video.attrs()
            path = out / f"{name}.npz"
            tmp = out / f"{name}.tmp-{os.getpid()}.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
            videos[name] = {"file": path.name, "rows": int(len(emb)), "source": attrs.get("source", ""),
                            "fps": attrs.get("fps")}
            total += len(emb)
    finally:
        if bar is not None:
            bar.close()
        for e in engines:
            e.close()
    if len(students) == 1:
        model_info = {"path": paths[0], "sha256": student.weights_sha256, "teacher": student.sidecar.get("teacher")}
    else:
        parts = concat_sidecar(students)["parts"]
        model_info = {"path": ",".join(paths), "teacher": "concat",
                      "parts": [{"path": m, **part} for m, part in zip(paths, parts)]}
    manifest = {"format": FORMAT, "version": 1, "dim": dim, "model": model_info,
                "engine": opts.engine, "precision": precision, "store": str(opts.store), "videos": videos}
    tmp = out / f"features.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "features.json")
    return {"videos": len(videos), "rows": total, "dim": dim}


def compare_with_live(jsonl: str | Path, features: str | Path) -> dict[str, Any]:
    """Compare the embeddings a ``vpd-stream run ... -o LIVE.jsonl`` wrote (rounded to 1e-5)
    with ``embed``'s feature file of the same video, by (frame, track).

    Returns the number of live embeddings, the feature rows, how many of those rows the
    live run did not embed, and the largest absolute difference (plain and flipped).
    """
    feats = load_features(features)
    row = {(int(f), int(t)): i for i, (f, t) in enumerate(zip(feats["frame"], feats["track_id"]))}
    seen: set[tuple[int, int]] = set()
    worst = 0.0
    dim = None
    try:
        lines = Path(jsonl).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {jsonl}: {exc.strerror or exc}") from None
    for line in lines:
        record = json.loads(line) if line.strip() else {}
        if record.get("type") != "frame":
            continue
        for track in record.get("tracks", []):
            if "embedding" not in track:
                continue
            key = (int(record["frame"]), int(track["track_id"]))
            if key not in row:
                raise InputError(f"{jsonl}: frame {key[0]} track {key[1]} was embedded live but is not in {features}")
            i = row[key]
            live, live_f = np.asarray(track["embedding"]), np.asarray(track["embedding_flipped"])
            if live.shape != feats["embedding"][i].shape:
                raise InputError(f"{jsonl}: live embeddings are {live.shape[0]}-d, {features} holds "
                                 f"{feats['embedding'].shape[1]}-d ones")
            dim = live.shape[0]
            worst = max(worst, float(np.abs(live - feats["embedding"][i]).max()),
                        float(np.abs(live_f - feats["embedding_flipped"][i]).max()))
            seen.add(key)
    return {"live": len(seen), "rows": len(row), "rows_not_live": len(set(row) - seen), "dim": dim,
            "max_abs_diff": worst}
