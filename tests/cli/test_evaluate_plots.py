"""``waveflow evaluate --plots`` (a PNG per utterance, mels on one colour scale) and evaluate's
one-line errors when matplotlib or librosa is missing."""

from __future__ import annotations

import json
import sys

import pytest

from tests.cli.conftest import write_speech_wav
from waveflow import cli
from waveflow.eval import plots

matplotlib = pytest.importorskip(
    "matplotlib", reason="--plots needs matplotlib (pip install 'waveflow[plot]')"
)


@pytest.fixture
def refs(tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    for i, n in enumerate((8000, 9600)):
        write_speech_wav(folder / f"utt{i}.wav", n, seed=i)
    return folder


def _argv(checkpoint, refs, tmp_path, *extra: str) -> list[str]:
    return [
        "evaluate",
        str(checkpoint),
        str(refs),
        "--generated-dir",
        str(tmp_path / "gen"),
        "-o",
        str(tmp_path / "eval"),
        "--griffin-lim-iters",
        "2",
        *extra,
    ]


def test_plots_one_png_per_utterance_on_one_scale(checkpoint, refs, tmp_path, capsys, monkeypatch):
    from matplotlib.image import imread

    figures = []
    real = plots.mel_comparison_figure

    def spy(mels, **kwargs):
        figure = real(mels, **kwargs)
        figures.append((list(mels), kwargs, figure))
        return figure

    monkeypatch.setattr(plots, "mel_comparison_figure", spy)
    argv = _argv(checkpoint, refs, tmp_path, "--synthesize", "--seed", "1", "--plots")
    assert cli.main(argv) == 0
    capsys.readouterr()
    plot_dir = tmp_path / "eval" / "plots"
    assert sorted(p.name for p in plot_dir.iterdir()) == ["utt0.png", "utt1.png"]  # one per utterance
    for png in plot_dir.iterdir():
        assert imread(png).ndim == 3
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["plots_dir"] == str(plot_dir)

    assert len(figures) == 2
    for labels, kwargs, figure in figures:
        assert labels == ["reference", "waveflow", "Griffin-Lim"]
        assert kwargs["difference"] == ("waveflow", "reference")
        images = [ax.images[0] for ax in figure.axes if ax.images]
        assert len(images) == 4
        scales = {image.get_clim() for image in images[:3]}
        assert len(scales) == 1  # reference, waveflow and Griffin-Lim: one colour scale
        low, high = images[3].get_clim()
        assert low == -high and images[3].get_cmap().name == plots.DIFFERENCE_CMAP

    # Without Griffin-Lim: reference, waveflow and the difference.
    figures.clear()
    argv = _argv(checkpoint, refs, tmp_path, "--plots", "--no-griffin-lim")
    argv[argv.index(str(tmp_path / "eval"))] = str(tmp_path / "eval2")
    assert cli.main(argv) == 0
    assert [labels for labels, _, _ in figures] == [["reference", "waveflow"]] * 2
    assert len(list((tmp_path / "eval2" / "plots").iterdir())) == 2


def test_no_plots_folder_without_the_option(checkpoint, refs, tmp_path):
    assert cli.main(_argv(checkpoint, refs, tmp_path, "--synthesize", "--no-griffin-lim")) == 0
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["metrics.csv", "summary.json"]
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["plots_dir"] is None


@pytest.mark.parametrize(
    ("module", "hint"), [("matplotlib", "waveflow[plot]"), ("librosa", "waveflow[eval]")]
)
def test_a_missing_optional_package_is_one_line_before_any_work(
    checkpoint, refs, tmp_path, capsys, monkeypatch, module, hint
):
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` raises ImportError
    assert cli.main(_argv(checkpoint, refs, tmp_path, "--synthesize", "--plots")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("waveflow evaluate: error:") and hint in err[0], err
    assert not (tmp_path / "eval").exists() and not (tmp_path / "gen").exists()
