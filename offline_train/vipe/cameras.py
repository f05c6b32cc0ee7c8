"""Random virtual cameras: perspective projection of 3D poses, then 2D noise and dropouts.

A camera sits at a random azimuth and elevation around the pose, at a random distance,
looks at a point near the hip centre, is rolled about its optical axis, and projects
with a random focal length. Image coordinates follow the usual convention (x right,
y down), so a person facing the camera has their left shoulder on the image's right —
exactly what a 2D pose estimator reports for a real frontal view.

Missing joints like Penn Action's (22 % of its joints are invisible, most of them on the
far side of the body: in its "left" view the left shoulder is invisible in 59 % of frames,
the right in 22 %): besides independent drops, a joint hidden behind the body from the
camera (``self_occluded``: the joint lies inside the image of a nearer body part, each
bone a capsule of anatomical radius) is dropped with ``occlusion_prob``, and with
``truncate_prob`` a view loses its lower legs (ankles, or knees and ankles), as a frame
cut at the shins does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpd_stream.models.vipe import normalize_batch
from vpd_stream.skeleton import JOINT, NUM_JOINTS, box_features


@dataclass
class CameraConfig:
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    elevation_deg: tuple[float, float] = (-20.0, 50.0)
    roll_deg: tuple[float, float] = (-15.0, 15.0)
    focal_px: tuple[float, float] = (600.0, 2400.0)
    distance_m: tuple[float, float] = (2.0, 12.0)
    target_jitter_m: float = 0.4  # look-at point offset: the athlete is not always centred
    noise_std: tuple[float, float] = (0.0, 0.03)  # per-view 2D noise, normalized units
    # per joint: dropped (score 0, coordinates at the centre of the input normalization:
    # skeleton's missing-joint rule). 0.2 (~ Penn Action's 22 % invisible joints) is what
    # `vpd-stream train vipe` uses (--drop): with torso inputs it gave Penn NNS-DTW 91.6 % at
    # 1,500 steps against 91.2 % with 0.05; with box inputs 96.5-96.9 % (two seeds) at 1,500
    # and 97.0 % at 6,000 (RESULTS.md, issue 15). The default stays 0.05, the first model's.
    drop_prob: float = 0.05
    low_score_prob: float = 0.05  # per joint: kept but unreliable (score 0.05-0.5, 3× noise)
    occlusion_prob: float = 0.0  # per self-occluded joint (``self_occluded``): dropped
    truncate_prob: float = 0.0  # per view: ankles (half of these: knees too) dropped


@dataclass
class Cameras:
    rotation: np.ndarray  # (n, 3, 3) world → camera rows: right, down, forward
    centre: np.ndarray  # (n, 3) camera positions in the world
    focal: np.ndarray  # (n,) pixels


def sample_cameras(rng: np.random.Generator, poses: np.ndarray, cfg: CameraConfig) -> Cameras:
    """One random camera per pose in (n, 13, 3), aimed near its hip centre."""
    n = len(poses)
    az = np.radians(rng.uniform(*cfg.azimuth_deg, n))
    el = np.radians(rng.uniform(*cfg.elevation_deg, n))
    roll = np.radians(rng.uniform(*cfg.roll_deg, n))
    dist = rng.uniform(*cfg.distance_m, n)
    hips = 0.5 * (poses[:, JOINT["left_hip"]] + poses[:, JOINT["right_hip"]])
    target = hips + rng.uniform(-cfg.target_jitter_m, cfg.target_jitter_m, (n, 3))
    # Azimuth 0 = in front of a person facing +z; elevation > 0 = looking down.
    offset = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], -1)
    centre = target + offset * dist[:, None]
    fwd = -offset
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(fwd, right)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right, down = c * right + s * down, -s * right + c * down
    rotation = np.stack([right, down, fwd], axis=1)
    return Cameras(rotation=rotation, centre=centre, focal=rng.uniform(*cfg.focal_px, n))


def project(poses: np.ndarray, cams: Cameras) -> np.ndarray:
    """(n, 13, 3) world joints → (n, 13, 2) image pixels (principal point at 0)."""
    cam = camera_coordinates(poses, cams)
    depth = np.maximum(cam[..., 2:3], 1e-3)  # distances keep every joint in front anyway
    return cams.focal[:, None, None] * cam[..., :2] / depth


# Body parts as capsules (joint a, joint b, radius in metres) for self-occlusion; -1 / -2
# are the mid-hip and the mid-shoulder. The torso is its four sides and a wide centre line.
_J = JOINT
CAPSULES: tuple[tuple[int, int, float], ...] = (
    (-2, -1, 0.14), (_J["left_shoulder"], _J["right_shoulder"], 0.08), (_J["left_hip"], _J["right_hip"], 0.09),
    (_J["left_shoulder"], _J["left_hip"], 0.09), (_J["right_shoulder"], _J["right_hip"], 0.09),
    (_J["left_shoulder"], _J["left_elbow"], 0.05), (_J["right_shoulder"], _J["right_elbow"], 0.05),
    (_J["left_elbow"], _J["left_wrist"], 0.04), (_J["right_elbow"], _J["right_wrist"], 0.04),
    (_J["left_hip"], _J["left_knee"], 0.08), (_J["right_hip"], _J["right_knee"], 0.08),
    (_J["left_knee"], _J["left_ankle"], 0.06), (_J["right_knee"], _J["right_ankle"], 0.06),
    (_J["nose"], _J["nose"], 0.10),
)


def self_occluded(cam_xyz: np.ndarray) -> np.ndarray:
    """(n, 13, 3) joints in camera coordinates (x right, y down, z depth) →
    (n, 13) bool: the joint's image lies inside the image of a body capsule not attached
    to it whose surface is nearer the camera than the joint."""
    cam = np.asarray(cam_xyz, dtype=np.float64)
    ext = np.concatenate([cam, 0.5 * (cam[:, [_J["left_hip"]]] + cam[:, [_J["right_hip"]]]),
                          0.5 * (cam[:, [_J["left_shoulder"]]] + cam[:, [_J["right_shoulder"]]])], axis=1)
    z = np.maximum(ext[..., 2], 1e-3)
    img = ext[..., :2] / z[..., None]  # focal-free image coordinates
    a = np.array([NUM_JOINTS if c[0] == -1 else NUM_JOINTS + 1 if c[0] == -2 else c[0] for c in CAPSULES])
    b = np.array([NUM_JOINTS if c[1] == -1 else NUM_JOINTS + 1 if c[1] == -2 else c[1] for c in CAPSULES])
    r = np.array([c[2] for c in CAPSULES])
    pa, pb = img[:, a], img[:, b]  # (n, S, 2)
    seg = pb - pa
    q = img[:, :NUM_JOINTS, None, :]  # (n, 13, 1, 2)
    denom = np.maximum((seg ** 2).sum(-1), 1e-12)[:, None, :]
    t = np.clip(((q - pa[:, None]) * seg[:, None]).sum(-1) / denom, 0.0, 1.0)  # (n, 13, S)
    closest = pa[:, None] + t[..., None] * seg[:, None]
    dist = np.linalg.norm(q[..., 0, :][:, :, None, :] - closest, axis=-1)
    zs = z[:, a][:, None, :] + t * (z[:, b] - z[:, a])[:, None, :]
    covers = dist < r[None, None, :] / zs
    in_front = zs + 0.5 * r[None, None, :] < z[:, :NUM_JOINTS, None]
    attached = (a[None, :] == np.arange(NUM_JOINTS)[:, None]) | (b[None, :] == np.arange(NUM_JOINTS)[:, None])
    return (covers & in_front & ~attached[None]).any(-1)


def augment_views(image_xy: np.ndarray, rng: np.random.Generator, cfg: CameraConfig,
                  occluded: np.ndarray | None = None, inputs: str = "torso") -> np.ndarray:
    """(n, 13, 2) pixels → (n, 39) encoder inputs: normalized joints (26) + scores (13),
    with Gaussian noise, low-confidence joints and dropped joints like a real 2D detector.

    ``occluded`` (n, 13): self-occluded joints, dropped with ``cfg.occlusion_prob``.
    ``inputs``: the encoder's normalization (``VipeConfig.inputs``); with "box" the box and
    centre are those of the joints that are not dropped, as at test time."""
    n = len(image_xy)
    std = rng.uniform(*cfg.noise_std, (n, 1, 1))
    low = rng.random((n, NUM_JOINTS)) < cfg.low_score_prob
    drop = rng.random((n, NUM_JOINTS)) < cfg.drop_prob
    if occluded is not None and cfg.occlusion_prob > 0:
        drop |= occluded & (rng.random((n, NUM_JOINTS)) < cfg.occlusion_prob)
    if cfg.truncate_prob > 0:
        cut = rng.random(n) < cfg.truncate_prob
        drop[cut, _J["left_ankle"]] = drop[cut, _J["right_ankle"]] = True
        knees = cut & (rng.random(n) < 0.5)
        drop[knees, _J["left_knee"]] = drop[knees, _J["right_knee"]] = True
    if inputs == "box":
        kp = np.concatenate([image_xy, np.where(drop, 0.0, 1.0)[..., None]], axis=-1)
        xy = box_features(kp).reshape(n, NUM_JOINTS, 2).astype(np.float64)
    else:
        xy = normalize_batch(image_xy)
    joint_std = std * np.where(low, 3.0, 1.0)[..., None]
    xy = xy + rng.normal(size=xy.shape) * joint_std
    scores = np.where(low, rng.uniform(0.05, 0.5, (n, NUM_JOINTS)), rng.uniform(0.5, 1.0, (n, NUM_JOINTS)))
    xy[drop] = 0.0
    scores[drop] = 0.0
    return np.concatenate([xy.reshape(n, -1), scores], axis=1).astype(np.float32)


def camera_coordinates(poses: np.ndarray, cams: Cameras) -> np.ndarray:
    """(n, 13, 3) world joints → (n, 13, 3) camera coordinates (x right, y down, z depth)."""
    return np.einsum("nij,nkj->nki", cams.rotation, poses - cams.centre[:, None])


def render_views(poses: np.ndarray, rng: np.random.Generator, cfg: CameraConfig,
                 inputs: str = "torso") -> np.ndarray:
    """3D poses → one random augmented view each, as (n, 39) encoder inputs."""
    cams = sample_cameras(rng, poses, cfg)
    occluded = self_occluded(camera_coordinates(poses, cams)) if cfg.occlusion_prob > 0 else None
    return augment_views(project(poses, cams), rng, cfg, occluded, inputs)
