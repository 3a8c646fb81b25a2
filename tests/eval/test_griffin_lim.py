"""Griffin-Lim baseline: output length, reproducibility, and that it actually inverts the mel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import speech_like
from waveflow.audio.features import MelSpectrogram
from waveflow.eval import metrics
from waveflow.eval.griffin_lim import griffin_lim
from waveflow.presets import espnet_mel, hifigan_mel, tacotron2_mel


@pytest.mark.parametrize("preset", [tacotron2_mel, hifigan_mel, espnet_mel])
def test_griffin_lim_inverts_the_mel_of_its_convention(preset):
    cfg = preset()
    audio = speech_like(cfg.sample_rate, sample_rate=cfg.sample_rate)  # 1 s
    front_end = MelSpectrogram.from_config(cfg)
    mel = front_end(torch.from_numpy(audio)).numpy()  # (n_mels, frames)
    out = griffin_lim(mel, cfg, n_iter=32)
    assert out.dtype == np.float32 and out.shape == (mel.shape[1] * cfg.hop_length,)
    # Re-analysed, the reconstruction has nearly the same mel; a shifted copy does worse, so the
    # output is also aligned with the input.
    ref, est = metrics.align(audio.astype(np.float64), out.astype(np.float64))
    aligned = float(
        (front_end(torch.from_numpy(est).float()) - front_end(torch.from_numpy(ref).float())).abs().mean()
    )
    shifted = np.roll(est, cfg.hop_length // 2)
    misaligned = float(
        (front_end(torch.from_numpy(shifted).float()) - front_end(torch.from_numpy(ref).float())).abs().mean()
    )
    silence = float(
        (front_end(torch.zeros(ref.size)) - front_end(torch.from_numpy(ref).float())).abs().mean()
    )
    assert aligned < 0.3 * silence
    assert aligned < misaligned


def test_griffin_lim_is_reproducible_and_depends_on_the_random_state():
    cfg = tacotron2_mel()
    mel = MelSpectrogram.from_config(cfg)(torch.from_numpy(speech_like(8000))).numpy()
    a = griffin_lim(mel, cfg, n_iter=4, random_state=0)
    np.testing.assert_array_equal(a, griffin_lim(mel, cfg, n_iter=4, random_state=0))
    assert not np.array_equal(a, griffin_lim(mel, cfg, n_iter=4, random_state=1))


def test_griffin_lim_refuses_a_wrong_mel():
    cfg = tacotron2_mel()
    with pytest.raises(ValueError, match="n_mels=80"):
        griffin_lim(np.zeros((40, 10)), cfg)
    with pytest.raises(ValueError, match="NaN"):
        griffin_lim(np.full((80, 10), np.nan), cfg)


def test_long_mels_are_inverted_piece_by_piece():
    """Above ``max_frames`` each piece is inverted on its own and the pieces join end to end: the
    result equals the concatenation of the pieces' inversions (bounded memory on long recordings),
    and a mel within the limit is inverted whole."""
    cfg = tacotron2_mel()
    mel = MelSpectrogram.from_config(cfg)(torch.from_numpy(speech_like(16000))).numpy()  # 63 frames
    whole = griffin_lim(mel, cfg, n_iter=4, max_frames=None)
    np.testing.assert_array_equal(griffin_lim(mel, cfg, n_iter=4), whole)  # default limit: whole
    pieces = griffin_lim(mel, cfg, n_iter=4, max_frames=25)
    assert pieces.shape == whole.shape
    expected = np.concatenate(
        [griffin_lim(mel[:, a : a + 25], cfg, n_iter=4, max_frames=None) for a in (0, 25, 50)]
    )
    np.testing.assert_array_equal(pieces, expected)
    assert not np.array_equal(pieces, whole)
