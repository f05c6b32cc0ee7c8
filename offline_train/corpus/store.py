"""The corpus store: one HDF5 file per video, plus a JSON manifest of videos and their status.

Why HDF5 (h5py) and not zarr: h5py is already a dependency of the project, while zarr
would be a new one; and one *file* per video makes atomic completion trivial — the writer
fills ``videos/NAME.h5.tmp-PID`` and ``os.replace``s it to ``videos/NAME.h5`` only after
the stream ended cleanly, so a video is either complete or absent (a zarr store is a
directory tree of chunk files). Image arrays are chunked one row per chunk, so a random
row costs one chunk read per array, and compressed with Blosc-LZ4 (through hdf5plugin,
which registers the filter with h5py). Measured on real crops (see BENCHMARKS.md, corpus store section):
LZF and gzip halve the size but decode at under 1,000 rows/s per core, which alone would
miss the 2,000 random reads/s goal; Blosc-LZ4 keeps 56 % of the bytes and reads ~5x
faster. HDF5's object timestamps are off, so preparing a video twice writes the same bytes.

Layout of ``videos/NAME.h5`` — one *row* per (frame, tracked athlete) that has a crop
and a flow::

    crop        (R, 128, 128, 3) uint8   the athlete's crop (crop plugin)
    flow        (R, 2, 128, 128) uint8   quantized flow, vpd_stream.flowcodec encoding
    pose        (R, 26) float32          teacher pose, VPD-normalized (skeleton.pose_features)
    keypoints   (R, 13, 3) float32       teacher joints in image pixels + per-joint score
    pose_score  (R,) float32             mean joint score (0 where the teacher saw nothing)
    box         (R, 4) float32           the track's box (x1, y1, x2, y2)
    crop_box    (R, 4) float32           the square the crop was cut from
    track_id    (R,) int32
    frame       (R,) int64               frame index in the resampled stream
    pts         (R,) float64             presentation time in seconds
    prev_row    (R,) int64               row of the same track in the previous frame, or -1
    frames/index, frames/pts, frames/source_index   every processed frame (with or without rows)
    mask        (R, 128, 128) uint8      optional foreground mask (only if a plugin provides one)

Attributes: format, version, name, source, fps (target), source_fps, frames, rows,
confident_rows, width, height, teacher, chain, options (JSON).

``manifest.json`` at the store root lists every video with its status (complete or
failed, with the reason) and is rewritten atomically by the one process that owns it.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import h5py
import hdf5plugin  # registers the Blosc filter with h5py (also needed to read the files)
import numpy as np

from vpd_stream.errors import InputError
from vpd_stream.skeleton import FEATURE_DIM, NUM_JOINTS

FORMAT = "vpd-stream/corpus"
VERSION = 1
CROP = 128
MANIFEST = "manifest.json"
VIDEOS_DIR = "videos"
CONFIDENT = 0.5  # the default weak-pose threshold, for the summary's confident fraction

# name -> (per-row shape, dtype, compressed?)
ROW_ARRAYS: dict[str, tuple[tuple[int, ...], str, bool]] = {
    "crop": ((CROP, CROP, 3), "uint8", True),
    "flow": ((2, CROP, CROP), "uint8", True),
    "pose": ((FEATURE_DIM,), "float32", False),
    "keypoints": ((NUM_JOINTS, 3), "float32", False),
    "pose_score": ((), "float32", False),
    "box": ((4,), "float32", False),
    "crop_box": ((4,), "float32", False),
    "track_id": ((), "int32", False),
    "frame": ((), "int64", False),
    "pts": ((), "float64", False),
    "prev_row": ((), "int64", False),
}


def _compression(compressed: bool) -> dict[str, Any]:
    # No shuffle: on uint8 images it gains little and costs read speed (measured).
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.NOSHUFFLE)) if compressed else {}
IMAGE_ARRAYS = ("crop", "flow", "mask")
BLOSC_FILTER = 32001  # the HDF5 filter id of Blosc (hdf5plugin.Blosc)


_blosc_decompress = None


def _blosc() -> Any:
    """``blosc_decompress_ctx`` from the Blosc library hdf5plugin ships (it is the HDF5
    filter's own code, so it decodes exactly what the filter wrote). ctypes releases the GIL
    around the call."""
    global _blosc_decompress
    if _blosc_decompress is None:
        lib = ctypes.CDLL(os.path.join(hdf5plugin.PLUGIN_PATH, "libh5blosc.so"))
        fn = lib.blosc_decompress_ctx
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        _blosc_decompress = fn
    return _blosc_decompress


class RowChunks:
    """Direct reads of an image array stored one row per chunk, bypassing HDF5's read path.

    At open we ask HDF5 once where every row's chunk lies in the file (``chunk_iter``); the
    file is memory-mapped, and a read is one Blosc decode from the mapped page cache straight
    into the caller's array (or one copy, for chunks stored without the filter): no
    per-read HDF5 call, no intermediate buffer. On this shared box a random row costs a few
    memory passes over ~80 KB, so copies are what a read costs (measured: BENCHMARKS.md).
    Only layouts this exactly understands take this path (one uint8 row per chunk, no filter
    or Blosc alone); ``VideoStore`` falls back to h5py for anything else.
    """

    def __init__(self, ds: h5py.Dataset, mapped: np.ndarray) -> None:
        rows = int(ds.shape[0])
        self.row_shape = tuple(ds.shape[1:])
        if ds.chunks != (1, *self.row_shape) or ds.dtype != np.uint8 or not hasattr(ds.id, "chunk_iter"):
            raise NotImplementedError("not one uint8 row per chunk")
        dcpl = ds.id.get_create_plist()
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        if filters not in ([], [BLOSC_FILTER]):
            raise NotImplementedError(f"filters {filters}")
        self.compressed = bool(filters)
        self.row_bytes = int(np.prod(self.row_shape))
        self.fill = int(ds.fillvalue)
        self.offset = np.full(rows, -1, np.int64)
        self.size = np.zeros(rows, np.int64)
        self.raw = np.zeros(rows, bool)  # the filter was skipped for this chunk (stored as is)

        def visit(info: Any) -> None:
            r = info.chunk_offset[0]
            if r < rows:
                self.offset[r], self.size[r], self.raw[r] = info.byte_offset, info.size, bool(info.filter_mask & 1)

        ds.id.chunk_iter(visit)
        if (self.offset + self.size).max(initial=0) > len(mapped):
            raise InputError(f"{ds.file.filename}: chunk past the end of the file; the store file is damaged")
        bad = (self.offset >= 0) & (~self.compressed | self.raw) & (self.size != self.row_bytes)
        if bad.any():
            raise InputError(f"{ds.file.filename}: {ds.name} chunk of the wrong size; the store file is damaged")
        self.mapped = mapped
        self.base = mapped.ctypes.data
        self._decode = _blosc() if self.compressed else None
        # The Blosc header of every compressed chunk (bytes 4-8: decoded size, 12-16: encoded
        # size, little-endian) must say "one row, exactly this chunk": the decoder trusts its
        # header, so a damaged one must be caught before it is decoded, not by reading past it.
        self.damaged = np.zeros(rows, bool)
        enc = np.flatnonzero((self.offset >= 0) & ~self.raw) if self.compressed else np.zeros(0, np.int64)
        if len(enc):
            head = mapped[self.offset[enc][:, None] + np.arange(16)].view("<u4")
            self.damaged[enc] = (self.size[enc] < 16) | (head[:, 1] != self.row_bytes) | (head[:, 3] != self.size[enc])

    def read_into(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """``out[at[i]] = row rows[i]``; ``out`` is C-contiguous (n, *row_shape) uint8."""
        if out.dtype != np.uint8 or not out.flags.c_contiguous or out.shape[1:] != self.row_shape:
            raise ValueError("out must be a C-contiguous uint8 array of rows")
        flat = out.reshape(len(out), self.row_bytes)
        dest = out.ctypes.data
        for i, r in zip(at.tolist(), rows.tolist()):
            off = int(self.offset[r])
            if off < 0:  # never written: HDF5 would return the fill value
                flat[i] = self.fill
            elif not self.compressed or self.raw[r]:
                flat[i] = self.mapped[off:off + self.row_bytes]
            elif self.damaged[r]:
                raise InputError(f"row {r}: the Blosc chunk header is not valid; the store file is damaged")
            else:
                got = self._decode(self.base + off, dest + i * self.row_bytes, self.row_bytes, 1)
                if got != self.row_bytes:
                    raise InputError(f"row {r}: the Blosc chunk does not decode ({got}); the store file is damaged")


@dataclass
class VideoEntry:
    """One video in the manifest."""

    name: str
    source: str
    status: str  # complete | failed
    file: str | None = None  # relative to the store root
    frames: int = 0
    rows: int = 0
    confident_rows: int = 0
    error: str | None = None


@dataclass
class Manifest:
    videos: dict[str, VideoEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION,
                "videos": {name: asdict(entry) for name, entry in sorted(self.videos.items())}}


def video_names(sources: list[str]) -> list[str]:
    """Store names for the sources: the file stem, or stem-<hash of the path> where stems clash.

    The name depends on the path alone (not on the order given), so a resumed run with the
    videos listed differently still finds the stores it already wrote.
    """
    stems = [re.sub(r"[^A-Za-z0-9_.-]", "_", Path(s).stem or "video")[:64] for s in sources]
    names = []
    for spec, stem in zip(sources, stems):
        if stems.count(stem) > 1:
            digest = hashlib.sha1(str(Path(spec).resolve()).encode()).hexdigest()[:8]
            stem = f"{stem}-{digest}"
        names.append(stem)
    return names


class CorpusStore:
    """A directory of per-video HDF5 files and the manifest."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def videos_dir(self) -> Path:
        return self.root / VIDEOS_DIR

    def video_path(self, name: str) -> Path:
        return self.videos_dir / f"{name}.h5"

    def is_complete(self, name: str) -> bool:
        return self.video_path(name).is_file()

    def create(self) -> None:
        try:
            self.videos_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the store {self.root}: {exc.strerror or exc}") from None

    def read_manifest(self) -> Manifest:
        path = self.root / MANIFEST
        if not path.is_file():
            return Manifest()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} cannot be read ({exc}); delete it and rerun `vpd-stream prepare`") from None
        if data.get("format") != FORMAT:
            raise InputError(f"{path} is not a vpd-stream corpus manifest")
        return Manifest({name: VideoEntry(**entry) for name, entry in data.get("videos", {}).items()})

    def write_manifest(self, manifest: Manifest) -> None:
        path = self.root / MANIFEST
        tmp = path.with_name(f"{MANIFEST}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def complete_videos(self) -> list[str]:
        """Names of the videos whose store file exists (complete by construction), sorted."""
        if not self.videos_dir.is_dir():
            return []
        return sorted(p.stem for p in self.videos_dir.glob("*.h5"))

    def open(self, name: str) -> "VideoStore":
        return VideoStore(self.video_path(name))

    def remove_temporaries(self) -> None:
        """Leftovers of a killed run: never complete, so never read; delete them."""
        if self.videos_dir.is_dir():
            for tmp in self.videos_dir.glob("*.h5.tmp-*"):
                tmp.unlink(missing_ok=True)


def open_store(path: str | Path) -> CorpusStore:
    """A store that must already exist (for distill / embed)."""
    store = CorpusStore(path)
    if not store.root.is_dir():
        raise InputError(f"{path}: no such corpus store; create it with `vpd-stream prepare VIDEOS... --out {path}`")
    if not store.complete_videos():
        raise InputError(f"{path}: the corpus store holds no complete video; run `vpd-stream prepare` first")
    return store


class VideoWriter:
    """Appends rows to a temporary HDF5 file; ``commit`` renames it into place."""

    def __init__(self, final_path: Path, attrs: dict[str, Any], block: int = 32) -> None:
        self.final_path = final_path
        self.tmp_path = final_path.with_name(f"{final_path.name}.tmp-{os.getpid()}")
        self.tmp_path.unlink(missing_ok=True)
        # track_order off, no timestamps: identical inputs give identical bytes.
        self.h5 = h5py.File(self.tmp_path, "w", libver=("earliest", "v110"), track_order=False)
        self.attrs = dict(attrs)
        self.rows = 0
        self.block = block
        self._buffer: dict[str, list[np.ndarray]] = {k: [] for k in ROW_ARRAYS}
        self._mask: list[np.ndarray | None] = []
        self._frames: list[tuple[int, float, int]] = []
        self._last_row: dict[int, tuple[int, int]] = {}  # track -> (frame, row)
        for name, (shape, dtype, compressed) in ROW_ARRAYS.items():
            self.h5.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                   chunks=(1, *shape) if name in IMAGE_ARRAYS else (256, *shape),
                                   track_times=False, **_compression(compressed))
        self._has_mask = False

    def add_frame(self, index: int, pts: float, source_index: int) -> None:
        self._frames.append((index, pts, source_index))

    def add_row(self, *, frame: int, pts: float, track_id: int, crop: np.ndarray, flow: np.ndarray,
                box: np.ndarray, crop_box: np.ndarray, keypoints: np.ndarray | None,
                pose: np.ndarray | None, pose_score: float, mask: np.ndarray | None = None) -> None:
        prev = self._last_row.get(track_id)
        prev_row = prev[1] if prev is not None and prev[0] == frame - 1 else -1
        values = {
            "crop": np.asarray(crop, np.uint8), "flow": np.asarray(flow, np.uint8),
            "pose": np.zeros(FEATURE_DIM, np.float32) if pose is None else np.asarray(pose, np.float32),
            "keypoints": np.zeros((NUM_JOINTS, 3), np.float32) if keypoints is None else np.asarray(keypoints, np.float32),
            "pose_score": np.float32(pose_score), "box": np.asarray(box, np.float32),
            "crop_box": np.asarray(crop_box, np.float32), "track_id": np.int32(track_id),
            "frame": np.int64(frame), "pts": np.float64(pts), "prev_row": np.int64(prev_row),
        }
        for name, value in values.items():
            expected = ROW_ARRAYS[name][0]
            if np.shape(value) != expected:
                raise ValueError(f"{name} has shape {np.shape(value)}, the store expects {expected}")
            self._buffer[name].append(value)
        if mask is not None:
            self._has_mask = True
        self._mask.append(mask)
        self._last_row[track_id] = (frame, self.rows + len(self._buffer["crop"]) - 1)
        if len(self._buffer["crop"]) >= self.block:
            self._flush()

    def _flush(self) -> None:
        n = len(self._buffer["crop"])
        if not n:
            return
        for name, values in self._buffer.items():
            ds = self.h5[name]
            ds.resize(self.rows + n, axis=0)
            ds[self.rows:self.rows + n] = np.stack(values)
            values.clear()
        if self._has_mask:
            if "mask" not in self.h5:
                self.h5.create_dataset("mask", shape=(self.rows, CROP, CROP), maxshape=(None, CROP, CROP),
                                       dtype="uint8", chunks=(1, CROP, CROP), fillvalue=255,
                                       track_times=False, **_compression(True))
            ds = self.h5["mask"]
            ds.resize(self.rows + n, axis=0)
            for i, m in enumerate(self._mask):
                ds[self.rows + i] = 255 if m is None else m
        self._mask.clear()
        self.rows += n

    def commit(self) -> dict[str, Any]:
        """Finish the file and move it into place; returns the attributes written."""
        self._flush()
        frames = np.array(self._frames, dtype=np.float64).reshape(-1, 3)
        group = self.h5.create_group("frames", track_order=False)
        group.create_dataset("index", data=frames[:, 0].astype(np.int64), track_times=False)
        group.create_dataset("pts", data=frames[:, 1], track_times=False)
        group.create_dataset("source_index", data=frames[:, 2].astype(np.int64), track_times=False)
        scores = self.h5["pose_score"][:]
        attrs = dict(self.attrs, format=FORMAT, version=VERSION, frames=len(self._frames), rows=self.rows,
                     confident_rows=int((scores >= CONFIDENT).sum()))
        for key, value in attrs.items():
            self.h5.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else ("" if value is None else value)
        self.h5.close()
        os.replace(self.tmp_path, self.final_path)
        return attrs

    def abort(self) -> None:
        try:
            self.h5.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)


class VideoStore:
    """Read side of one video's file. Small per-row arrays are loaded at open; images on demand."""

    SMALL = ("pose", "keypoints", "pose_score", "box", "crop_box", "track_id", "frame", "pts", "prev_row")

    def __init__(self, path: str | Path, direct: bool = True) -> None:
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"{self.path}: not a readable corpus store file ({exc}); delete it and rerun prepare") from None
        if self.h5.attrs.get("format") != FORMAT:
            raise InputError(f"{self.path} is not a vpd-stream corpus video")
        self.arrays = {name: self.h5[name][:] for name in self.SMALL}
        self.crop = self.h5["crop"]
        self.flow = self.h5["flow"]
        self.mask = self.h5["mask"] if "mask" in self.h5 else None
        # Direct chunk readers for the image arrays (None: read through h5py).
        self._map: mmap.mmap | None = None
        self._direct: dict[str, RowChunks] | None = None
        if direct:
            try:
                with open(self.path, "rb") as fh:
                    self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                mapped = np.frombuffer(self._map, np.uint8)
                self._direct = {name: RowChunks(ds, mapped) for name, ds in
                                (("crop", self.crop), ("flow", self.flow), ("mask", self.mask)) if ds is not None}
            except (NotImplementedError, OSError, ValueError):
                self._direct = None  # h5py reads instead
            except InputError:
                self.close()
                raise

    @property
    def name(self) -> str:
        return str(self.h5.attrs["name"])

    @property
    def rows(self) -> int:
        return int(self.crop.shape[0])

    @property
    def fps(self) -> float:
        return float(self.h5.attrs["fps"])

    def attrs(self) -> dict[str, Any]:
        out = {}
        for key, value in self.h5.attrs.items():
            value = value.item() if isinstance(value, np.generic) else value
            if key in ("options", "chain") and isinstance(value, str):
                value = json.loads(value)
            out[key] = value
        return out

    def frames_table(self) -> dict[str, np.ndarray]:
        return {k: self.h5["frames"][k][:] for k in ("index", "pts", "source_index")}

    @property
    def direct(self) -> bool:
        """Whether image rows are read by direct chunk reads (else through h5py)."""
        return self._direct is not None

    def images(self, rows: np.ndarray | list[int], out: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
               at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Crops (n,128,128,3), flows (n,2,128,128) and masks (n,128,128) or None for rows.

        ``out``: C-contiguous arrays to fill instead of new ones (e.g. a batch in shared
        memory), row ``rows[i]`` going to position ``at[i]`` (default ``i``): a caller reads
        rows in file order yet fills its batch in its own order, without a gather copy.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        if n and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"{self.path.name}: rows out of range 0..{self.rows - 1}")
        at = np.arange(n) if at is None else np.asarray(at, dtype=np.int64)
        if out is None:
            out = (np.empty((n, CROP, CROP, 3), np.uint8), np.empty((n, 2, CROP, CROP), np.uint8),
                   np.empty((n, CROP, CROP), np.uint8) if self.mask is not None else None)
        crop, flow, mask = out
        if self._direct is not None:
            self._direct["crop"].read_into(rows, crop, at)
            self._direct["flow"].read_into(rows, flow, at)
            if mask is not None:
                self._direct["mask"].read_into(rows, mask, at)
            return crop, flow, mask
        # Through h5py, one chunk per row; plain integer indexing measured faster than read_direct.
        for i, r in zip(at.tolist(), rows.tolist()):
            crop[i] = self.crop[r]
            flow[i] = self.flow[r]
            if mask is not None:
                mask[i] = self.mask[r]
        return crop, flow, mask

    def iter_blocks(self, block: int = 256) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """Sequential (rows, crops, flows) blocks: for embedding every row."""
        for start in range(0, self.rows, block):
            sl = slice(start, min(self.rows, start + block))
            yield sl, self.crop[sl], self.flow[sl]

    def close(self) -> None:
        self.h5.close()
        self._direct = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a caller still holds a view; the map goes with it
                pass
            self._map = None

    def __enter__(self) -> "VideoStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
