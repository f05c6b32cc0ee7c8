"""Shared fixtures: where the real data lives, and generated clips."""
from __future__ import annotations

from pathlib import Path

import pytest

from vpd_stream.data_dir import find_data_root

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """$VPD_DATA_DIR, else ../shared/data next to the repository: the rule the offline
    commands use too (vpd_stream.data_dir)."""
    path = find_data_root()
    if path is None:
        pytest.skip("real data not found: set VPD_DATA_DIR or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def videos_dir(data_dir: Path) -> Path:
    path = data_dir / "videos"
    if not path.is_dir():
        pytest.skip(f"real videos not found under {path}")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared, oversubscribed CPU two spinning OpenMP threads
    made a RAFT forward 15-30x slower (5-11 s instead of 0.3 s)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
