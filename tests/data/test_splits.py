"""Published LJSpeech splits: counts, the overlaps between them, and the random split.

The expected numbers are the ones stated for the shipped lists in the reference notes
(``reference/ecosystem.md`` 3.1): NVIDIA 12500/100/500, ESPnet/ParallelWaveGAN 12600/250/250 with
479/500 NVIDIA test clips in its training part and 476/500 of its dev+eval clips in NVIDIA's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from waveflow.cli.prepare import SPLIT_CHOICES
from waveflow.data import SPLITS, check_contamination, load_split, read_id_list, split_corpus
from waveflow.data.ljspeech import LJSPEECH_NUM_UTTERANCES

LJ_ID = re.compile(r"^LJ0(0[1-9]|[1-4][0-9]|50)-\d{4}$")
ESPNET_DEV_EVAL_SIZE = 500  # 250 dev + 250 eval on the full corpus


@pytest.fixture(scope="module")
def nvidia() -> dict[str, list[str]]:
    return load_split("nvidia")


def test_nvidia_lists_sizes_format_and_disjointness(nvidia):
    assert set(nvidia) == {"val", "test"}  # training = every other utterance
    assert len(nvidia["val"]) == 100 and len(set(nvidia["val"])) == 100
    assert len(nvidia["test"]) == 500 and len(set(nvidia["test"])) == 500
    assert all(LJ_ID.match(i) for i in nvidia["val"] + nvidia["test"])
    assert check_contamination(nvidia["val"], nvidia["test"]) == []
    assert LJSPEECH_NUM_UTTERANCES - 100 - 500 == 12500


def test_nvidia_test_vs_espnet_training_part(nvidia):
    corpus = nvidia["val"] + nvidia["test"]
    espnet = split_corpus(corpus, "espnet")  # the ESPnet rule is per id, so any subset will do
    assert len(check_contamination(espnet.train, nvidia["test"])) == 479


def test_espnet_dev_eval_vs_nvidia_training_part(nvidia):
    # NVIDIA's training part is the corpus minus its val and test lists, so the ESPnet dev+eval
    # clips NVIDIA trains on are the 500 minus those that are in NVIDIA's val or test list.
    espnet = split_corpus(nvidia["val"] + nvidia["test"], "espnet")
    assert ESPNET_DEV_EVAL_SIZE - len(espnet.val) - len(espnet.test) == 476


def test_nvidia_split_applied_to_a_corpus(nvidia):
    extra = [f"LJ051-{i:04d}" for i in range(1, 31)]  # ids no published list names
    corpus = extra + nvidia["test"][:50] + nvidia["val"][:10]
    result = split_corpus(corpus, "nvidia")
    assert result.train == tuple(extra)
    assert result.val == tuple(nvidia["val"][:10]) and result.test == tuple(nvidia["test"][:50])
    assert len(result.absent["val"]) == 90 and len(result.absent["test"]) == 450


def test_espnet_boundaries():
    ids = ["LJ049-0007", "LJ049-0008", "LJ050-0028", "LJ050-0029", "LJ050-0278", "LJ001-0001"]
    result = split_corpus(ids, "espnet")
    assert result.train == ("LJ049-0007", "LJ001-0001")
    assert result.val == ("LJ049-0008", "LJ050-0028")
    assert result.test == ("LJ050-0029", "LJ050-0278")


def test_random_split_is_seeded_and_order_free():
    ids = [f"DEMO-{i:04d}" for i in range(1, 201)]
    a = split_corpus(ids, "random", num_val=10, num_test=20, seed=7)
    b = split_corpus(list(reversed(ids)), "random", num_val=10, num_test=20, seed=7)
    assert (set(a.train), set(a.val), set(a.test)) == (set(b.train), set(b.val), set(b.test))
    assert (len(a.train), len(a.val), len(a.test)) == (170, 10, 20)
    assert set(a.train) | set(a.val) | set(a.test) == set(ids)
    assert check_contamination(a.train, a.val + a.test) == [] and not set(a.val) & set(a.test)
    c = split_corpus(ids, "random", num_val=10, num_test=20, seed=8)
    assert set(c.test) != set(a.test)


def test_random_split_sizes_are_checked():
    with pytest.raises(ValueError, match="cannot hold 5 validation \\+ 5 test"):
        split_corpus([f"x{i}" for i in range(10)], "random", num_val=5, num_test=5)
    with pytest.raises(ValueError, match="num_val must be >= 1"):
        split_corpus([f"x{i}" for i in range(10)], "random", num_val=0, num_test=2)


def test_folder_split_hifigan_style(tmp_path: Path):
    # HiFi-GAN's layout: training.txt and validation.txt with id|text|normalized lines, no test list.
    (tmp_path / "training.txt").write_text("LJ001-0001|a|a\nLJ001-0002|b|b\n")
    (tmp_path / "validation.txt").write_text("LJ001-0003|c|c\nLJ009-9999|gone|gone\n")
    corpus = ["LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0004"]
    result = split_corpus(corpus, tmp_path)
    assert result.train == ("LJ001-0001", "LJ001-0002")  # an explicit list: 0004 is in no part
    assert result.val == result.test == ("LJ001-0003",)
    assert result.absent == {"val": ("LJ009-9999",)}
    assert any("no test list" in note for note in result.notes)


def test_folder_split_without_training_list_uses_the_rest(tmp_path: Path):
    (tmp_path / "ljs_audio_text_val_filelist.txt").write_text("DUMMY/LJ001-0002.wav|text\n")
    (tmp_path / "ljs_audio_text_test_filelist.txt").write_text("DUMMY/LJ001-0003.wav|text\n")
    result = split_corpus(["LJ001-0001", "LJ001-0002", "LJ001-0003"], tmp_path)
    assert (result.train, result.val, result.test) == (("LJ001-0001",), ("LJ001-0002",), ("LJ001-0003",))


def test_id_lists_reject_repeats_with_line_numbers(tmp_path: Path):
    listing = tmp_path / "val.txt"
    listing.write_text("# header\nLJ001-0001\nwavs/LJ001-0001.wav|again\n")
    with pytest.raises(ValueError, match=r"line 3: id 'LJ001-0001' repeats line 2"):
        read_id_list(listing)


def test_unknown_split_and_rules_without_lists(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown split 'hifigan'"):
        load_split("hifigan")
    with pytest.raises(ValueError, match="rule over the corpus ids"):
        load_split("espnet")
    with pytest.raises(ValueError, match="no validation or test list"):
        load_split(tmp_path)


def test_duplicate_corpus_ids_are_refused():
    with pytest.raises(ValueError, match="more than once: LJ001-0001"):
        split_corpus(["LJ001-0001", "LJ001-0001"], "espnet")


def test_cli_choices_match_the_library():
    assert SPLIT_CHOICES == SPLITS
