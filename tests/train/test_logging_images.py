"""TensorBoard mel images: a generated mel and its target are drawn on one grey scale."""

from __future__ import annotations

import pytest
import torch

from waveflow.train.logging import RunLogger


class _FakeWriter:
    def __init__(self) -> None:
        self.images: dict[str, torch.Tensor] = {}

    def add_image(self, tag, image, step, dataformats):
        assert dataformats == "HW"
        self.images[tag] = image


def _logger(tmp_path) -> tuple[RunLogger, _FakeWriter]:
    logger = RunLogger(tmp_path, enabled=False, total_steps=1, start_step=0)
    writer = _FakeWriter()
    logger._tensorboard = writer  # what an enabled rank 0 holds, without writing event files
    return logger, writer


def test_target_and_generated_share_one_grey_scale(tmp_path):
    logger, writer = _logger(tmp_path)
    target = torch.linspace(-10.0, 0.0, 40).reshape(4, 10)  # (n_mels, frames)
    generated = torch.linspace(-5.0, 2.0, 40).reshape(4, 10)
    logger.mel_images({"generated_mel/a": generated, "target_mel/a": target}, step=3)
    low, high = -10.0, 2.0  # over both
    for tag, mel in (("generated_mel/a", generated), ("target_mel/a", target)):
        image = writer.images[tag]
        assert image.shape == (4, 10) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        # Row 0 is the highest mel bin; every value maps through the same (low, high).
        torch.testing.assert_close(image, (mel.flip(0) - low) / (high - low))
    # The target's top (0.0) is not white: the generated mel reaches higher (2.0).
    assert float(writer.images["target_mel/a"][0, -1]) == pytest.approx((0.0 - low) / (high - low))
    assert (
        float(writer.images["generated_mel/a"].max()) == 1.0
        and float(writer.images["target_mel/a"].min()) == 0.0
    )


def test_non_finite_and_constant_mels_still_give_valid_images(tmp_path):
    logger, writer = _logger(tmp_path)
    broken = torch.full((3, 5), float("nan"))
    broken[0, 0] = float("inf")
    logger.mel_images({"generated_mel/b": broken, "target_mel/b": torch.full((3, 5), -4.0)}, step=1)
    for image in writer.images.values():
        assert torch.isfinite(image).all() and float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_without_tensorboard_nothing_happens(tmp_path):
    logger = RunLogger(tmp_path, enabled=False, total_steps=1, start_step=0)
    logger.mel_images({"target_mel/a": torch.zeros(2, 2)}, step=0)  # no writer: a no-op
