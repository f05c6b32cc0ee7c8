"""The command line on good input: several sources, outputs, plugins listing, help."""
import av
import pytest

from clips import make_clip
from cli_helpers import jsonl_records, run_cli


def test_help_on_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    commands = [line.split()[0] for line in result.stdout.decode().split("Commands:")[1].splitlines() if line.strip()]
    assert {"run", "plugins", "demo"} <= set(commands)
    for command in commands:
        sub = run_cli(command, "--help")
        assert sub.returncode == 0 and b"Usage:" in sub.stdout, command


def test_plugins_lists_requires_and_provides():
    result = run_cli("plugins")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "framerecord:" in out and "provides: record" in out


def test_several_sources_share_the_pipeline(tmp_path):
    a = make_clip(tmp_path / "a.mp4", frames=30)
    b = make_clip(tmp_path / "b.mkv", codec="libvpx-vp9", frames=20, fps=50)
    out = tmp_path / "out.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(a), str(b), "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    records = jsonl_records(out)
    per_stream = {}
    for r in records:
        if r["type"] == "frame":
            per_stream.setdefault(r["stream"], []).append(r["frame"])
    assert per_stream["a"] == list(range(30))
    assert per_stream["b"] == list(range(10))  # 20 frames at 50 fps = 0.4 s → 10 at 25 fps
    assert {r["stream"] for r in records if r["type"] == "end"} == {"a", "b"}
    err = result.stderr.decode()
    assert "a: 30/30 frames" in err and "b: 10/10 frames" in err


def test_annotated_video_is_written_and_decodes(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", frames=25, size=(320, 240))
    video = tmp_path / "annotated.mp4"
    result = run_cli("run", "--chain", "framerecord", str(clip), "--annotate", str(video), "-q")
    assert result.returncode == 0, result.stderr.decode()
    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 25 and frames[0].width == 320


def test_fps_none_and_max_frames(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", frames=60, fps=60)
    out = tmp_path / "o.jsonl"
    result = run_cli("run", "--chain", "framerecord", str(clip), "--fps", "none", "--max-frames", "45", "-o", str(out))
    assert result.returncode == 0
    assert sum(r["type"] == "frame" for r in jsonl_records(out)) == 45


@pytest.mark.parametrize("value", ["0", "-3", "fast"])
def test_bad_fps_is_a_clear_error(tmp_path, value):
    clip = make_clip(tmp_path / "a.mp4", frames=5)
    result = run_cli("run", "--chain", "framerecord", str(clip), "--fps", value)
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert result.stderr.decode().startswith("error:")


# -- the command table: every spelling resolves, old ones hidden, load errors loud -----------

import dataclasses  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import click  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from vpd_stream.command_options import out_option  # noqa: E402
from vpd_stream.errors import ConfigError, PluginError  # noqa: E402
from vpd_stream.lazy_commands import COMMANDS, LazyGroup  # noqa: E402

OFFLINE = [("prepare",), ("distill",), ("embed",), ("export",), ("build-engine",),
           ("train", "recognizer"), ("train", "detector"), ("train", "nns-index"), ("train", "jmrn"),
           ("train", "vipe"), ("eval", "penn-action"), ("eval", "jmrn"), ("eval", "vipe")]
OLD_SPELLINGS = [("train-vipe",), ("eval-vipe",), ("eval", "penn-action-jmrn")]


def lazy_group(table=None) -> LazyGroup:
    return LazyGroup(name="vpd-stream", lazy=COMMANDS if table is None else table)


@pytest.mark.parametrize("words", OFFLINE + OLD_SPELLINGS, ids=" ".join)
def test_every_command_and_old_spelling_resolves_with_help(words):
    result = CliRunner().invoke(lazy_group(), [*words, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: vpd-stream {' '.join(words)} ")


def test_old_spellings_are_hidden_and_run_the_same_code():
    group = lazy_group()
    ctx = click.Context(group)
    top = CliRunner().invoke(group, ["--help"]).output
    assert "train-vipe" not in top and "eval-vipe" not in top and "train " in top
    evals = group.get_command(ctx, "eval")
    assert "penn-action-jmrn" not in CliRunner().invoke(evals, ["--help"]).output
    assert evals.get_command(ctx, "penn-action-jmrn").callback is evals.get_command(ctx, "jmrn").callback
    assert group.get_command(ctx, "eval-vipe").callback is evals.get_command(ctx, "vipe").callback
    # train-vipe's --data named the pose source; train vipe says --poses, and --data is the folder
    old = group.get_command(ctx, "train-vipe").make_context("train-vipe", ["--data", "synthetic", "--msr", "m",
                                                                         "--output", "x.safetensors"])
    new = group.get_command(ctx, "train").get_command(ctx, "vipe").make_context(
        "vipe", ["--poses", "synthetic", "--data", "m", "-o", "x.safetensors"])
    assert (old.params["poses"], old.params["msr_dir"]) == (new.params["poses"], new.params["msr_dir"]) == ("synthetic", "m")


def _probe_module(tmp_path, monkeypatch, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)


def test_an_import_error_of_the_project_is_loud(tmp_path, monkeypatch):
    _probe_module(tmp_path, monkeypatch, "h1_probe_typo", "import offline_train.no_such_module\n")
    for table in ({"typo": ("offline_train.comands", "prepare")}, {"typo": ("h1_probe_typo", "command")}):
        group = lazy_group(table)
        with pytest.raises(PluginError, match="command 'typo' cannot be loaded"):
            group.get_command(click.Context(group), "typo")
        listing = CliRunner().invoke(group, ["--help"])  # --help does not hide it either
        assert isinstance(listing.exception, PluginError)


def test_a_missing_attribute_is_loud():
    group = lazy_group({"gone": ("offline_train.commands", "no_such_command")})
    with pytest.raises(PluginError, match="has no click command 'no_such_command'"):
        group.get_command(click.Context(group), "gone")


def test_a_missing_optional_package_is_one_line_when_used(tmp_path, monkeypatch):
    _probe_module(tmp_path, monkeypatch, "h1_probe_extra", "import h1_no_such_wheel\n")
    group = lazy_group({"extra": ("h1_probe_extra", "command"), **COMMANDS})
    listing = CliRunner().invoke(group, ["--help"], catch_exceptions=False)
    assert listing.exit_code == 0 and "extra" not in listing.output and "distill" in listing.output
    with pytest.raises(PluginError, match="needs the Python package 'h1_no_such_wheel'"):
        group.get_command(click.Context(group), "extra")


# -- distill's options are DistillOptions' fields -----------------------------------------------


def test_distill_options_are_the_dataclass_fields():
    from offline_train.commands import distill
    from offline_train.distill.train import DistillOptions

    fields = {f.name for f in dataclasses.fields(DistillOptions)}
    params = {p.name for p in distill.params}
    assert params - {"quiet", "verbose"} == fields - {"progress"}  # progress is -q
    values = lambda args: {k: v for k, v in distill.make_context("distill", args).params.items()  # noqa: E731
                           if k not in ("quiet", "verbose")}
    assert DistillOptions(**values(["S", "-o", "m.safetensors"])) == DistillOptions(store="S", out="m.safetensors")
    old = values(["S", "--out", "m", "--no-motion", "--no-augment", "--no-swap-aware-motion", "--amp", "--resume",
                  "--teacher", "vipe", "--epoch-size", "7", "--lr", "0.1", "--threads", "1"])
    assert DistillOptions(**old) == DistillOptions(store="S", out="m", motion=False, augment=False,
                                                   swap_aware_motion=False, amp=True, resume=True, teacher="vipe",
                                                   epoch_size=7, lr=0.1, threads=1)
    bad = CliRunner().invoke(distill, ["S", "-o", "m", "--teacher", "pose3d"])
    assert bad.exit_code == 2 and "pose3d" in bad.output


@dataclass
class Toy:
    name: str
    count: int = 3
    rate: float | None = None
    flag: bool = False
    on: bool = True
    maybe: bool | None = None
    mode: str = field(default="a", metadata={"help": "which mode", "choices": ("a", "b")})
    hidden: int = 0


def test_dataclass_params_types_defaults_and_flags():
    from offline_train.commands.dataclass_options import dataclass_params

    command = click.Command("toy", params=dataclass_params(Toy, skip=("hidden",), short={"name": "-n"},
                                                           help={"count": "how many"}),
                            callback=lambda **values: Toy(**values))
    assert command.main(["-n", "x"], standalone_mode=False) == Toy(name="x")
    assert command.main(["--name", "x", "--count", "5", "--rate", "0.5", "--flag", "--no-on", "--no-maybe",
                         "--mode", "b"], standalone_mode=False) == Toy("x", 5, 0.5, True, False, False, "b")
    text = CliRunner().invoke(command, ["--help"]).output
    assert "how many" in text and "which mode" in text and "--hidden" not in text
    assert CliRunner().invoke(command, []).exit_code == 2  # name has no default: required
    assert CliRunner().invoke(command, ["-n", "x", "--mode", "c"]).exit_code == 2
    assert CliRunner().invoke(command, ["-n", "x", "--count", "many"]).exit_code == 2

    @dataclass
    class Unsupported:
        values: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="list"):
        dataclass_params(Unsupported)


# -- one spelling per option; one data folder ---------------------------------------------------


def test_out_is_the_one_spelling_and_output_still_works_hidden():
    @click.command()
    @out_option(required=True, help="where")
    def command(out):
        click.echo(out)

    for args in (["-o", "a"], ["--out", "a"], ["--output", "a"]):
        assert CliRunner().invoke(command, args).output == "a\n"
    missing = CliRunner().invoke(command, [])
    assert missing.exit_code == 2 and "--out" in missing.output
    assert "--output" not in CliRunner().invoke(command, ["--help"]).output


def test_data_folder_rule(tmp_path, monkeypatch):
    from vpd_stream.data_dir import data_folder, data_root, find_data_root

    monkeypatch.setenv("VPD_DATA_DIR", str(tmp_path))
    assert data_root() == tmp_path == find_data_root()
    with pytest.raises(ConfigError, match=r"Penn Action not found at .*penn_action; pass --data DIR or set VPD_DATA_DIR"):
        data_folder(None, "penn_action", "Penn Action")
    (tmp_path / "penn_action").mkdir()
    assert data_folder(None, "penn_action", "Penn Action") == tmp_path / "penn_action"
    assert data_folder(tmp_path, "penn_action", "Penn Action") == tmp_path  # a given folder wins
    monkeypatch.setenv("VPD_DATA_DIR", str(tmp_path / "nope"))
    assert find_data_root() is None


def test_the_recorded_command_line_is_what_was_typed(monkeypatch):
    from offline_train.commands.common import command_line, hidden_alias

    @click.command("new")
    @click.option("--a")
    def new(a):
        click.echo(command_line())

    group = click.Group("vpd-stream", commands={"new": new, "old": hidden_alias(new, "old")})
    for typed in (["new", "--a", "1"], ["old", "--a", "1"]):
        monkeypatch.setattr(sys, "argv", ["/venv/bin/vpd-stream", *typed])
        assert CliRunner().invoke(group, typed, prog_name="vpd-stream").output == f"vpd-stream {' '.join(typed)}\n"


def test_help_of_every_command_in_the_tree_hidden_ones_included():
    group = lazy_group()
    ctx = click.Context(group)
    seen = []

    def walk(command: click.Command, words: list[str]) -> None:
        result = CliRunner().invoke(group, [*words, "--help"], catch_exceptions=False)
        assert result.exit_code == 0 and "Usage:" in result.output, (words, result.output)
        seen.append(" ".join(words))
        if isinstance(command, click.Group):
            for name in command.commands if not isinstance(command, LazyGroup) else command.lazy:
                walk(command.get_command(ctx, name), [*words, name])

    walk(group, [])
    assert {" ".join(w) for w in OFFLINE + OLD_SPELLINGS} <= set(seen)
