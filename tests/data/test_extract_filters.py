"""Archive extraction with and without tarfile's "data" filter (Pythons before 3.10.12/3.11.4 lack
it), its progress callback, and prepare-ljspeech's progress bars (hidden by -q)."""

from __future__ import annotations

import io
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from waveflow.cli import main
from waveflow.data import build_demo_corpus, extract_archive

FILTER_PATHS = ["data_filter", "manual"]


@pytest.fixture(params=FILTER_PATHS)
def filter_path(request, monkeypatch) -> str:
    """Run the test with tarfile's data filter, then as on a Python without it."""
    if request.param == "manual":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    return request.param


def _add(
    tar: tarfile.TarFile, name: str, *, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, **attrs
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _archive(path: Path, *extra: tuple[str, dict]) -> Path:
    with tarfile.open(path, "w:bz2") as tar:
        _add(tar, "LJSpeech-1.1", kind=tarfile.DIRTYPE, mode=0o755)
        _add(tar, "LJSpeech-1.1/metadata.csv", data=b"LJ001-0001|a|a\n", mode=0o644)
        _add(tar, "LJSpeech-1.1/wavs/LJ001-0001.wav", data=b"RIFF" * 5000, mode=0o644)
        for name, attrs in extra:
            _add(tar, name, **attrs)
    return path


def test_extraction_spies_on_the_filter(tmp_path, monkeypatch, filter_path):
    """With the data filter, extractall gets filter="data"; without it, no filter argument at all
    (an old Python's extractall would reject it)."""
    calls = []
    real = tarfile.TarFile.extractall

    def spy(self, path=".", members=None, **kwargs):
        calls.append(kwargs)
        return real(self, path, members, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", spy)
    root = extract_archive(_archive(tmp_path / "a.tar.bz2"), tmp_path / "out")
    assert (root / "metadata.csv").read_bytes() == b"LJ001-0001|a|a\n"
    assert calls == ([{"filter": "data"}] if filter_path == "data_filter" else [{}])


def test_unsafe_permission_bits_are_dropped(tmp_path, filter_path):
    archive = _archive(
        tmp_path / "a.tar.bz2",
        ("LJSpeech-1.1/setuid.sh", {"data": b"#!/bin/sh\n", "mode": 0o4777}),
        ("LJSpeech-1.1/shared.txt", {"data": b"x", "mode": 0o666}),
    )
    root = extract_archive(archive, tmp_path / "out")
    assert stat.S_IMODE((root / "setuid.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "shared.txt").stat().st_mode) & 0o022 == 0  # no group/other write
    assert (root / "setuid.sh").stat().st_uid == (root / "metadata.csv").stat().st_uid


@pytest.mark.parametrize(
    ("name", "attrs"),
    [
        ("../evil.txt", {}),
        ("/tmp/evil.txt", {}),
        ("LJSpeech-1.1/a/../../../evil.txt", {}),
        ("LJSpeech-1.1/link", {"kind": tarfile.SYMTYPE, "linkname": "../../evil.txt"}),
        ("LJSpeech-1.1/hard", {"kind": tarfile.LNKTYPE, "linkname": "LJSpeech-1.1/metadata.csv"}),
        ("LJSpeech-1.1/dev", {"kind": tarfile.CHRTYPE}),
        ("LJSpeech-1.1/fifo", {"kind": tarfile.FIFOTYPE}),
    ],
)
def test_escaping_members_are_refused_on_both_paths(tmp_path, filter_path, name, attrs):
    archive = _archive(tmp_path / "bad.tar.bz2", (name, attrs))
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match="refusing member"):
        extract_archive(archive, dest)
    assert not any(dest.rglob("*"))  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


def test_progress_reports_both_phases_in_archive_bytes(tmp_path):
    archive = _archive(tmp_path / "a.tar.bz2")
    total = archive.stat().st_size
    calls = []
    extract_archive(archive, tmp_path / "out", progress=lambda *args: calls.append(args))
    phases = [phase for phase, _, _ in calls]
    assert phases == sorted(phases, key=["check", "extract"].index)  # checked first, then extracted
    assert set(phases) == {"check", "extract"}
    assert all(t == total and 0 <= done <= total for _, done, t in calls)
    for phase in ("check", "extract"):
        done = [d for p, d, _ in calls if p == phase]
        assert done == sorted(done)  # never goes backwards within a phase
    assert [d for p, d, _ in calls if p == "check"][-1] == total  # the check reads the whole archive


# -- prepare-ljspeech's bars ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("prog")
    corpus = build_demo_corpus(folder / "LJSpeech-1.1", num_utterances=8, seconds=0.5)
    archive = folder / "LJSpeech-1.1.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        tar.add(corpus, arcname="LJSpeech-1.1")
    return archive


@pytest.mark.parametrize("quiet", [False, True])
def test_prepare_shows_progress_bars_unless_quiet(demo_archive, tmp_path, capsys, monkeypatch, quiet):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # tqdm draws only on a terminal
    argv = ["prepare-ljspeech", str(demo_archive), str(tmp_path / "data"), "--split", "random"]
    argv += ["--num-val", "2", "--num-test", "1"] + (["-q"] if quiet else [])
    assert main(argv) == 0
    err = capsys.readouterr().err
    bars = ("checking archive", "extracting", "checking wavs")
    if quiet:
        assert not any(bar in err for bar in bars), err
    else:
        assert all(bar in err for bar in bars), err
        assert "8/8" in err  # the wav scan counts files
    assert len((tmp_path / "data" / "train.txt").read_text().splitlines()) == 5
