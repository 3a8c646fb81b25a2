"""``waveflow plot-log``: a PNG of a run's curves; one-line errors for a bad log or no matplotlib."""

from __future__ import annotations

import sys

import pytest

from tests.eval.test_plots import synthetic_log, write_log
from waveflow.cli import main

pytest.importorskip("matplotlib", reason="plot-log needs matplotlib (pip install 'waveflow[plot]')")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("waveflow plot-log: error:") and "Traceback" not in err[0], err
    return err[0]


def test_plot_log_writes_a_png_beside_the_log(tmp_path, capsys):
    from matplotlib.image import imread

    run = tmp_path / "run"
    run.mkdir()
    write_log(run / "train_log.jsonl", synthetic_log())
    assert main(["plot-log", str(run)]) == 0
    out = capsys.readouterr().out
    assert "10 training and 3 validation records" in out
    assert imread(run / "train_log.png").shape[2] in (3, 4)

    target = tmp_path / "figs" / "curves.png"  # -o, into a folder that does not exist yet
    assert main(["plot-log", str(run / "train_log.jsonl"), "-o", str(target), "--x", "cpu-minutes"]) == 0
    assert imread(target).ndim == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no training records"),
        ('{"event": "start", "step": 0}\n', "holds no training records"),
        (
            '{"event": "train", "step": 1, "loss": 1}\nnot json at all\n{"event": "train", "step": 2}\n',
            "line 2",
        ),
    ],
)
def test_bad_logs_are_one_line_errors(tmp_path, capsys, content, message):
    (tmp_path / "train_log.jsonl").write_text(content)
    assert main(["plot-log", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert message in line and "train_log.jsonl" in line
    assert not (tmp_path / "train_log.png").exists()


def test_missing_log_and_cpu_minutes_without_cpu_times(tmp_path, capsys):
    assert main(["plot-log", str(tmp_path)]) == 2
    assert "training log not found" in _one_error_line(capsys)
    write_log(tmp_path / "train_log.jsonl", [{"event": "train", "step": 1, "loss": 2.0}])
    assert main(["plot-log", str(tmp_path), "--x", "cpu-minutes"]) == 2
    assert "--x step" in _one_error_line(capsys)


def test_without_matplotlib_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    write_log(tmp_path / "train_log.jsonl", synthetic_log())
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot-log", str(tmp_path)]) == 2
    assert "pip install 'waveflow[plot]'" in _one_error_line(capsys)
    assert not (tmp_path / "train_log.png").exists()
