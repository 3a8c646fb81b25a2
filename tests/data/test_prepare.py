"""``waveflow prepare-ljspeech`` (and ``prepare_ljspeech``): lists, report, archive input, no partial output."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from waveflow.cli import main
from waveflow.data import build_demo_corpus, prepare_ljspeech, read_filelist
from waveflow.errors import InputError

OUTPUTS = ["prepare_report.json", "test.txt", "train.txt", "val.txt"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_demo_corpus(tmp_path_factory.mktemp("prep") / "LJSpeech-1.1", num_utterances=8, seconds=1.0)


def _copy(demo: Path, tmp_path: Path) -> Path:
    corpus = tmp_path / "LJSpeech-1.1"
    shutil.copytree(demo, corpus)
    return corpus


def test_random_split_lists_and_report(demo: Path, tmp_path: Path):
    out = tmp_path / "data"
    assert (
        main(
            [
                "prepare-ljspeech",
                str(demo),
                str(out),
                "--split",
                "random",
                "--num-val",
                "2",
                "--num-test",
                "1",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    parts = {part: read_filelist(out / f"{part}.txt") for part in ("train", "val", "test")}
    assert [len(parts[p]) for p in ("train", "val", "test")] == [5, 2, 1]
    every = [p for files in parts.values() for p in files]
    assert len(set(every)) == 8 and all(p.is_absolute() and p.is_file() for p in every)
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["split"] == "random" and report["seed"] == 1234
    assert report["sizes"] == {"train": 5, "val": 2, "test": 1}
    assert report["scan"]["num_usable"] == 8 and report["scan"]["silent"] == []
    assert report["train_overlap"] == {"val": [], "test": []}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # staging removed


def test_named_split_that_does_not_fit_suggests_random(demo: Path, tmp_path: Path, capsys):
    out = tmp_path / "data"
    assert main(["prepare-ljspeech", str(demo), str(out), "--split", "nvidia"]) == 2
    err = capsys.readouterr().err
    assert "leaves the val and test part(s) empty" in err and "--split random" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_audio_is_named_and_nothing_is_written(demo: Path, tmp_path: Path, capsys):
    corpus = _copy(demo, tmp_path)
    (corpus / "wavs" / "DEMO-0003.wav").write_bytes(b"not audio")
    (corpus / "wavs" / "DEMO-0005.wav").unlink()
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier file")
    assert (
        main(
            [
                "prepare-ljspeech",
                str(corpus),
                str(out),
                "--split",
                "random",
                "--num-val",
                "1",
                "--num-test",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "2 of 8 wav files listed in metadata.csv cannot be used" in err
    assert "DEMO-0003.wav" in err and "DEMO-0005.wav" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_archive_source_is_extracted_into_outdir(demo: Path, tmp_path: Path):
    archive = tmp_path / "LJSpeech-1.1.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        tar.add(demo, arcname="LJSpeech-1.1")
    out = tmp_path / "data"
    args = [
        "prepare-ljspeech",
        str(archive),
        str(out),
        "--split",
        "random",
        "--num-val",
        "1",
        "--num-test",
        "1",
    ]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["LJSpeech-1.1", *OUTPUTS]
    train = read_filelist(out / "train.txt")
    assert all(p.parent == (out / "LJSpeech-1.1" / "wavs").absolute() and p.is_file() for p in train)
    assert main(args) == 0  # a re-run reuses the extracted corpus


def test_split_dir_and_option_checks(demo: Path, tmp_path: Path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "validation.txt").write_text("DEMO-0001|a|a\nDEMO-0002|b|b\n")
    out = tmp_path / "data"
    assert main(["prepare-ljspeech", str(demo), str(out), "--split-dir", str(lists)]) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["sizes"] == {"train": 6, "val": 2, "test": 2}
    assert report["notes"] and "no test list" in report["notes"][0]
    assert main(["prepare-ljspeech", str(demo), str(out), "--num-val", "3"]) == 2
    assert "--split random only" in capsys.readouterr().err


def test_prepare_ljspeech_from_python(demo: Path, tmp_path: Path):
    """The library call behind the command: a report back, lines to ``log``, no partial output."""
    lines: list[str] = []
    out = tmp_path / "data"
    report = prepare_ljspeech(
        demo, out, "random", num_val=2, num_test=2, seed=7, log=lines.append, disable_progress=True
    )
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    assert report == json.loads((out / "prepare_report.json").read_text())
    assert report["sizes"] == {"train": 4, "val": 2, "test": 2} and report["seed"] == 7
    assert [len(read_filelist(out / f"{part}.txt")) for part in ("train", "val", "test")] == [4, 2, 2]
    assert lines[0] == f"8 utterances in {demo.absolute() / 'metadata.csv'}"
    assert lines[-1].startswith("random split: 4 train / 2 val / 2 test")

    with pytest.raises(InputError, match="leaves the val and test part"):
        prepare_ljspeech(demo, tmp_path / "nvidia", log=lines.append, disable_progress=True)
    assert not (tmp_path / "nvidia").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        prepare_ljspeech(demo, tmp_path / "file", "random")
