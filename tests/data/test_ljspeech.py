"""LJSpeech metadata parsing and safe archive extraction."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from waveflow.data import extract_archive, find_corpus_root, read_metadata


def _corpus(root: Path, metadata: str) -> Path:
    (root / "wavs").mkdir(parents=True)
    (root / "metadata.csv").write_text(metadata, encoding="utf-8")
    return root


def test_metadata_fields_paths_and_order(tmp_path: Path):
    root = _corpus(
        tmp_path / "LJSpeech-1.1",
        "LJ001-0002|in being comparatively modern.|in being comparatively modern.\n"
        "LJ001-0001|Printing, in 1455|Printing, in fourteen fifty-five\n"
        "\n",
    )
    utterances = read_metadata(tmp_path)  # the folder above LJSpeech-1.1 works too
    assert [u.id for u in utterances] == ["LJ001-0002", "LJ001-0001"]
    assert utterances[1].wav_path == root / "wavs" / "LJ001-0001.wav"
    assert utterances[1].text == "Printing, in 1455"
    assert utterances[1].normalized_text == "Printing, in fourteen fifty-five"
    assert find_corpus_root(tmp_path) == root


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("LJ001-0002|only two fields", r"line 2: expected 3 '\|'-separated fields .* got 2"),
        ("LJ001-0002|a|b|c", r"line 2: expected 3 .* got 4"),
        ("|text|text", r"line 2: empty utterance id"),
        ("LJ001-0001|again|again", r"line 2: utterance id 'LJ001-0001' repeats line 1"),
        ("../x|t|t", r"line 2: .* path separator"),
    ],
)
def test_metadata_errors_name_the_line(tmp_path: Path, line: str, message: str):
    _corpus(tmp_path, f"LJ001-0001|ok|ok\n{line}\n")
    with pytest.raises(ValueError, match=message):
        read_metadata(tmp_path)


def test_no_metadata_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no metadata.csv"):
        read_metadata(tmp_path)


def _add(
    tar: tarfile.TarFile, name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_extracts_the_ljspeech_layout(tmp_path: Path):
    archive = tmp_path / "LJSpeech-1.1.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        _add(tar, "LJSpeech-1.1/metadata.csv", b"LJ001-0001|a|a\n")
        _add(tar, "LJSpeech-1.1/wavs/LJ001-0001.wav", b"RIFF")
    root = extract_archive(archive, tmp_path / "out")
    assert root == (tmp_path / "out" / "LJSpeech-1.1").resolve()
    assert [u.id for u in read_metadata(root)] == ["LJ001-0001"]


@pytest.mark.parametrize(
    ("name", "kind", "link"),
    [
        ("../evil.txt", tarfile.REGTYPE, ""),
        ("/tmp/evil.txt", tarfile.REGTYPE, ""),
        ("LJSpeech-1.1/link", tarfile.SYMTYPE, "/etc/passwd"),
        ("LJSpeech-1.1/hard", tarfile.LNKTYPE, "LJSpeech-1.1/metadata.csv"),
    ],
)
def test_refuses_members_that_could_escape(tmp_path: Path, name: str, kind: bytes, link: str):
    archive = tmp_path / "bad.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        _add(tar, "LJSpeech-1.1/metadata.csv", b"LJ001-0001|a|a\n")
        _add(tar, name, kind=kind, link=link)
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match="refusing member"):
        extract_archive(archive, dest)
    # Checked before extraction: nothing at all was written.
    assert not any(dest.rglob("*"))
    assert not (tmp_path / "evil.txt").exists()


def test_not_an_archive(tmp_path: Path):
    fake = tmp_path / "LJSpeech-1.1.tar.bz2"
    fake.write_bytes(b"not a tar file at all")
    with pytest.raises(ValueError, match="not a tar archive"):
        extract_archive(fake, tmp_path / "out")
