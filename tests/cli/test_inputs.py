"""Input discovery and mel-file reading shared by the file-processing commands."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from waveflow.cli import CLIError
from waveflow.cli._inputs import collect_inputs, file_seed, load_mel_file


class Pickled:
    """A class a weights-only load must refuse."""


def test_filelist_entries_are_relative_to_the_list(tmp_path, monkeypatch):
    (tmp_path / "lists" / "wavs").mkdir(parents=True)
    (tmp_path / "lists" / "wavs" / "a.wav").write_bytes(b"")
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "b.wav").write_bytes(b"")
    listing = tmp_path / "lists" / "test.txt"
    listing.write_text("# header\nwavs/a.wav|Some text.\n\n")
    monkeypatch.chdir(tmp_path)
    found = collect_inputs([], listing, (".wav",), what="audio")
    assert [p.resolve() for p in found] == [(tmp_path / "lists" / "wavs" / "a.wav").resolve()]
    listing.write_text("wavs/a.wav\nwavs/b.wav\n")  # b.wav exists only next to the current folder
    with pytest.raises(FileNotFoundError, match="b.wav"):
        collect_inputs([], listing, (".wav",), what="audio")


def test_collect_inputs_files_folders_globs_and_duplicates(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/x.npy", "a/deep/y.npy", "a/notes.txt", "z.pt"):
        (tmp_path / name).write_bytes(b"")
    found = collect_inputs(
        [str(tmp_path / "a"), str(tmp_path / "**" / "*.npy"), str(tmp_path / "z.pt")],
        None,
        (".npy", ".pt"),
        what="mel input(s)",
    )
    # Folders are searched recursively; the glob's matches were already found and are not repeated.
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/deep/y.npy", "a/x.npy", "z.pt"]
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        collect_inputs([str(tmp_path / "missing.npy")], None, (".npy",), what="mel input(s)")
    with pytest.raises(CLIError, match="no .wav files in folder"):
        collect_inputs([str(tmp_path / "a")], None, (".wav",), what="audio")
    with pytest.raises(CLIError, match="no mel input"):
        collect_inputs([], None, (".npy",), what="mel input(s)")


def test_mel_file_readers(tmp_path):
    mel = np.random.default_rng(0).standard_normal((40, 9)).astype(np.float32)
    torch.save({"mel": torch.from_numpy(mel)}, tmp_path / "dict.pt")
    np.savez(tmp_path / "feats.npz", feats=mel, other=np.zeros(3))
    np.save(tmp_path / "f64.npy", mel.astype(np.float64))
    for name in ("dict.pt", "feats.npz", "f64.npy"):
        loaded = load_mel_file(tmp_path / name, 40)
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, mel)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        (
            "two.npz",
            lambda p: np.savez(p, a=np.zeros((40, 2)), b=np.zeros((40, 2))),
            "holds arrays ['a', 'b']",
        ),
        (
            "obj.npy",
            lambda p: np.save(p, np.array([{}], dtype=object), allow_pickle=True),
            "not a readable .npy",
        ),
        ("evil.pt", lambda p: torch.save(Pickled(), p), "holds pickled Python objects"),
        ("list.pt", lambda p: torch.save([1, 2], p), "holds a list, expected a tensor"),
        ("empty.npy", lambda p: p.write_bytes(b""), "not a readable .npy"),
        ("text.npy", lambda p: np.save(p, np.array(["a", "b"])), "expected floating-point"),
        ("flat.npy", lambda p: np.save(p, np.zeros(40, np.float32)), "has shape (40,)"),
        ("zero.npy", lambda p: np.save(p, np.zeros((40, 0), np.float32)), "no frames"),
        ("mel.txt", lambda p: p.write_text("1 2 3"), "has extension '.txt'"),
    ],
)
def test_mel_file_errors_are_one_line(tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(ValueError) as info:
        load_mel_file(tmp_path / name, 40)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_file_seed_depends_on_seed_and_name():
    """The same seed and name give the same noise in every run: the value does not depend on the
    interpreter (Python's ``hash`` of a string changes with ``PYTHONHASHSEED``)."""
    pairs = [(1, "a.npy"), (2, "a.npy"), (1, "b.npy")]
    here = [file_seed(seed, name) for seed, name in pairs]
    code = f"from waveflow.cli._inputs import file_seed; print([file_seed(s, n) for s, n in {pairs!r}])"
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == str(here)
    assert len(set(here)) == 3
    assert 0 <= file_seed(123, "x") < 2**63
