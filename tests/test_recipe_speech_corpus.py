"""The default model's recipe (recipes/speech_corpus): configs, arguments, every stage on a tiny
manifest corpus with a licence to leave out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from tests.helpers import run_recipe, speech_like
from waveflow import presets
from waveflow.config import ExperimentConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "speech_corpus"
RUN = RECIPE / "run.sh"


def _run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_recipe(RUN, args, cwd, timeout, THREADS="1")


def test_candidate_configs_share_the_compact_model_and_the_mel():
    for path in sorted((RECIPE / "configs").glob("*.yaml")):
        config = ExperimentConfig.from_dict(yaml.safe_load(path.read_text()))
        assert config.mel == presets.tacotron2_mel(), path.name
        if path.stem in ("default", "finetune"):  # the shipped model: compact with a pitch source
            assert config.model == presets.compact_source(), path.name
        elif path.stem == "source":  # the source mixed into the encoding only (a measured candidate)
            assert config.model == presets.compact().replace(source="sine"), path.name
        elif path.stem != "debug":
            assert config.model == presets.compact(), path.name


def test_usage_and_argument_errors(tmp_path: Path):
    assert _run(["--help"], tmp_path).returncode == 0
    bad = _run(["--no-such-option"], tmp_path)
    assert bad.returncode == 2 and "unknown option --no-such-option" in bad.stderr
    missing = _run([], tmp_path)
    assert missing.returncode == 2 and "--corpus DIR is required" in missing.stderr
    empty = _run(["--corpus", str(tmp_path / "none"), "--stop-stage", "0"], tmp_path)
    assert empty.returncode == 2 and "holds no corpus" in empty.stderr


def _manifest_corpus(root: Path) -> Path:
    """3 training clips (one GPL-2, to be left out) and 2 evaluation clips at 22.05 kHz."""
    rows = {
        "train": [("a", "CC0"), ("b", "GPL-2 (game)"), ("c", "BSD-like")],
        "eval": [("d", "GPL-2"), ("e", "CC0")],
    }
    for split, clips in rows.items():
        (root / split / "wavs").mkdir(parents=True)
        lines = []
        for i, (name, licence) in enumerate(clips):
            wav = root / split / "wavs" / f"{name}.wav"
            sf.write(wav, speech_like(22050, 22050, seed=i), 22050, subtype="PCM_16")
            lines.append(
                json.dumps(
                    {
                        "id": name,
                        "path": f"wavs/{name}.wav",
                        "licence": licence,
                        "source": "s",
                        "seconds": 1.0,
                    }
                )
            )
        (root / split / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_every_stage_on_a_tiny_corpus(tmp_path: Path):
    corpus = _manifest_corpus(tmp_path / "corpus")
    exp = tmp_path / "exp"
    config = RECIPE / "configs" / "debug.yaml"
    result = _run(
        ["--corpus", str(corpus), "--config", str(config), "--exp", str(exp)], tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train_list = (exp / "data" / "train.txt").read_text().split()
    assert sorted(Path(p).name for p in train_list) == ["a.wav", "c.wav"]  # the GPL-2 clip is left out
    assert len((exp / "data" / "eval.txt").read_text().split()) == 2
    licences = json.loads((exp / "data" / "licences.json").read_text())
    assert licences["train"]["s | GPL-2 (game)"] == {"clips": 1, "minutes": 0.017, "kept": False}
    summary = json.loads((exp / "eval" / "summary.json").read_text())
    assert "waveflow" in json.dumps(summary) and (exp / "wav" / "eval" / "e.wav").is_file()
    from waveflow.checkpoint import load_checkpoint

    packaged = load_checkpoint(exp / "model.pt")
    assert packaged.training_state is None and packaged.weight_norm_folded
    assert packaged.metadata["weight_average"] is True and packaged.metadata["training_step"] == 4


@pytest.mark.slow
def test_stage_5_fine_tunes_the_shipped_model_on_given_file_lists(tmp_path: Path):
    # No corpus needed: the file lists stage 1 would write, made by hand.
    data = tmp_path / "exp" / "data"
    (data / "wavs").mkdir(parents=True)
    for split, seeds in {"train": [0, 1], "eval": [2]}.items():
        for seed in seeds:
            sf.write(
                data / "wavs" / f"{seed}.wav", speech_like(8192, 22050, seed=seed), 22050, subtype="PCM_16"
            )
        (data / f"{split}.txt").write_text("".join(f"wavs/{seed}.wav\n" for seed in seeds))
    quick = [
        "train.max_steps=2",
        "train.batch_size=2",
        "data.segment_length=4096",
        "train.validate_every=2",
        "train.checkpoint_every=2",
        "train.aux_stft_weight=0",
        "train.aux_mel_weight=0",
    ]
    result = _run(["--stage", "5", "--exp", str(tmp_path / "exp"), *quick], tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stage 5: fine-tune default" in result.stdout and "stage 4" not in result.stdout
    from waveflow import pretrained
    from waveflow.checkpoint import load_checkpoint

    run = load_checkpoint(tmp_path / "exp" / "finetune" / "checkpoints" / "last.pt")
    assert run.metadata["init_from"]["sha256"] == pretrained.get("default").sha256
    assert run.training_state["trainer"]["step"] == 2
    packaged = load_checkpoint(tmp_path / "exp" / "finetuned.pt")
    assert packaged.weight_norm_folded and packaged.metadata["init_from"] == run.metadata["init_from"]
    assert packaged.config.model == presets.compact_source()
