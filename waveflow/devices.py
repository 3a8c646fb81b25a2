"""The one device parser: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` -> a checked :class:`torch.device`.

Used by the Python API (:class:`~waveflow.infer.vocoder.Vocoder`), the trainer (``train.device``)
and every command's ``--device``, so they accept the same names and fail with the same messages.
"""

from __future__ import annotations

import torch


def parse_device(device: torch.device | str, what: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device`; ``"auto"`` is CUDA when available, else the CPU.

    Raises ``ValueError`` naming ``what`` (e.g. ``train.device``) for a string that is not a device,
    a device type other than cpu/cuda, or CUDA asked for where it is not available.
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{what}={device!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what}={device!r} but CUDA is not available (use cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{what}={device!r}: only cpu and cuda are supported")
    return dev
