"""Procedural 3D poses: a kinematic tree with anatomical joint limits, no third-party data.

Body frame: right-handed, +y up, the person faces +z, their left is +x (see canonical.py).
A pose is 22 joint angles (degrees, each within an anatomical range) plus bone lengths and
a global orientation. Static poses mix angles drawn uniformly within the limits with
angles drawn near a relaxed stance; motions interpolate smoothly between such key poses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpd_stream.skeleton import JOINT, NUM_JOINTS

# name: (low, high, relaxed) in degrees.
LIMITS: dict[str, tuple[float, float, float]] = {
    "torso_flex": (-30.0, 90.0, 0.0), "torso_lat": (-35.0, 35.0, 0.0), "torso_twist": (-45.0, 45.0, 0.0),
    "neck_flex": (-40.0, 60.0, 0.0), "neck_lat": (-30.0, 30.0, 0.0), "neck_twist": (-70.0, 70.0, 0.0),
}
for _side in ("l", "r"):
    LIMITS.update({
        f"{_side}_sh_flex": (-60.0, 180.0, 0.0), f"{_side}_sh_abd": (-30.0, 180.0, 10.0),
        f"{_side}_sh_twist": (-90.0, 90.0, 0.0), f"{_side}_elbow": (0.0, 150.0, 15.0),
        f"{_side}_hip_flex": (-30.0, 125.0, 0.0), f"{_side}_hip_abd": (-25.0, 70.0, 5.0),
        f"{_side}_hip_twist": (-40.0, 40.0, 0.0), f"{_side}_knee": (0.0, 155.0, 5.0),
    })
PARAM_NAMES: tuple[str, ...] = tuple(LIMITS)
_P = {name: i for i, name in enumerate(PARAM_NAMES)}
_LO = np.array([LIMITS[n][0] for n in PARAM_NAMES])
_HI = np.array([LIMITS[n][1] for n in PARAM_NAMES])
_RELAXED = np.array([LIMITS[n][2] for n in PARAM_NAMES])

# Mean adult bone lengths in metres; each sample scales each one by up to ±12 %.
BONE_LENGTHS = {"hip_half": 0.10, "spine": 0.52, "shoulder_half": 0.18, "upper_arm": 0.29,
                "forearm": 0.26, "thigh": 0.44, "shin": 0.43, "head_up": 0.20, "head_fwd": 0.09}


@dataclass
class SyntheticConfig:
    uniform_fraction: float = 0.5  # angles uniform within limits; the rest near relaxed
    relaxed_spread: float = 0.3  # std of the near-relaxed draw as a fraction of the range
    motion_fraction: float = 0.5  # poses taken from smooth motions instead of static draws
    motion_length: int = 64
    motion_keys: int = 4
    lying_fraction: float = 0.15  # body tilted ~90° (push-ups, sit-ups, bench press)
    any_orientation_fraction: float = 0.05  # arbitrary rotation (flips, handstands, dives)
    upright_tilt_deg: float = 15.0
    length_jitter: float = 0.12


def _rx(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    m = np.zeros(t.shape + (3, 3))
    m[..., 0, 0] = 1.0
    m[..., 1, 1], m[..., 1, 2], m[..., 2, 1], m[..., 2, 2] = c, -s, s, c
    return m


def _ry(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    m = np.zeros(t.shape + (3, 3))
    m[..., 1, 1] = 1.0
    m[..., 0, 0], m[..., 0, 2], m[..., 2, 0], m[..., 2, 2] = c, s, -s, c
    return m


def _rz(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    m = np.zeros(t.shape + (3, 3))
    m[..., 2, 2] = 1.0
    m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1] = c, -s, s, c
    return m


def _mv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("nij,nj->ni", m, v)


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) rotations uniform over SO(3) (from random unit quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def sample_angles(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """(n, 22) joint angles in degrees, every one within its limits."""
    uniform = rng.uniform(_LO, _HI, size=(n, len(PARAM_NAMES)))
    relaxed = _RELAXED + rng.normal(size=(n, len(PARAM_NAMES))) * cfg.relaxed_spread * (_HI - _LO)
    pick = rng.random((n, 1)) < cfg.uniform_fraction
    return np.clip(np.where(pick, uniform, relaxed), _LO, _HI)


def sample_motions(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """(n, motion_length, 22) smooth angle trajectories through random key poses."""
    keys = sample_angles(rng, n * cfg.motion_keys, cfg).reshape(n, cfg.motion_keys, -1)
    t = np.linspace(0.0, cfg.motion_keys - 1, cfg.motion_length)
    k0 = np.minimum(np.floor(t).astype(int), cfg.motion_keys - 2)
    u = t - k0
    w = (0.5 - 0.5 * np.cos(np.pi * u))[None, :, None]  # zero velocity at every key pose
    return keys[:, k0] * (1.0 - w) + keys[:, k0 + 1] * w


def sample_orientations(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """(n, 3, 3) global body rotations: mostly upright, some lying, a few arbitrary."""
    tilt = np.radians(cfg.upright_tilt_deg)
    rot = _ry(rng.uniform(-np.pi, np.pi, n)) @ _rx(rng.uniform(-tilt, tilt, n)) @ _rz(rng.uniform(-tilt, tilt, n))
    u = rng.random(n)
    lying = u < cfg.lying_fraction
    k = int(lying.sum())
    if k:
        # Face up or face down (pitch ±90°), or on a side (roll ±90°), with some slack.
        pitch = rng.choice([-0.5 * np.pi, 0.5 * np.pi], k) + rng.uniform(-0.35, 0.35, k)
        roll = np.where(rng.random(k) < 0.25, rng.choice([-0.5 * np.pi, 0.5 * np.pi], k), 0.0)
        rot[lying] = _ry(rng.uniform(-np.pi, np.pi, k)) @ _rx(pitch) @ _rz(roll)
    anyo = (u >= cfg.lying_fraction) & (u < cfg.lying_fraction + cfg.any_orientation_fraction)
    if anyo.any():
        rot[anyo] = random_rotations(rng, int(anyo.sum()))
    return rot


def forward_kinematics(angles_deg: np.ndarray, lengths: dict[str, np.ndarray],
                       orientation: np.ndarray) -> np.ndarray:
    """(n, 22) angles, per-sample bone lengths, (n, 3, 3) rotations → (n, 13, 3) joints."""
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    n = len(a)
    out = np.zeros((n, NUM_JOINTS, 3))
    ex, ey, ez = (np.tile(np.eye(3)[i], (n, 1)) for i in range(3))
    down = -ey

    def col(v: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=np.float64).reshape(n, 1)

    torso = _ry(a[:, _P["torso_twist"]]) @ _rz(a[:, _P["torso_lat"]]) @ _rx(a[:, _P["torso_flex"]])
    neck = _mv(torso, ey) * col(lengths["spine"])
    head = torso @ _ry(a[:, _P["neck_twist"]]) @ _rz(a[:, _P["neck_lat"]]) @ _rx(a[:, _P["neck_flex"]])
    out[:, JOINT["nose"]] = neck + _mv(head, ey * col(lengths["head_up"]) + ez * col(lengths["head_fwd"]))

    for side, sign in (("l", 1.0), ("r", -1.0)):
        name = "left" if side == "l" else "right"
        # Arm: rotate the hanging arm outwards (abduction) then forwards (flexion), in the torso frame.
        arm_rot = torso @ _rx(-a[:, _P[f"{side}_sh_flex"]]) @ _rz(sign * a[:, _P[f"{side}_sh_abd"]])
        shoulder = neck + _mv(torso, ex * sign) * col(lengths["shoulder_half"])
        upper = _mv(arm_rot, down)
        bend = _mv(arm_rot, ez)  # the elbow folds the forearm forwards at rest ...
        tw = col(a[:, _P[f"{side}_sh_twist"]])  # ... turned about the upper arm by the twist
        bend = bend * np.cos(tw) + np.cross(upper, bend) * np.sin(tw)
        elbow = shoulder + upper * col(lengths["upper_arm"])
        e = col(a[:, _P[f"{side}_elbow"]])
        wrist = elbow + (upper * np.cos(e) + bend * np.sin(e)) * col(lengths["forearm"])
        out[:, JOINT[f"{name}_shoulder"]] = shoulder
        out[:, JOINT[f"{name}_elbow"]] = elbow
        out[:, JOINT[f"{name}_wrist"]] = wrist

        # Leg: the pelvis keeps the root frame; the knee folds the shin backwards.
        leg_rot = _rx(-a[:, _P[f"{side}_hip_flex"]]) @ _rz(sign * a[:, _P[f"{side}_hip_abd"]]) \
            @ _ry(sign * a[:, _P[f"{side}_hip_twist"]])
        hip = ex * sign * col(lengths["hip_half"])
        thigh = _mv(leg_rot, down)
        knee = hip + thigh * col(lengths["thigh"])
        k = col(a[:, _P[f"{side}_knee"]])
        back = _mv(leg_rot, -ez)
        ankle = knee + (thigh * np.cos(k) + back * np.sin(k)) * col(lengths["shin"])
        out[:, JOINT[f"{name}_hip"]] = hip
        out[:, JOINT[f"{name}_knee"]] = knee
        out[:, JOINT[f"{name}_ankle"]] = ankle
    return np.einsum("nij,nkj->nki", orientation, out)


def sample_lengths(rng: np.random.Generator, n: int, jitter: float) -> dict[str, np.ndarray]:
    return {k: v * rng.uniform(1 - jitter, 1 + jitter, n) for k, v in BONE_LENGTHS.items()}


class SyntheticPoses:
    """An endless source of 3D poses: ``sample(rng, n)`` → (n, 13, 3) metres, root at 0."""

    name = "synthetic"

    def __init__(self, cfg: SyntheticConfig | None = None) -> None:
        self.cfg = cfg or SyntheticConfig()

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cfg = self.cfg
        n_motion = int(round(n * cfg.motion_fraction))
        angles = [sample_angles(rng, n - n_motion, cfg)]
        if n_motion:
            # A few motions, several frames of each: nearby frames are realistic near-duplicates.
            n_seq = max(1, n_motion // 8)
            traj = sample_motions(rng, n_seq, cfg).reshape(-1, len(PARAM_NAMES))
            angles.append(traj[rng.choice(len(traj), n_motion, replace=False)])
        ang = np.concatenate(angles, axis=0)
        return forward_kinematics(ang, sample_lengths(rng, n, cfg.length_jitter),
                                  sample_orientations(rng, n, cfg))

    def motion(self, rng: np.random.Generator) -> np.ndarray:
        """One smooth motion (motion_length, 13, 3) of one body, one orientation."""
        cfg = self.cfg
        traj = sample_motions(rng, 1, cfg)[0]
        t = len(traj)
        lengths = {k: np.full(t, v) for k, v in sample_lengths(rng, 1, cfg.length_jitter).items()}
        rot = np.repeat(sample_orientations(rng, 1, cfg), t, axis=0)
        return forward_kinematics(traj, lengths, rot)
