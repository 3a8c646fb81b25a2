"""Objective evaluation: metrics between reference and vocoded audio, and a Griffin-Lim baseline.

Import the submodules directly: :mod:`waveflow.eval.metrics` (PESQ, STOI, multi-resolution STFT
distance, mel L1, F0/voicing via :mod:`waveflow.eval.f0`), :mod:`waveflow.eval.griffin_lim` and
:mod:`waveflow.eval.run` (scoring vocoded files against their references, ``waveflow evaluate``).
"""
