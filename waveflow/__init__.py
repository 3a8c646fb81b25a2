"""waveflow: a WaveGlow-style normalizing-flow vocoder.

``from waveflow import Vocoder`` is resolved lazily (module ``__getattr__``), so ``import waveflow``
stays light: it imports neither torch nor soundfile until the vocoder is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Vocoder", "__version__"]

if TYPE_CHECKING:
    from waveflow.infer.vocoder import Vocoder


def __getattr__(name: str) -> Any:
    if name == "Vocoder":
        from waveflow.infer.vocoder import Vocoder

        return Vocoder
    raise AttributeError(f"module 'waveflow' has no attribute {name!r}")
