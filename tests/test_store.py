"""The corpus store: round trip, atomic completion, determinism, manifest, random reads."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from offline_train.benchmarks.distill import make_synthetic_store, render, synthetic_keypoints
from offline_train.corpus.store import (CorpusStore, Manifest, VideoEntry, VideoStore, VideoWriter, open_store,
                                        video_names)
from vpd_stream.errors import InputError
from vpd_stream.skeleton import pose_features


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_rows_poses_and_links(tmp_path):
    store = make_synthetic_store(tmp_path / "s", videos=1, frames=14, low_score_every=7)
    assert store.complete_videos() == ["synthetic00"]
    with store.open("synthetic00") as video:
        assert video.rows == 14
        a = video.arrays
        assert a["frame"].tolist() == list(range(14))
        # prev_row links each row to the same track's previous frame
        assert a["prev_row"].tolist() == [-1] + list(range(13))
        kp = synthetic_keypoints(3, phase=0)
        np.testing.assert_allclose(a["pose"][3], pose_features(kp), atol=1e-6)
        np.testing.assert_allclose(a["keypoints"][3], kp, atol=1e-6)
        # rows 6 and 13 have weak poses (score 0.2)
        assert np.flatnonzero(a["pose_score"] < 0.5).tolist() == [6, 13]
        attrs = video.attrs()
        assert attrs["rows"] == 14 and attrs["frames"] == 14 and attrs["confident_rows"] == 12
        assert attrs["fps"] == 25.0 and attrs["chain"] == ["synthetic"]
        assert video.frames_table()["index"].tolist() == list(range(14))
        # random access, in any order: the bytes that were written
        crops, flows, mask = video.images([9, 2, 5])
        assert mask is None and crops.shape == (3, 128, 128, 3) and flows.shape == (3, 2, 128, 128)
        for got, t in zip(crops, [9, 2, 5]):
            np.testing.assert_array_equal(got, render(synthetic_keypoints(t, 0), seed=t))


def test_a_video_is_complete_or_absent(tmp_path):
    store = CorpusStore(tmp_path / "s")
    store.create()
    writer = VideoWriter(store.video_path("v"), {"name": "v", "fps": 25.0})
    zeros = np.zeros
    writer.add_frame(0, 0.0, 0)
    writer.add_row(frame=0, pts=0.0, track_id=1, crop=zeros((128, 128, 3), np.uint8),
                   flow=zeros((2, 128, 128), np.uint8), box=zeros(4), crop_box=zeros(4),
                   keypoints=None, pose=None, pose_score=0.0)
    # mid-write (as when a run is killed): only a temporary file exists, never listed
    assert writer.tmp_path.exists() and not store.is_complete("v")
    assert store.complete_videos() == []
    writer.abort()
    assert not writer.tmp_path.exists() and not store.video_path("v").exists()
    # a leftover of a killed process is cleaned up on the next run
    leftover = store.videos_dir / "w.h5.tmp-99999"
    leftover.write_bytes(b"partial")
    store.remove_temporaries()
    assert not leftover.exists()


def test_same_input_writes_the_same_bytes(tmp_path):
    a = make_synthetic_store(tmp_path / "a", videos=1, frames=10)
    b = make_synthetic_store(tmp_path / "b", videos=1, frames=10)
    assert _sha(a.video_path("synthetic00")) == _sha(b.video_path("synthetic00"))


def test_wrong_shapes_are_refused(tmp_path):
    store = CorpusStore(tmp_path / "s")
    store.create()
    writer = VideoWriter(store.video_path("v"), {"name": "v"})
    with pytest.raises(ValueError, match="crop has shape"):
        writer.add_row(frame=0, pts=0.0, track_id=1, crop=np.zeros((64, 64, 3), np.uint8),
                       flow=np.zeros((2, 128, 128), np.uint8), box=np.zeros(4), crop_box=np.zeros(4),
                       keypoints=None, pose=None, pose_score=0.0)
    writer.abort()


def test_manifest_round_trip_and_names(tmp_path):
    store = CorpusStore(tmp_path / "s")
    store.create()
    m = Manifest({"a": VideoEntry("a", "/x/a.mp4", "complete", "videos/a.h5", 10, 9, 8),
                  "b": VideoEntry("b", "/x/b.mp4", "failed", error="not a video")})
    store.write_manifest(m)
    back = store.read_manifest()
    assert back.videos == m.videos
    names = video_names(["/x/run.mp4", "/y/run.mp4", "/z/other clip.mov"])
    assert names[0] != names[1] and names[0].startswith("run-") and names[2] == "other_clip"
    assert video_names(["/y/run.mp4", "/x/run.mp4"])[::-1] == names[:2]  # order does not matter


def test_open_store_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="no such corpus store"):
        open_store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no complete video"):
        open_store(tmp_path / "empty")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable corpus store file"):
        VideoStore(bad)


def _masked_video(root: Path) -> Path:
    """One video written by the real writer, with masks on some rows and none on others."""
    store = CorpusStore(root)
    store.create()
    writer = VideoWriter(store.video_path("m"), {"name": "m", "fps": 25.0})
    rng = np.random.default_rng(0)
    for t in range(40):
        writer.add_frame(t, t / 25.0, t)
        mask = None if t % 3 == 0 else (rng.random((128, 128)) < 0.5).astype(np.uint8) * 255
        writer.add_row(frame=t, pts=t / 25.0, track_id=1, crop=render(synthetic_keypoints(t), seed=t),
                       flow=rng.integers(120, 136, (2, 128, 128), dtype=np.uint8), box=np.zeros(4),
                       crop_box=np.zeros(4), keypoints=None, pose=None, pose_score=0.0, mask=mask)
    writer.commit()
    return store.video_path("m")


def test_direct_chunk_reads_equal_h5py_reads(tmp_path):
    path = _masked_video(tmp_path / "s")
    rows = np.array([37, 3, 3, 0, 21, 38, 14])
    with VideoStore(path) as fast, VideoStore(path, direct=False) as slow:
        assert fast.direct and not slow.direct
        got, want = fast.images(rows), slow.images(rows)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        assert (want[2][1] == 255).all() and not (want[2][0] == 255).all()  # row 3 has no mask: all foreground
        # ``out`` + ``at``: row rows[i] lands at position at[i] of the caller's arrays
        at = np.array([6, 5, 4, 3, 2, 1, 0])
        out = (np.zeros((7, 128, 128, 3), np.uint8), np.zeros((7, 2, 128, 128), np.uint8), np.zeros((7, 128, 128), np.uint8))
        fast.images(rows, out=out, at=at)
        for o, w in zip(out, want):
            np.testing.assert_array_equal(o, w[::-1])
        with pytest.raises(IndexError):
            fast.images([40])


def test_other_layouts_are_read_through_h5py(tmp_path):
    import h5py

    path = _masked_video(tmp_path / "s")
    with VideoStore(path, direct=False) as video:
        want = video.images([5, 1])
    # the same arrays, gzip-compressed: no direct path, same values
    with h5py.File(path, "r+") as h5:
        data = h5["crop"][:]
        del h5["crop"]
        h5.create_dataset("crop", data=data, chunks=(1, 128, 128, 3), compression="gzip")
    with VideoStore(path) as video:
        assert not video.direct
        got = video.images([5, 1])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_a_damaged_chunk_is_one_clear_error(tmp_path):
    path = _masked_video(tmp_path / "s")
    with VideoStore(path) as video:
        offset = int(video._direct["flow"].offset[7])
        crop_offset, crop_size = int(video._direct["crop"].offset[9]), int(video._direct["crop"].size[9])
    with open(path, "r+b") as fh:
        fh.seek(offset)  # zero the Blosc header of row 7's flow chunk
        fh.write(bytes(16))
        fh.seek(crop_offset + 12)  # row 9's crop claims more encoded bytes than its chunk holds
        fh.write(np.uint32(crop_size + 4096).tobytes())
    with VideoStore(path) as video:
        video.images([6, 8])
        with pytest.raises(InputError, match="row 7.*damaged"):
            video.images([6, 7])
        with pytest.raises(InputError, match="row 9.*damaged"):
            video.images([9])
