"""Synthesis-time tools built on a trained model (denoiser, ...)."""
