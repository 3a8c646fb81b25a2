"""File lists: formats, relative paths, and errors that name the list and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from waveflow.data import read_filelist, write_filelist


def test_plain_nvidia_comments_and_blank_lines(tmp_path: Path):
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text(
        "# a comment\n\n/abs/a.wav\nwavs/b.wav|Some transcript, with | a bar.\n   ../c.flac   \n"
    )
    assert read_filelist(listing) == [
        Path("/abs/a.wav"),
        tmp_path / "lists" / "wavs" / "b.wav",
        tmp_path / "lists" / ".." / "c.flac",
    ]


def test_relative_paths_do_not_depend_on_the_current_folder(tmp_path: Path, monkeypatch):
    listing = tmp_path / "data" / "list.txt"
    listing.parent.mkdir()
    listing.write_text("x.wav\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.wav").write_bytes(b"")  # a same-named file in the current folder must not win
    monkeypatch.chdir(elsewhere)
    assert read_filelist(Path("../data/list.txt")) == [(tmp_path / "data" / "x.wav").resolve()]


def test_empty_path_is_reported_with_its_line_number(tmp_path: Path):
    listing = tmp_path / "bad.txt"
    listing.write_text("a.wav\n# fine\n|text without a path\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 3: no audio path"):
        read_filelist(listing)


def test_bare_ids_are_refused_with_their_line_number(tmp_path: Path):
    listing = tmp_path / "training.txt"
    listing.write_text("LJ001-0001.wav\nLJ001-0002|Printing, in the only sense|Printing, in the only sense\n")
    with pytest.raises(ValueError, match=r"training\.txt, line 2: 'LJ001-0002' is not an audio file path"):
        read_filelist(listing)


def test_missing_and_empty_lists(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_filelist(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="names no files"):
        read_filelist(empty)


def test_write_then_read_round_trip_is_absolute(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [Path("wavs/a.wav"), tmp_path / "b.wav"]
    write_filelist(tmp_path / "out.txt", files)
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert all(Path(line).is_absolute() for line in lines)
    assert read_filelist(tmp_path / "out.txt") == [tmp_path / "wavs" / "a.wav", tmp_path / "b.wav"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_write_refuses_paths_the_format_cannot_hold(tmp_path: Path):
    with pytest.raises(ValueError, match="may not contain"):
        write_filelist(tmp_path / "out.txt", [tmp_path / "a|b.wav"])
    assert not (tmp_path / "out.txt").exists()
