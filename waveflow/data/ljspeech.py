"""LJSpeech-1.1: metadata, safe archive extraction, and the published train/val/test splits.

LJSpeech-1.1 is one folder: ``metadata.csv`` (``id|text|normalized text``, UTF-8, 13,100 lines)
and ``wavs/<id>.wav`` (22,050 Hz, 16-bit mono).

Splits. Vocoder papers evaluate on different LJSpeech subsets, and the subsets overlap each other's
training parts (495 of NVIDIA's 500 test clips are in HiFi-GAN's training list; 479 are in
ESPnet/ParallelWaveGAN's), so a number is only comparable with numbers measured on the same split
by models that never trained on it. :func:`split_corpus` applies one of:

* ``nvidia``: NVIDIA Tacotron2/WaveGlow (and DeepLearningExamples): their 100 validation and 500
  test ids (bundled in ``waveflow/data/splits/nvidia``); training = every other utterance
  (12,500 on the full corpus).
* ``espnet``: ESPnet2 / ParallelWaveGAN: corpus ids sorted, train up to ``LJ049-0007`` (12,600),
  dev ``LJ049-0008`` to ``LJ050-0028`` (250), eval from ``LJ050-0029`` (250). A rule over the ids,
  so no list is needed.
* ``random``: a seeded random split of the corpus with the requested sizes.
* a folder of id lists (``train.txt``/``training.txt``, ``val.txt``/``validation.txt``/``dev.txt``,
  ``test.txt``/``eval.txt``, or NVIDIA's ``ljs_audio_text_*_filelist.txt``), for any other
  published split: e.g. HiFi-GAN's ``LJSpeech-1.1`` folder (``training.txt``, ``validation.txt``).
  Lines may be bare ids or ``path|text`` / ``id|text|...`` lines; the id is the file name without
  its extension. Without a training list, training = every other utterance. Without a test list
  (HiFi-GAN publishes none and reports on its validation list), the validation list is used as the
  test list too, and the report says so.
"""

from __future__ import annotations

import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

LJSPEECH_SAMPLE_RATE = 22050
LJSPEECH_NUM_UTTERANCES = 13100
CORPUS_FOLDER = "LJSpeech-1.1"

SPLITS = ("nvidia", "espnet", "random")
# ESPnet2 / ParallelWaveGAN: the last training id and the last dev id of the sorted corpus.
_ESPNET_LAST_TRAIN = "LJ049-0007"
_ESPNET_LAST_DEV = "LJ050-0028"

_PART_FILES = {
    "train": ("train.txt", "training.txt", "ljs_audio_text_train_filelist.txt"),
    "val": ("val.txt", "validation.txt", "dev.txt", "ljs_audio_text_val_filelist.txt"),
    "test": ("test.txt", "eval.txt", "ljs_audio_text_test_filelist.txt"),
}


@dataclass(frozen=True)
class Utterance:
    """One line of ``metadata.csv``; ``wav_path`` is ``<root>/wavs/<id>.wav`` (it may not exist)."""

    id: str
    wav_path: Path
    text: str
    normalized_text: str


# -- corpus --------------------------------------------------------------------------------------
def find_corpus_root(path: str | os.PathLike[str]) -> Path:
    """The folder holding ``metadata.csv``: ``path`` itself or ``path/LJSpeech-1.1``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LJSpeech folder not found: {path}")
    for candidate in (path, path / CORPUS_FOLDER):
        if (candidate / "metadata.csv").is_file():
            return candidate
    raise FileNotFoundError(f"no metadata.csv in {path} or {path / CORPUS_FOLDER}; is this LJSpeech-1.1?")


def read_metadata(root: str | os.PathLike[str]) -> list[Utterance]:
    """Parse ``metadata.csv`` of an LJSpeech-format corpus, in file order.

    ``root`` is the corpus folder (or its parent, see :func:`find_corpus_root`). Every non-blank line
    must have exactly three ``|``-separated fields with a non-empty id; ids must be unique. Errors
    raise ``ValueError`` naming the file and line number.
    """
    root = find_corpus_root(root)
    metadata = root / "metadata.csv"
    try:
        lines = metadata.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{metadata} is not UTF-8 text: {exc}") from exc
    utterances: list[Utterance] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 3:
            raise ValueError(
                f"{metadata}, line {number}: expected 3 '|'-separated fields (id|text|normalized text), "
                f"got {len(fields)}: {line[:80]!r}"
            )
        utt_id, text, normalized = (f.strip() for f in fields)
        if not utt_id:
            raise ValueError(f"{metadata}, line {number}: empty utterance id")
        if "/" in utt_id or "\\" in utt_id:
            raise ValueError(f"{metadata}, line {number}: utterance id {utt_id!r} contains a path separator")
        if utt_id in first_line:
            raise ValueError(
                f"{metadata}, line {number}: utterance id {utt_id!r} repeats line {first_line[utt_id]}"
            )
        first_line[utt_id] = number
        utterances.append(Utterance(utt_id, root / "wavs" / f"{utt_id}.wav", text, normalized))
    if not utterances:
        raise ValueError(f"{metadata} lists no utterances")
    return utterances


def extract_archive(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Extract ``LJSpeech-1.1.tar.bz2`` (any tar) into ``dest``; return the corpus folder.

    Every member is checked before anything is written: absolute paths, ``..`` components, links
    and device files are refused with a ``ValueError`` naming the member, so a crafted archive cannot
    write outside ``dest``. Where Python has tarfile's ``"data"`` filter (3.10.12, 3.11.4, 3.12 and
    later) extraction goes through it as well; elsewhere the same guarantees are applied by hand
    (regular files and folders only, no setuid/setgid/sticky or group/other write bits, owned by
    the user extracting).

    ``progress(phase, done, total)`` is called as the archive is read, once while its members are
    checked (``phase="check"``) and once while they are written (``"extract"``): ``done`` of
    ``total`` bytes of the (compressed) archive file.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    if not tarfile.is_tarfile(archive):
        raise ValueError(f"{archive} is not a tar archive (expected LJSpeech-1.1.tar.bz2)")
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    total = archive.stat().st_size

    def report(phase: str, raw: BinaryIO) -> None:
        if progress is not None:
            progress(phase, min(raw.tell(), total), total)

    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
        for member in tar:  # reads the whole archive once, before anything is written
            _check_member(archive, member, base)
            report("check", raw)
        members = tar.getmembers()

        def reporting() -> Iterator[tarfile.TarInfo]:
            for member in members:
                yield member
                report("extract", raw)

        if hasattr(tarfile, "data_filter"):
            # The "data" filter repeats the checks above and drops unsafe permission bits and owners.
            tar.extractall(base, members=reporting(), filter="data")
        else:
            tar.extractall(base, members=(_sanitized(m) for m in reporting()))
    return find_corpus_root(dest)


def _check_member(archive: Path, member: tarfile.TarInfo, base: Path) -> None:
    """Refuse (``ValueError``) a member that is not a plain file or folder inside ``base``."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise ValueError(f"{archive}: refusing member {member.name!r} (absolute or '..' path)")
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"{archive}: refusing member {member.name!r} (links and devices are not extracted)")
    target = (base / member.name).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"{archive}: refusing member {member.name!r} (it would land outside {base})")


def _sanitized(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """What the ``"data"`` filter does to a checked file or folder, for Pythons without it: no
    setuid/setgid/sticky or group/other write bits, and owned by the user who extracts."""
    member.mode &= 0o755
    if hasattr(os, "getuid"):  # tarfile changes owners only for root, and only on POSIX
        member.uid, member.gid = os.getuid(), os.getgid()
    member.uname = member.gname = ""  # no name lookup: the numeric ids above are used
    return member


# -- splits ---------------------------------------------------------------------------------------
def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    """Utterance ids in a split list, in order: bare ids, ``path|text`` or ``id|text|...`` lines.

    The id is the first field's file name without its extension (``DUMMY/LJ001-0001.wav`` ->
    ``LJ001-0001``). Blank lines and ``#`` comments are skipped; a repeated id raises ``ValueError``
    with both line numbers.
    """
    path = Path(path)
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        entry = stripped.split("|", 1)[0].strip()
        utt_id = PurePosixPath(entry.replace("\\", "/")).name
        utt_id = utt_id.rsplit(".", 1)[0] if "." in utt_id else utt_id
        if not utt_id:
            raise ValueError(f"{path}, line {number}: no utterance id in {line[:80]!r}")
        if utt_id in first_line:
            raise ValueError(f"{path}, line {number}: id {utt_id!r} repeats line {first_line[utt_id]}")
        first_line[utt_id] = number
        ids.append(utt_id)
    return ids


def load_split(name: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The id lists of a published split: ``"nvidia"`` (bundled) or a folder of lists.

    Returns the parts that are listed (``"train"``, ``"val"``, ``"test"``); a missing ``"train"``
    means "every other utterance". ``espnet`` and ``random`` are rules over the corpus ids rather
    than lists: use :func:`split_corpus` for them.
    """
    if name in ("espnet", "random"):
        raise ValueError(f"the {name!r} split is a rule over the corpus ids, not a list; use split_corpus()")
    if name == "nvidia":
        folder = resources.files("waveflow.data").joinpath("splits").joinpath("nvidia")
        with resources.as_file(folder) as path:
            return {part: read_id_list(path / f"{part}.txt") for part in ("val", "test")}
    folder = Path(name)
    if not folder.is_dir():
        raise ValueError(
            f"unknown split {str(name)!r}: use one of {', '.join(SPLITS)} or a folder of id lists"
        )
    lists: dict[str, list[str]] = {}
    for part, candidates in _PART_FILES.items():
        found = [folder / c for c in candidates if (folder / c).is_file()]
        if len(found) > 1:
            raise ValueError(
                f"{folder} has several {part} lists ({', '.join(p.name for p in found)}); keep one"
            )
        if found:
            lists[part] = read_id_list(found[0])
    if "val" not in lists and "test" not in lists:
        expected = ", ".join(_PART_FILES["val"] + _PART_FILES["test"])
        raise ValueError(f"{folder} holds no validation or test list (looked for {expected})")
    return lists


@dataclass(frozen=True)
class CorpusSplit:
    """A split applied to a corpus: ids per part (in corpus order) and what the split's lists named
    that the corpus lacks (``absent``, per part)."""

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    absent: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def parts(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def split_corpus(
    ids: Sequence[str],
    split: str | os.PathLike[str] = "nvidia",
    *,
    num_val: int = 100,
    num_test: int = 500,
    seed: int = 1234,
) -> CorpusSplit:
    """Assign the corpus ``ids`` to train/val/test with a named split or a folder of lists.

    ``num_val``, ``num_test`` and ``seed`` apply to ``"random"`` only; the random split is a function
    of the set of ids and the seed (not of their order). Listed ids missing from the corpus are
    reported in ``absent``. Parts may come out empty (e.g. the ``nvidia`` lists on a corpus that is
    not LJSpeech); callers decide whether that is an error.
    """
    ids = list(ids)
    duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise ValueError(f"the corpus lists ids more than once: {', '.join(duplicates[:10])}")
    in_corpus = set(ids)
    name = str(split)

    if split == "random":
        for label, value in (("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1 for a random split, got {value}")
        if num_val + num_test >= len(ids):
            raise ValueError(
                f"a random split of {len(ids)} utterances cannot hold {num_val} validation + {num_test} test "
                "utterances and still leave some for training"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        ordered = sorted(ids)
        order = np.random.default_rng(seed).permutation(len(ordered))
        val = {ordered[i] for i in order[:num_val]}
        test = {ordered[i] for i in order[num_val : num_val + num_test]}
        return _in_corpus_order(name, ids, val, test, train=None)

    if split == "espnet":
        val = {i for i in ids if _ESPNET_LAST_TRAIN < i <= _ESPNET_LAST_DEV}
        test = {i for i in ids if i > _ESPNET_LAST_DEV}
        return _in_corpus_order(name, ids, val, test, train=None)

    lists = load_split(split)
    absent = {
        part: tuple(i for i in listed if i not in in_corpus) for part, listed in lists.items() if listed
    }
    absent = {part: missing for part, missing in absent.items() if missing}
    notes: list[str] = []
    if "test" not in lists:
        lists["test"] = list(lists["val"])
        notes.append("the split has no test list; its validation list is used as the test list too")
    if "val" not in lists:
        lists["val"] = list(lists["test"])
        notes.append("the split has no validation list; its test list is used for validation too")
    val = set(lists["val"]) & in_corpus
    test = set(lists["test"]) & in_corpus
    train = set(lists["train"]) & in_corpus if "train" in lists else None
    result = _in_corpus_order(name, ids, val, test, train)
    return CorpusSplit(result.name, result.train, result.val, result.test, absent, tuple(notes))


def _in_corpus_order(
    name: str, ids: Sequence[str], val: set[str], test: set[str], train: set[str] | None
) -> CorpusSplit:
    if train is None:
        train = set(ids) - val - test
    return CorpusSplit(
        name,
        train=tuple(i for i in ids if i in train),
        val=tuple(i for i in ids if i in val),
        test=tuple(i for i in ids if i in test),
    )


def check_contamination(train_ids: Iterable[str], eval_ids: Iterable[str]) -> list[str]:
    """Ids present in both ``train_ids`` and ``eval_ids`` (sorted): evaluation clips the model has
    trained on. An empty list means the evaluation set is clean."""
    return sorted(set(train_ids) & set(eval_ids))
