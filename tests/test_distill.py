"""Distillation: augmentation, weak-pose selection and split, sampler, a tiny end-to-end run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from offline_train.benchmarks.distill import make_synthetic_store
from offline_train.distill.augment import AugmentConfig, augment_batch, flip_target
from offline_train.distill.dataset import DistillData, RandomFrameSampler
from offline_train.distill.decoder import DistillNet, MotionDecoder
from offline_train.distill.train import DistillOptions, distill, run_dir
from vpd_stream.errors import ConfigError, InputError
from vpd_stream.skeleton import flip_features


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "store"
    make_synthetic_store(root, videos=2, frames=20, low_score_every=5)
    return root


def test_flip_target_matches_the_skeleton_flip():
    t = torch.randn(3, 52)
    out = flip_target(t).numpy()
    np.testing.assert_allclose(out[:, :26], flip_features(t[:, :26].numpy()), atol=1e-6)
    np.testing.assert_allclose(out[:, 26:], flip_features(t[:, 26:].numpy()), atol=1e-6)
    np.testing.assert_allclose(flip_target(flip_target(t)), t)


def _batch(n=2, seed=0):
    g = np.random.default_rng(seed)
    rgb = torch.from_numpy(g.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8))
    flow = torch.from_numpy(g.integers(0, 256, (n, 2, 128, 128), dtype=np.uint8))
    return rgb, flow, torch.randn(n, 52)


def test_flip_mirrors_image_negates_flow_x_and_flips_target():
    rgb, flow, target = _batch()
    cfg = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0, brightness=0, contrast=0, saturation=0)
    x, f, t = augment_batch(rgb, flow, target, None, torch.Generator().manual_seed(0), cfg)
    # exact up to bilinear sampling's float rounding
    np.testing.assert_allclose(x.numpy(), rgb.flip(2).float().numpy(), atol=1e-2)
    np.testing.assert_allclose(f[:, 0].numpy(), 255.0 - flow[:, 0].flip(-1).float().numpy(), atol=1e-2)
    np.testing.assert_allclose(f[:, 1].numpy(), flow[:, 1].flip(-1).float().numpy(), atol=1e-2)
    np.testing.assert_allclose(t, flip_target(target))


def test_resized_crop_scales_flow_and_keeps_target():
    rgb, _, target = _batch()
    flow = torch.full((2, 2, 128, 128), 137, dtype=torch.uint8)  # +1.57 px everywhere
    cfg = AugmentConfig(scale=(0.25, 0.25), ratio=(1.0, 1.0), flip_p=0.0)
    x, f, t = augment_batch(rgb, flow, target, None, torch.Generator().manual_seed(0), cfg)
    # a half-width crop shown at full size: displacements double
    np.testing.assert_allclose(f.numpy(), 127.5 + 2 * 9.5, atol=1e-3)
    assert torch.equal(t, target)
    assert x.shape == (2, 128, 128, 3) and float(x.min()) >= 0 and float(x.max()) <= 255


def test_background_noise_only_outside_the_mask():
    rgb, flow, target = _batch()
    mask = torch.zeros(2, 128, 128, dtype=torch.uint8)
    mask[:, 32:96, 32:96] = 255
    cfg = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, brightness=0, contrast=0, saturation=0,
                        noise_p=1.0)
    x, _, _ = augment_batch(rgb, flow, target, mask, torch.Generator().manual_seed(0), cfg)
    inside = (slice(None), slice(40, 88), slice(40, 88))
    np.testing.assert_allclose(x[inside].numpy(), rgb[inside].float().numpy(), atol=1e-2)
    assert float((x[:, :16, :16] - rgb[:, :16, :16].float()).abs().mean()) > 20


def test_weak_pose_selection_split_and_motion_targets(store):
    data = DistillData(store, threshold=0.5, val_fraction=0.2, seed=0)
    t = data.targets
    assert data.total_rows == 40 and len(t.row) == 32  # rows 4, 9, 14, 19 of each video are weak
    assert not np.isin(t.row % 5, [4]).any()
    assert len(data.val_idx) == round(0.2 * 32) and not set(data.val_idx) & set(data.train_idx)
    assert sorted(np.concatenate([data.val_idx, data.train_idx]).tolist()) == list(range(32))
    # motion only where the previous frame is confident too: rows 0, 5, 10, 15 have none
    assert t.motion_valid.tolist() == [(r % 5 != 0) for r in t.row.tolist()]
    i = int(np.flatnonzero(t.motion_valid)[0])
    np.testing.assert_allclose(t.motion[i], t.pose[i] - t.pose[i - 1], atol=1e-6)
    other = DistillData(store, threshold=0.5, val_fraction=0.2, seed=1)
    assert other.val_idx.tolist() != data.val_idx.tolist()
    with pytest.raises(InputError, match="confident teacher pose"):
        DistillData(store, threshold=0.95)


def test_batched_reads_return_the_stored_rows(store):
    data = DistillData(store, threshold=0.5, val_fraction=0.2)
    ds = data.subset(data.train_idx)
    b = ds.__getitems__([3, 0, 7])
    rows = data.targets.row[data.train_idx[[3, 0, 7]]]
    videos = data.targets.video[data.train_idx[[3, 0, 7]]]
    from offline_train.corpus.store import VideoStore

    for k, (v, r) in enumerate(zip(videos, rows)):
        with VideoStore(data.paths[v]) as video:
            crop, flow, _ = video.images([r])
        assert torch.equal(b["rgb"][k], torch.from_numpy(crop[0]))
        assert torch.equal(b["flow"][k], torch.from_numpy(flow[0]))
    ds.close()


def test_sampler_is_seeded_and_shards_disjointly():
    a = RandomFrameSampler(50, 120, seed=3)
    a.set_epoch(2)
    b = RandomFrameSampler(50, 120, seed=3)
    b.set_epoch(2)
    assert list(a) == list(b) and len(list(a)) == 120
    first = list(a)[:50]
    assert sorted(first) == list(range(50))  # without replacement while the frames last
    ranks = [RandomFrameSampler(50, 120, seed=3, rank=r, world=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    assert sorted(list(ranks[0]) + list(ranks[1])) == sorted(list(a))


def test_decoder_predicts_pose_and_motion():
    net = DistillNet(torch.nn.Linear(5, 26), MotionDecoder(26, 26))
    assert net.decoder(torch.randn(4, 26)).shape == (4, 52)


def test_tiny_distillation_end_to_end_and_resume(store, tmp_path):
    from plugins.student import StudentPlugin
    from vpd_stream.models.checkpoint import load_student

    torch.set_num_threads(2)
    out = tmp_path / "student.safetensors"
    opts = DistillOptions(store=str(store), out=str(out), epochs=1, epoch_size=4, batch_size=2, loader_workers=0,
                          val_frames=4, architecture="resnet18", progress=False)
    r1 = distill(opts)
    assert r1["best_epoch"] == 1 and np.isfinite(r1["best"]["val_loss"])
    model, meta = load_student(out)
    assert meta.teacher == "pose2d" and meta.config.dim == 26 and meta.config.architecture == "resnet18"
    assert meta.config.rgb_mean != [0.0, 0.0, 0.0]  # the corpus's own input statistics
    d = run_dir(out)
    for name in ("state.pt", "log.csv", "loss.png", "decoder.safetensors", "results.json"):
        assert (d / name).is_file(), name
    _assert_tensorboard_log(d, r1, motion=True)
    # --resume continues at the next epoch and keeps the history
    opts.epochs, opts.resume = 2, True
    r2 = distill(opts)
    assert [h["epoch"] for h in r2["history"]] == [1, 2]
    assert r2["history"][0] == r1["history"][0]
    assert len((d / "log.csv").read_text().strip().splitlines()) == 3
    _assert_tensorboard_log(d, r2, motion=True)
    # the checkpoint is what the stream's student plugin runs
    plugin = StudentPlugin(StudentPlugin.Options(model=str(out), engine="torch"))
    from vpd_stream.plugin import PluginContext

    plugin.setup(PluginContext(engine="torch"))
    assert plugin.student.dim == 26
    plugin.close()
    # resuming with other settings is refused in one line
    opts.motion = False
    with pytest.raises(ConfigError, match="other data or settings"):
        distill(opts)


def _assert_tensorboard_log(run: Path, results: dict, motion: bool) -> None:
    """The TensorBoard event files in MODEL.train hold one value per epoch for each scalar,
    equal to the CSV/results history, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard event file"
    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expected = {"loss/train": "train_loss", "loss/val": "val_loss", "loss/val_ma": "val_loss_ma",
                "error/val_pose": "val_pose", "speed/frames_per_s": "frames_per_s",
                "time/data_wait_s": "data_wait_s", "time/compute_s": "compute_s"}
    if motion:
        expected["error/val_motion"] = "val_motion"
    assert set(expected) | {"lr", "trivial/loss", "trivial/pose"} <= tags, tags
    assert ("error/val_motion" in tags) == motion
    for tag, key in expected.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [h["epoch"] for h in results["history"]], tag
        np.testing.assert_allclose([e.value for e in events], [h[key] for h in results["history"]], rtol=1e-6)
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([5e-4] * len(results["history"]))
    assert acc.Scalars("trivial/loss")[-1].value == pytest.approx(results["trivial"]["loss"], rel=1e-6)


def test_no_motion_ablation_and_option_errors(store, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "nomotion.safetensors"
    r = distill(DistillOptions(store=str(store), out=str(out), epochs=1, epoch_size=2, batch_size=2,
                               loader_workers=0, val_frames=2, architecture="resnet18", motion=False,
                               progress=False))
    assert not (run_dir(out) / "decoder.safetensors").exists()
    _assert_tensorboard_log(run_dir(out), r, motion=False)
    assert np.isnan(r["best"]["val_motion"]) and r["best"]["val_loss"] == pytest.approx(r["best"]["val_pose"])
    with pytest.raises(ConfigError, match=r"\.safetensors"):
        distill(DistillOptions(store=str(store), out=str(tmp_path / "m.pt")))
    with pytest.raises(ConfigError, match="unknown teacher"):
        distill(DistillOptions(store=str(store), out=str(tmp_path / "v.safetensors"), teacher="pose3d"))
    with pytest.raises(InputError, match="--resume"):
        distill(DistillOptions(store=str(store), out=str(tmp_path / "new.safetensors"), resume=True))


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(store, tmp_path):
    torch.set_num_threads(2)
    kw = dict(store=str(store), epoch_size=4, batch_size=2, loader_workers=0, val_frames=4,
              architecture="resnet18", progress=False)
    full = distill(DistillOptions(out=str(tmp_path / "a.safetensors"), epochs=2, **kw))
    distill(DistillOptions(out=str(tmp_path / "b.safetensors"), epochs=1, **kw))
    resumed = distill(DistillOptions(out=str(tmp_path / "b.safetensors"), epochs=2, resume=True, **kw))
    a = json.loads((run_dir(tmp_path / "a.safetensors") / "results.json").read_text())
    assert [h["val_loss"] for h in full["history"]] == pytest.approx([h["val_loss"] for h in resumed["history"]], rel=1e-5)
    assert a["best_epoch"] == resumed["best_epoch"]


def test_vipe_teacher_targets_and_their_mirror(store, tmp_path):
    from offline_train.distill.train import resolve_teacher
    from vpd_stream.models.vipe import Vipe, embed_poses, load_vipe, save_vipe

    torch.manual_seed(0)
    path = save_vipe(Vipe(), tmp_path / "vipe.safetensors")  # an untrained VIPE*: the data path is under test
    fn = resolve_teacher(DistillOptions(store=str(store), out="x.safetensors", teacher="vipe", vipe_model=str(path)))
    data = DistillData(store, threshold=0.5, teacher="vipe", teacher_fn=fn)
    t = data.targets
    model = load_vipe(path)
    assert data.dim == model.output_dim
    from offline_train.corpus.store import VideoStore

    with VideoStore(data.paths[0]) as v:
        kp = v.arrays["keypoints"][t.row[:3]]
    np.testing.assert_allclose(t.pose[:3], embed_poses(model, kp), atol=1e-6)
    np.testing.assert_allclose(t.pose_flip[:3], embed_poses(model, kp, flip=True), atol=1e-6)
    # a flipped sample takes the teacher's mirrored output, not a joint permutation
    b = data.subset(data.train_idx).__getitems__([0, 1])
    cfg = AugmentConfig(flip_p=1.0)
    _, _, target = augment_batch(b["rgb"], b["flow"], b["target"], None, torch.Generator().manual_seed(0), cfg,
                                 b["target_flipped"])
    assert torch.equal(target, b["target_flipped"])


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(store, tmp_path):
    """Two gloo ranks: each takes half of the sampled frames; the sums are all-reduced."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    out = tmp_path / "ddp.safetensors"
    cmd = [str(torchrun), "--nproc_per_node=2", "--master_port=29561", "-m", "offline_train.distill.train",
           str(store), "--out", str(out), "--architecture", "resnet18", "--epochs", "1", "--epoch-size", "4",
           "--batch-size", "4", "--loader-workers", "0", "--val-frames", "4", "--threads", "1", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run_dir(out) / "results.json").read_text())
    assert results["history"][0]["frames"] == 4  # 2 per rank, summed
    from vpd_stream.models.checkpoint import load_student

    assert load_student(out)[1].teacher == "pose2d"


def test_loader_workers_deliver_the_in_process_batches(store):
    """Batches built in DataLoader workers (in shared memory) equal the in-process ones."""
    from offline_train.distill.dataset import whole_batch

    data = DistillData(store, threshold=0.5, val_fraction=0.2)
    ds = data.subset(data.train_idx)
    sampler = RandomFrameSampler(len(ds), 24, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2, collate_fn=whole_batch)
    draws = sampler.draws()
    for k, batch in enumerate(loader):
        want = ds.__getitems__(draws[8 * k:8 * k + 8].tolist())
        assert batch["rgb"].is_shared() and batch["flow"].is_shared()
        for key in ("rgb", "flow", "target", "target_flipped", "motion_valid"):
            assert torch.equal(batch[key], want[key]), key
    assert k == 2
    ds.close()


@pytest.mark.slow
def test_validation_report_matches_the_training_figures(store, tmp_path):
    """The per-frame report agrees with distill's own validation sums and the two-frame Δp."""
    from offline_train.distill.report import per_frame_errors, summarize, teacher_swaps
    from offline_train.distill.train import motion_error_from_pairs

    torch.set_num_threads(2)
    kw = dict(store=str(store), epochs=1, epoch_size=2, batch_size=2, loader_workers=0,
              architecture="resnet18", progress=False)
    m = distill(DistillOptions(out=str(tmp_path / "m.safetensors"), **kw))
    n = distill(DistillOptions(out=str(tmp_path / "n.safetensors"), motion=False, **kw))
    data = DistillData(store, threshold=0.5, val_fraction=0.2, seed=0)
    s = summarize(per_frame_errors(data, tmp_path / "m.safetensors", tmp_path / "n.safetensors"))
    assert s["val_frames"] == m["val_frames_evaluated"] == len(data.val_idx)
    assert s["trivial"]["pose"] == pytest.approx(m["trivial"]["pose"], rel=1e-5)
    assert s["trivial"]["motion"] == pytest.approx(m["trivial"]["motion"], rel=1e-5)
    assert s["motion"]["pose"] == pytest.approx(m["best"]["val_pose"], rel=1e-4)
    assert s["motion"]["motion"] == pytest.approx(m["best"]["val_motion"], rel=1e-4)
    assert s["nomotion"]["pose"] == pytest.approx(n["best"]["val_pose"], rel=1e-4)
    pairs = motion_error_from_pairs(str(tmp_path / "n.safetensors"), data, data.val_idx)
    assert s["nomotion"]["motion"] == pytest.approx(pairs, rel=1e-4)
    assert s["teacher_swaps"] == 0  # the synthetic figure never swaps sides
    assert not teacher_swaps(data, np.arange(len(data.targets.row))).any()


# -- swap-aware motion targets --------------------------------------------------------------


def _swapped_store(tmp_path, src):
    """A copy of the synthetic store where the teacher labelled one frame's sides the other way
    round: row ``i`` of video 0 holds its own pose and keypoints with left and right exchanged.
    Returns (store root, i, the original stored poses of video 0)."""
    import shutil

    import h5py

    from offline_train.corpus.store import open_store
    from vpd_stream.skeleton import FLIP_PERM

    root = tmp_path / "swapped"
    shutil.copytree(src, root)
    path = open_store(root).video_path("synthetic00")
    with h5py.File(path, "r+") as h5:
        pose, kp, score, prev = h5["pose"][:], h5["keypoints"][:], h5["pose_score"][:], h5["prev_row"][:]
        # a confident row whose previous and next rows are confident too
        i = next(r for r in range(1, len(pose) - 1)
                 if prev[r] == r - 1 and prev[r + 1] == r and min(score[r - 1:r + 2]) >= 0.5)
        h5["pose"][i] = pose[i].reshape(13, 2)[FLIP_PERM].reshape(-1)
        h5["keypoints"][i] = kp[i][FLIP_PERM]
    return root, i, pose


def _target_index(data, video, row):
    t = data.targets
    return int(np.flatnonzero((t.video == video) & (t.row == row))[0])


def test_swap_aware_motion_targets_take_the_relabelled_previous_pose(store, tmp_path):
    from offline_train.distill.dataset import teacher_swapped
    from offline_train.distill.report import teacher_swaps
    from vpd_stream.skeleton import FLIP_PERM

    root, i, orig = _swapped_store(tmp_path, store)
    P = lambda v: v.reshape(13, 2)[FLIP_PERM].reshape(-1)  # noqa: E731 relabel, no mirroring
    on = DistillData(root, threshold=0.5)  # swap-aware is the default
    off = DistillData(root, threshold=0.5, swap_aware_motion=False)
    a, b = _target_index(on, 0, i), _target_index(on, 0, i + 1)
    assert _target_index(off, 0, i) == a and _target_index(off, 0, i + 1) == b
    # the two frames whose Δp crosses the relabelled frame are flagged, and only they
    assert np.flatnonzero(on.targets.swapped).tolist() == [a, b]
    assert np.flatnonzero(teacher_swaps(off, np.arange(len(off.targets.row)))).tolist() == [a, b]
    assert teacher_swapped(P(orig[i])[None], orig[i - 1][None]).tolist() == [True]
    # on: Δp is the athlete's motion, in frame t's labelling
    np.testing.assert_allclose(on.targets.motion[a], P(orig[i]) - P(orig[i - 1]), atol=1e-6)
    np.testing.assert_allclose(on.targets.motion[b], orig[i + 1] - orig[i], atol=1e-6)
    assert (on.targets.motion[a] ** 2).sum() < 0.1 * (off.targets.motion[a] ** 2).sum()
    # off: the old p_t − p_{t−1}, label flip included
    np.testing.assert_allclose(off.targets.motion[a], P(orig[i]) - orig[i - 1], atol=1e-6)
    np.testing.assert_allclose(off.targets.motion[b], orig[i + 1] - P(orig[i]), atol=1e-6)
    # pose targets and every other row are the same either way
    np.testing.assert_array_equal(on.targets.pose, off.targets.pose)
    np.testing.assert_array_equal(on.targets.pose_flip, off.targets.pose_flip)
    others = np.ones(len(on.targets.row), bool)
    others[[a, b]] = False
    np.testing.assert_array_equal(on.targets.motion[others], off.targets.motion[others])
    # the flip augmentation's target stays the mirror of the swap-aware one
    for d in (on, off):
        np.testing.assert_allclose(d.targets.motion_flip, flip_features(d.targets.motion), atol=1e-6)
        batch = d.subset(np.array([a, b])).__getitems__([0, 1])
        cfg = AugmentConfig(flip_p=1.0)
        _, _, flipped = augment_batch(batch["rgb"], batch["flow"], batch["target"], None,
                                      torch.Generator().manual_seed(0), cfg, batch["target_flipped"])
        np.testing.assert_allclose(flipped.numpy(), flip_target(batch["target"]).numpy(), atol=1e-6)


def test_swap_aware_motion_with_the_vipe_teacher_embeds_the_relabelled_keypoints(store, tmp_path):
    from offline_train.corpus.store import VideoStore
    from offline_train.distill.train import resolve_teacher
    from vpd_stream.models.vipe import Vipe, embed_poses, load_vipe, save_vipe
    from vpd_stream.skeleton import FLIP_PERM

    root, i, _ = _swapped_store(tmp_path, store)
    torch.manual_seed(0)
    path = save_vipe(Vipe(), tmp_path / "vipe.safetensors")
    fn = resolve_teacher(DistillOptions(store=str(root), out="x.safetensors", teacher="vipe", vipe_model=str(path)))
    on = DistillData(root, threshold=0.5, teacher="vipe", teacher_fn=fn)
    off = DistillData(root, threshold=0.5, teacher="vipe", teacher_fn=fn, swap_aware_motion=False)
    model = load_vipe(path)
    with VideoStore(on.paths[0]) as v:
        kp = v.arrays["keypoints"]
    a = _target_index(on, 0, i)
    assert on.targets.swapped[a]
    # an embedding cannot be permuted: the teacher embeds the relabelled previous keypoints
    prev_rel = kp[i - 1][FLIP_PERM][None]
    np.testing.assert_allclose(on.targets.motion[a], embed_poses(model, kp[i:i + 1])[0] - embed_poses(model, prev_rel)[0],
                               atol=1e-5)
    np.testing.assert_allclose(on.targets.motion_flip[a], embed_poses(model, kp[i:i + 1], flip=True)[0]
                               - embed_poses(model, prev_rel, flip=True)[0], atol=1e-5)
    np.testing.assert_allclose(off.targets.motion[a], embed_poses(model, kp[i:i + 1])[0] - embed_poses(model, kp[i - 1:i])[0],
                               atol=1e-5)
    np.testing.assert_array_equal(on.targets.pose, off.targets.pose)


def test_distill_command_line(store, tmp_path):
    """`vpd-stream distill` passes its options through (swap-aware motion off here) and writes the student."""
    import json

    from click.testing import CliRunner

    from offline_train.commands import distill as distill_cmd

    out = tmp_path / "cli.safetensors"
    args = [str(store), "--out", str(out), "--epochs", "1", "--epoch-size", "2", "--batch-size", "2",
            "--loader-workers", "0", "--val-frames", "2", "--architecture", "resnet18", "--threads", "1",
            "--no-swap-aware-motion", "-q"]
    result = CliRunner().invoke(distill_cmd, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert json.loads((run_dir(out) / "results.json").read_text())["swap_aware_motion"] is False
