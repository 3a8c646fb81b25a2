"""The CLI's one error path: one line per expected failure, one exit code per class (see waveflow.errors).

Also the cases that used to end in a traceback or never return: outputs below a file or on a
read-only file system, a disk that fills up in the middle of a batch, symlink loops under a glob
or folder input, crafted ``num_samples`` in a latent file, SIGTERM, ``--debug`` and ``--quiet``.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli.conftest import speech_mel, write_speech_wav
from tests.conftest import REPO
from tests.helpers import one_error_line
from waveflow import cli
from waveflow.cli import _inputs
from waveflow.errors import CheckpointError


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with a mel file, a recording and a latent file written by ``encode``."""
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "m.npy", speech_mel(2000))
    write_speech_wav(folder / "a.wav", 3000)
    return folder


def _argv(command: str, checkpoint: Path, inputs: Path, out: Path) -> list[str]:
    """The command line of ``command`` writing to ``out`` (a folder or a file, as the command wants)."""
    ckpt, mel, wav = str(checkpoint), str(inputs / "m.npy"), str(inputs / "a.wav")
    return {
        "synthesize": ["synthesize", ckpt, mel, "-o", str(out)],
        "resynthesize": ["resynthesize", ckpt, wav, str(out / "o.wav")],
        "extract-mels": ["extract-mels", "--checkpoint", ckpt, wav, "-o", str(out)],
        "encode": ["encode", ckpt, wav, str(out / "z.npz")],
        "decode": ["decode", ckpt, str(inputs / "z.npz"), str(out / "o.wav")],
        "score": ["score", ckpt, wav, "--json", str(out / "s.json")],
        "evaluate": [
            "evaluate", ckpt, wav, "--generated-dir", str(out / "gen"), "--synthesize",
            "--no-griffin-lim", "-o", str(out),
        ],
    }[command]  # fmt: skip


OUTPUT_COMMANDS = ("synthesize", "resynthesize", "extract-mels", "encode", "decode", "score", "evaluate")


def _with_latent(command: str, checkpoint: Path, inputs: Path) -> None:
    if command == "decode":
        latent = ["encode", str(checkpoint), str(inputs / "a.wav"), str(inputs / "z.npz")]
        assert cli.main(latent) == 0


# -- outputs that cannot be written: exit 4 -------------------------------------------------------------
@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_output_below_a_file_is_one_line_exit_4(command, checkpoint, inputs, tmp_path, capsys):
    _with_latent(command, checkpoint, inputs)
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("a file, not a folder\n")
    capsys.readouterr()
    assert cli.main(_argv(command, checkpoint, inputs, blocker / "out")) == 4
    line = one_error_line(capsys, command)
    assert str(blocker) in line and "is a file" in line, line


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_read_only_output_is_one_line_exit_4_before_the_work(
    command, checkpoint, inputs, tmp_path, capsys, monkeypatch
):
    _with_latent(command, checkpoint, inputs)
    capsys.readouterr()
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_open, real_mkdir = os.open, Path.mkdir

    def refuse(path: object) -> None:
        if str(path).startswith(str(read_only)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def fake_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(self, *args, **kwargs):
        if not self.exists():
            refuse(self)
        return real_mkdir(self, *args, **kwargs)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(Path, "mkdir", fake_mkdir)
    monkeypatch.setattr(_inputs, "load_vocoder", no_model)
    assert cli.main(_argv(command, checkpoint, inputs, read_only / "out")) == 4
    line = one_error_line(capsys, command)
    assert str(read_only) in line and "Read-only file system" in line, line


def test_disk_full_in_the_middle_of_a_batch_fails_the_command(checkpoint, tmp_path, capsys, monkeypatch):
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", speech_mel(1500))
    out = tmp_path / "out"
    real_open = os.open
    opened: list[str] = []

    def fake_open(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp") and str(path).startswith(str(out)):
            opened.append(str(path))
            if len(opened) > 1:  # the first file is written, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    argv = ["-q", "synthesize", str(checkpoint), *(str(tmp_path / f"{n}.npy") for n in "abc"), "-o", str(out)]
    # -q: no clipping note for the file written first. The output location is unusable: not "1, some failed".
    assert cli.main(argv) == 4
    line = one_error_line(capsys, "synthesize")
    assert "No space left on device" in line and str(out) in line and ".wav" in line, line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# -- exit codes of the other classes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (CheckpointError("bad.pt: tensor 'w' has shape (3,), the config says (4,)"), 3, "bad.pt"),
        (MemoryError(), 5, "out of memory"),
        (OSError(errno.EIO, os.strerror(errno.EIO), "/data/x.npy"), 4, "/data/x.npy: Input/output error"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_exit_code_per_class(error, code, words, checkpoint, tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "m.npy", speech_mel(1000))

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(_inputs, "load_vocoder", fail)
    assert (
        cli.main(["synthesize", str(checkpoint), str(tmp_path / "m.npy"), "-o", str(tmp_path / "o")]) == code
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("waveflow synthesize: ") and words in err[0], err


def test_debug_shows_the_traceback_and_bugs_always_do(checkpoint, tmp_path, capsys, monkeypatch):
    (tmp_path / "junk.npz").write_bytes(b"junk")
    argv = ["decode", str(checkpoint), str(tmp_path / "junk.npz"), str(tmp_path / "o.wav")]
    assert cli.main(argv) == 2
    assert "Traceback" not in one_error_line(capsys, "decode")
    for flags in (["--debug", *argv], ["-v", *argv], [*argv, "--debug"], [*argv, "--verbose"]):
        assert cli.main(flags) == 2, flags
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "not a readable .npz" in err, flags
        assert err.strip().splitlines()[-1].startswith("waveflow decode: error:"), err

    def bug(*args, **kwargs):
        raise RuntimeError("a bug, not an input error")

    monkeypatch.setattr(_inputs, "load_vocoder", bug)
    np.save(tmp_path / "m.npy", speech_mel(1000))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["synthesize", str(checkpoint), str(tmp_path / "m.npy"), "-o", str(tmp_path / "o")])


def test_quiet_hides_notes_and_progress_bars(checkpoint, tmp_path, capsys, monkeypatch):
    write_speech_wav(tmp_path / "in.wav", 6000, sample_rate=22050)
    np.save(tmp_path / "m.npy", speech_mel(1000))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a terminal: bars are on
    resynthesize = ["resynthesize", str(checkpoint), str(tmp_path / "in.wav"), str(tmp_path / "o.wav")]
    synthesize = ["synthesize", str(checkpoint), str(tmp_path / "m.npy"), "-o", str(tmp_path / "o")]
    assert cli.main(resynthesize) == 0 and cli.main(synthesize) == 0
    loud = capsys.readouterr().err
    assert "note: " in loud and "synthesize: 100%" in loud, loud
    assert cli.main(["-q", *resynthesize]) == 0 and cli.main([*synthesize, "--quiet"]) == 0
    quiet = capsys.readouterr().err
    assert "note: " not in quiet and "100%" not in quiet, quiet
    assert cli.main(resynthesize) == 0  # the flag does not outlive its command
    assert "note: " in capsys.readouterr().err


def test_sigterm_outside_training_is_one_line_exit_143(checkpoint, tmp_path):
    np.save(tmp_path / "m.npy", speech_mel(1000))
    script = (
        "import os, signal, sys, time\n"
        "from waveflow.cli import _inputs, main\n"
        "def terminated(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "_inputs.load_vocoder = terminated\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["synthesize", str(checkpoint), str(tmp_path / "m.npy"), "-o", str(tmp_path / "o")]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert done.returncode == 143, (done.returncode, done.stderr)
    assert done.stderr.strip().splitlines() == ["waveflow synthesize: terminated (SIGTERM)"], done.stderr
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # this process's handler is untouched


# -- symlink loops under glob and folder inputs -------------------------------------------------------------
def _tree_with_loops(root: Path) -> Path:
    """``d/`` with two loops back to itself and a link to a sibling folder that holds one more file."""
    d = root / "d"
    (d / "sub").mkdir(parents=True)
    (root / "other").mkdir()
    for name in ("d/a.npy", "d/sub/b.npy", "other/c.npy"):
        (root / name).write_bytes(b"")
    (d / "loop").symlink_to(d, target_is_directory=True)
    (d / "sub" / "up").symlink_to("..", target_is_directory=True)
    (d / "self").symlink_to(".", target_is_directory=True)
    (d / "other").symlink_to(root / "other", target_is_directory=True)
    (d / "dangling").symlink_to(root / "nowhere")
    (d / "knot").symlink_to(d / "knot")  # a link to itself
    return d


def test_collect_inputs_terminates_on_symlink_loops(tmp_path):
    d = _tree_with_loops(tmp_path)
    script = (
        "import sys\n"
        "from waveflow.cli._inputs import collect_inputs\n"
        "for item in sys.argv[1:]:\n"
        "    found = collect_inputs([item], None, ('.npy',), what='mel input(s)')\n"
        "    print(sorted(p.resolve().name for p in found))\n"
    )
    items = [str(d), str(d / "**" / "*.npy"), str(d / "*" / "*.npy"), str(d / "**")]
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, *items], capture_output=True, text=True, env=_env(), timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("collect_inputs did not return within 60 s on a folder with symlink loops")
    assert done.returncode == 0, done.stderr
    # Each real file once, files behind a link to another folder included.
    assert done.stdout.splitlines() == [
        "['a.npy', 'b.npy', 'c.npy']",
        "['a.npy', 'b.npy', 'c.npy']",
        "['a.npy', 'b.npy', 'c.npy']",  # d/*/*.npy: sub/b.npy, other/c.npy, loop/a.npy
        "['a.npy', 'b.npy', 'c.npy']",
    ]


def test_synthesize_with_a_looping_glob_returns(checkpoint, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    np.save(d / "m.npy", speech_mel(1000))
    (d / "loop").symlink_to(d, target_is_directory=True)
    (d / "self").symlink_to(".", target_is_directory=True)
    argv = ["synthesize", str(checkpoint), str(d / "**" / "*.npy"), "-o", str(tmp_path / "out")]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "waveflow", *argv], capture_output=True, text=True, env=_env(), timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("synthesize did not return within 120 s on a glob over symlink loops")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.wav"]


def test_glob_keeps_the_usual_hidden_file_rules(tmp_path):
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "v").mkdir()
    for name in (".hidden/x.npy", "v/.y.npy", "v/z.npy", "top.npy"):
        (tmp_path / name).write_bytes(b"")
    found = _inputs.collect_inputs([str(tmp_path / "**" / "*.npy")], None, (".npy",), what="mel")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["top.npy", "v/z.npy"]
    found = _inputs.collect_inputs([str(tmp_path / "**" / ".*.npy")], None, (".npy",), what="mel")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["v/.y.npy"]


# -- decode: a crafted num_samples -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "words"),
    [
        (np.int64(-5), "num_samples"),
        (np.float64(2500.5), "num_samples"),
        (np.int64(10**12), "num_samples"),
        (np.array([100, 200]), "num_samples"),
        (np.array("100"), "num_samples"),
    ],
)
def test_decode_refuses_a_bad_num_samples(value, words, checkpoint, tmp_path, capsys):
    write_speech_wav(tmp_path / "a.wav", 3000)
    assert cli.main(["encode", str(checkpoint), str(tmp_path / "a.wav"), str(tmp_path / "z.npz")]) == 0
    with np.load(tmp_path / "z.npz") as data:
        fields = dict(data)
    fields["num_samples"] = value
    np.savez(tmp_path / "bad.npz", **fields)
    capsys.readouterr()
    assert cli.main(["decode", str(checkpoint), str(tmp_path / "bad.npz"), str(tmp_path / "o.wav")]) == 2
    line = one_error_line(capsys, "decode")
    assert str(tmp_path / "bad.npz") in line and words in line, line
    assert not (tmp_path / "o.wav").exists()


def test_sigterm_during_training_still_stops_after_a_checkpoint(tmp_path, monkeypatch):
    """The CLI's own SIGTERM handler gives way to training's graceful stop, and comes back after."""
    import torch
    import yaml

    import waveflow.losses
    from tests.train.conftest import base_config, write_corpus

    config = base_config(write_corpus(tmp_path, [2500, 3000, 3500], "train"), None)
    config["train"].update(max_steps=20, checkpoint_every=100)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    original, calls = waveflow.losses.nll, []

    def nll_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(waveflow.losses, "nll", nll_then_signal)
    before, threads = signal.getsignal(signal.SIGTERM), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path / "run"
        assert cli.main(["train", "--config", str(tmp_path / "config.yaml"), "--run-dir", str(run)]) == 143
    finally:
        torch.set_num_threads(threads)
    assert (run / "checkpoints" / "last.pt").is_file()  # stopped after the step, with a checkpoint
    assert signal.getsignal(signal.SIGTERM) is before
