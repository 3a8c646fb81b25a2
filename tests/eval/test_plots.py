"""Pictures (waveflow.eval.plots): one colour scale for all mels, a diverging difference centred on 0,
decodable PNGs, the training-log reader, and the error without matplotlib."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from waveflow.errors import InputError
from waveflow.eval import plots

matplotlib = pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install 'waveflow[plot]')")


def _mels(seed: int = 0, frames: int = 50) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.uniform(-8.0, 0.0, (20, frames))
    return {
        "reference": reference,
        "waveflow": reference + rng.normal(0.0, 1.5, reference.shape) + 1.0,  # goes beyond the reference
        "Griffin-Lim": reference[:, : frames - 2] - 3.0,  # shorter, and below the reference's range
    }


# -- the shared scale ------------------------------------------------------------------------------
def test_mel_color_range_spans_every_mel():
    a = np.array([[0.0, -2.0], [1.0, 3.0]])
    b = np.array([[-5.0, np.nan], [np.inf, 2.0]])  # non-finite values are ignored
    assert plots.mel_color_range([a, b]) == (-5.0, 3.0)
    assert plots.mel_color_range([a]) == (-2.0, 3.0)
    assert plots.mel_color_range([np.full((2, 3), 4.0)]) == (3.5, 4.5)  # constant: still vmin < vmax
    with pytest.raises(ValueError, match="no finite"):
        plots.mel_color_range([np.full((2, 2), np.nan)])


def test_difference_limit_is_the_largest_magnitude():
    assert plots.difference_limit(np.array([[-3.0, 1.0], [2.0, np.nan]])) == 3.0
    assert plots.difference_limit(np.array([0.5, -0.25])) == 0.5
    assert plots.difference_limit(np.zeros(4)) == 1.0  # identical mels: a valid scale all the same


def test_mel_panels_share_one_scale_and_the_difference_is_centred():
    mels = _mels()
    figure = plots.mel_comparison_figure(
        mels, difference=("waveflow", "reference"), sample_rate=16000, hop_length=128, title="utt"
    )
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert len(images) == 4  # three mels and the difference
    frames = 48  # all cut to the shortest
    expected = plots.mel_color_range([m[:, :frames] for m in mels.values()])
    assert expected[0] < mels["reference"].min() and expected[1] > mels["reference"].max()
    for image in images[:3]:
        assert image.get_clim() == pytest.approx(expected)
        assert image.get_cmap().name == plots.MEL_CMAP
        assert image.get_array().shape == (20, frames)
    difference = images[3]
    low, high = difference.get_clim()
    assert low == pytest.approx(-high) and high > 0
    assert difference.get_cmap().name == plots.DIFFERENCE_CMAP
    diff = mels["waveflow"][:, :frames] - mels["reference"][:, :frames]
    np.testing.assert_allclose(np.asarray(difference.get_array()), diff)
    assert high == pytest.approx(np.abs(diff).max())
    # The time axis is in seconds: frames * hop / sample rate.
    assert images[0].get_extent()[1] == pytest.approx(frames * 128 / 16000)


def test_without_difference_and_bad_inputs():
    mels = _mels()
    figure = plots.mel_comparison_figure(
        {"reference": mels["reference"]}, difference=None, sample_rate=16000, hop_length=128
    )
    assert sum(1 for ax in figure.axes if ax.images) == 1
    with pytest.raises(ValueError, match="not among the mels"):
        plots.mel_comparison_figure(mels, difference=("hifigan", "reference"), sample_rate=1, hop_length=1)
    with pytest.raises(ValueError, match="same n_mels"):
        plots.mel_comparison_figure(
            {"a": np.zeros((20, 5)), "b": np.zeros((10, 5))}, difference=None, sample_rate=1, hop_length=1
        )


def test_png_is_written_and_decodes(tmp_path):
    from matplotlib.image import imread

    figure = plots.mel_comparison_figure(
        _mels(), difference=("waveflow", "reference"), sample_rate=16000, hop_length=128
    )
    path = plots.save_png(figure, tmp_path / "utt.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05  # not a blank canvas
    assert [p.name for p in tmp_path.iterdir()] == ["utt.png"]  # no temporary file left


# -- training logs ----------------------------------------------------------------------------------
def write_log(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def synthetic_log(steps: int = 20, *, resumed: bool = True) -> list[dict]:
    records = [{"event": "start", "step": 0}, {"event": "val", "step": 0, "val_nll": 3.0}]
    for step in range(2, steps + 1, 2):
        records.append(
            {
                "event": "train",
                "step": step,
                "loss": 5.0 / step,
                "nll": 5.0 / step,
                "lr": 1e-3,
                "grad_norm": 10.0 / step,
                "aux_loss": None if step < 10 else 0.5,
                "cpu_s": 30.0 * step,
            }
        )
        if step % 10 == 0:
            records.append({"event": "val", "step": step, "val_nll": 6.0 / step})
    if resumed:  # a resume re-logged step 10: the later record counts
        records.append(
            {"event": "train", "step": 10, "loss": "nan", "nll": "nan", "lr": 1e-3, "cpu_s": 300.0}
        )
    return records


def test_read_train_log_keeps_the_last_record_of_each_step(tmp_path):
    write_log(tmp_path / "train_log.jsonl", synthetic_log())
    log = plots.read_train_log(tmp_path)  # the run folder
    assert [r["step"] for r in log.train] == list(range(2, 21, 2))
    steps, nll = log.series("train", "nll")
    assert math.isnan(nll[list(steps).index(10)])  # "nan" as logged, from the resumed record
    assert nll[0] == pytest.approx(2.5)
    assert log.series("val", "val_nll")[0].tolist() == [0.0, 10.0, 20.0]
    assert log.series("train", "aux_loss")[0].tolist() == [12.0, 14.0, 16.0, 18.0, 20.0]  # null: absent


def test_read_train_log_errors(tmp_path):
    path = tmp_path / "train_log.jsonl"
    with pytest.raises(FileNotFoundError, match="training log not found"):
        plots.read_train_log(tmp_path)
    path.write_text("")
    with pytest.raises(InputError, match="no training records"):
        plots.read_train_log(path)
    write_log(path, [{"event": "start", "step": 0}, {"event": "val", "step": 2, "val_nll": 1.0}])
    with pytest.raises(InputError, match="no training records"):
        plots.read_train_log(path)
    path.write_text('{"event": "train", "step": 1, "loss": 1}\n{not json\n{"event": "train", "step": 2}\n')
    with pytest.raises(InputError, match="line 2: not a JSON record"):
        plots.read_train_log(path)
    path.write_text('{"event": "train", "step": 1, "loss": 1}\n[1, 2]\n')
    with pytest.raises(InputError, match="line 2: expected a JSON object"):
        plots.read_train_log(path)
    path.write_text('{"event": "train", "step": "one", "loss": 1}\n')
    with pytest.raises(InputError, match="line 1: a 'train' record without an integer 'step'"):
        plots.read_train_log(path)
    # A last line cut off mid-record (a run still writing, or a crash) is skipped.
    path.write_text('{"event": "train", "step": 1, "loss": 1}\n{"event": "train", "st')
    assert [r["step"] for r in plots.read_train_log(path).train] == [1]


def test_training_curves_panels_and_axes(tmp_path):
    write_log(tmp_path / "train_log.jsonl", synthetic_log())
    log = plots.read_train_log(tmp_path)
    figure = plots.training_curves_figure(log)
    labels = [ax.get_ylabel() for ax in figure.axes]
    assert labels == ["NLL (nats/sample)", "auxiliary loss", "learning rate", "gradient norm"]
    nll_axes = figure.axes[0]
    assert [line.get_label() for line in nll_axes.get_lines()] == ["train", "validation"]
    train_line, val_line = nll_axes.get_lines()
    assert train_line.get_xdata().tolist() == list(range(2, 21, 2))
    assert val_line.get_xdata().tolist() == [0.0, 10.0, 20.0]
    assert figure.axes[-1].get_yscale() == "log" and figure.axes[-1].get_xlabel() == "step"

    by_cpu = plots.training_curves_figure(log, x="cpu-minutes")
    train_line, val_line = by_cpu.axes[0].get_lines()
    assert train_line.get_xdata() == pytest.approx([0.5 * s for s in range(2, 21, 2)])  # 30 s per step
    assert val_line.get_xdata() == pytest.approx([0.0, 5.0, 10.0])  # interpolated at the val steps
    assert by_cpu.axes[-1].get_xlabel() == "CPU-minutes"

    # Panels appear only for what was logged.
    write_log(tmp_path / "plain.jsonl", [{"event": "train", "step": s, "loss": 1.0 / s} for s in (1, 2)])
    plain = plots.training_curves_figure(plots.read_train_log(tmp_path / "plain.jsonl"))
    assert [ax.get_ylabel() for ax in plain.axes] == ["NLL (nats/sample)"]
    with pytest.raises(InputError, match="no CPU times"):
        plots.training_curves_figure(plots.read_train_log(tmp_path / "plain.jsonl"), x="cpu-minutes")


# -- without matplotlib ---------------------------------------------------------------------------------
def test_missing_matplotlib_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(
        InputError, match=r"matplotlib, which is not installed: pip install 'waveflow\[plot\]'"
    ):
        plots.require_matplotlib()
    with pytest.raises(InputError, match="waveflow\\[plot\\]"):
        plots.mel_comparison_figure(_mels(), difference=None, sample_rate=16000, hop_length=128)
