r"""Chunked and streaming synthesis with exact context, and the latent stream they share.

Why context is needed
---------------------
One output group (``n_group`` samples) of the flow's inverse depends on the latent ``z`` and the
conditioning within ``H = context_groups(model)`` groups on either side: each coupling's WaveNet
sees ``context`` groups each way (non-causal dilated convolutions) and the steps compound
(``model.receptive_field = n_group * (2 * H + 1)`` samples). The mel reaches back further: the
upsampler smears frame ``f`` over samples ``[f * hop, f * hop + kernel)``, so sample ``n`` depends
on frames ``(n - kernel) // hop + 1 .. n // hop`` and on no later frame.

So audio for groups ``[a, b)`` can be computed from a *window* ``[a - L, b + R)`` of ``z`` and
conditioning: if ``L, R >= H`` (or the window edge is an edge of the whole sequence, where the
offline computation sees the same zero padding), the result equals the offline one up to float
rounding. The window's edges are wrong (the convolutions pad with zeros where the real sequence
continues), and that error creeps inwards by ``context`` groups per step, ``H`` in total.

Offline, :func:`synthesize_chunked` cuts a long mel into chunks and decodes each in such a window,
so memory is bounded by the chunk size, not the utterance length. :func:`decode_window` also shrinks
the window as the steps run (each step uses up its own context), which saves about half of the
context's compute.

Streaming (overlap-add)
-----------------------
:class:`StreamingSynthesizer` turns mel chunks into audio as they arrive. After step ``k`` the mel
received covers samples ``[0, A_k)``; audio up to ``P_k = A_k - R`` is final (``R``: the right
context, i.e. the look-ahead). The step decodes the window ``[E_k - L, A_k)``, where ``E_k = P_(k-1)``
is the end of what was already emitted, emits ``[E_k, P_k)`` and keeps the next ``O`` samples (the
overlap) as a provisional tail; the next step cross-fades that tail into its own, better-informed
estimate of the same samples::

    step k window:    [-- L --|======= final k =======|~~ O ~~|---- R - O ----]
                              E_k                     P_k                     A_k
    step k+1 window:                         [-- L --|~~ O ~~|==== final k+1 ====|~~ O ~~|-- R - O --]
                                                     P_k                         P_k+1               A_k+1
    output:           ........|======= step k ========|\/\/\/|==== step k+1 ====|
                                                      cross-fade: step k's tail weighted (1 - w),
                                                      step k+1's audio weighted w, w: 0 -> 1 over O

With ``L, R >= H`` both estimates of the overlap are exact and equal, so the cross-fade changes
nothing and the stream equals the offline synthesis (to ~1e-6). A smaller ``R`` cuts latency (the
stream lags the mel by ``R`` samples) at the price of approximate audio near each boundary, which
the cross-fade smooths; a smaller ``L`` saves compute the same way. The state between steps is a
:class:`StreamState`: the mel history still reachable by the next window, the latent groups still
needed, and the stream positions.

Latent stream
-------------
The noise is one latent sequence, drawn by :class:`LatentStream` in fixed blocks of
``LATENT_BLOCK_GROUPS`` groups (``(1, n_group, block)`` per ``torch.randn`` call), so any prefix of
the stream is the same however it is read. :class:`~waveflow.infer.vocoder.Vocoder` draws every
latent this way: the same seed gives the same noise offline, chunked and streamed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from waveflow.flows import squeeze
from waveflow.latent import LATENT_BLOCK_GROUPS, LatentStream  # noqa: F401 (imported from here too)
from waveflow.model import WaveGlow
from waveflow.nn.source import last_voiced_pitch, sine_excitation


def context_groups(model: WaveGlow | Engine) -> int:
    """``H``: groups each side of an output group whose latent/conditioning it depends on."""
    return model.context_groups


def context_samples(model: WaveGlow | Engine) -> int:
    """``H * n_group``: audio samples of context needed on each side for exact chunking."""
    return model.context_groups * model.n_group


class Engine(Protocol):
    """What chunked and streaming synthesis need from an inverse: the model itself
    (:class:`~waveflow.model.WaveGlow`) or a compilation of it (:class:`~waveflow.infer.fast.FastWaveGlow`).

    Both run the one inverse plan (:meth:`~waveflow.flows.EarlyOutputSchedule.inverse_plan`) over a
    window; the chunk loop (:func:`synthesize_chunked`) and the stream (:class:`StreamingSynthesizer`)
    are written once, against this.
    """

    n_group: int
    hop_length: int
    context_groups: int
    has_source: bool
    cond_lookahead: int

    def cond_frames(self, start: int, stop: int, num_frames: int) -> tuple[int, int]: ...

    def decode_window(
        self,
        mel: Tensor,
        z: Tensor,
        start: int,
        mel_offset: int = 0,
        keep: tuple[int, int] | None = None,
        num_frames: int | None = None,
        excitation: Tensor | None = None,
    ) -> Tensor: ...


# -- windowed decoding -------------------------------------------------------------------------------
def frames_for_samples(model: WaveGlow, start: int, stop: int, num_frames: int) -> tuple[int, int]:
    """Mel frames ``[f0, f1)`` that the conditioning of samples ``[start, stop)`` reads (the model's rule)."""
    return model.cond_frames(start, stop, num_frames)


def chunk_windows(
    num_frames: int,
    num_groups: int,
    chunk_groups: int,
    context: int,
    n_group: int,
    hop_length: int,
    frame_range: Callable[[int, int, int], tuple[int, int]],
    *,
    exact_length: bool = True,
) -> Iterator[tuple[int, int, int, int, int, int]]:
    """The windows of chunked offline synthesis: per chunk ``(a, b, w0, w1, f0, f1)``.

    Groups ``[a, b)`` (at most ``chunk_groups``) are kept from the window ``[w0, w1)``, which adds
    ``context`` groups each side (cut at the sequence ends); mel frames ``[f0, f1)`` are the ones
    that reach the window (``frame_range(start_sample, stop_sample, num_frames)``, the model's
    alignment rule). Raises ``ValueError`` when ``z`` and the mel disagree in length, unless
    ``exact_length`` is false (encoding: audio may end before the last frame's hop).
    """
    if chunk_groups < 1:
        raise ValueError(f"chunk_groups must be >= 1, got {chunk_groups}")
    if exact_length and num_groups * n_group != num_frames * hop_length:
        raise ValueError(
            f"z has {num_groups} groups but {num_frames} frames need {num_frames * hop_length // n_group}"
        )
    for a in range(0, num_groups, chunk_groups):
        b = min(num_groups, a + chunk_groups)
        w0, w1 = max(0, a - context), min(num_groups, b + context)
        f0, f1 = frame_range(w0 * n_group, w1 * n_group, num_frames)
        yield a, b, w0, w1, f0, f1


def decode_window(model: WaveGlow | Engine, *args: Any, **kwargs: Any) -> Tensor:
    """``model.decode_window(...)`` (:meth:`WaveGlow.decode_window <waveflow.model.WaveGlow.decode_window>`)."""
    return model.decode_window(*args, **kwargs)


def synthesize_chunked(engine: WaveGlow | Engine, mel: Tensor, z: Tensor, chunk_groups: int) -> Tensor:
    """Offline synthesis in windows of at most ``chunk_groups + 2 * H`` groups (bounded memory).

    ``engine``: the model or a compilation of it (:class:`Engine`). ``mel`` ``(B, n_mels, F)``,
    ``z`` ``(B, n_group, F * hop / n_group)`` -> audio ``(B, F * hop)``, equal to
    ``engine.decode_window(mel, z, 0)`` (the whole sequence) up to float rounding.
    """
    g = engine.n_group
    windows = list(
        chunk_windows(
            mel.shape[2],
            z.shape[2],
            chunk_groups,
            engine.context_groups,
            g,
            engine.hop_length,
            engine.cond_frames,
        )
    )
    # A source model's excitation accumulates its phase from the first sample: made once, sliced.
    exc = engine.excitation(mel, z.shape[2] * g) if engine.has_source else None
    if len(windows) == 1:
        return engine.decode_window(mel, z, 0, excitation=exc)
    audio = torch.empty(mel.shape[0], z.shape[2] * g, device=z.device, dtype=z.dtype)
    for a, b, w0, w1, f0, f1 in windows:
        audio[:, a * g : b * g] = engine.decode_window(
            mel[:, :, f0:f1],
            z[:, :, w0:w1],
            w0,
            f0,
            keep=(a, b),
            num_frames=mel.shape[2],
            excitation=None if exc is None else exc[:, w0 * g : w1 * g],
        )
    return audio


# -- windowed encoding (likelihood) -------------------------------------------------------------------
def encode_window(
    model: WaveGlow,
    mel: Tensor,
    audio: Tensor,
    start: int,
    mel_offset: int = 0,
    keep: tuple[int, int] | None = None,
    num_frames: int | None = None,
    excitation: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Forward flow over one window of groups ``[start, start + W)``: the latent and log-det of ``keep``.

    ``audio``: ``(B, W * n_group)``, the samples of the window; ``mel`` and ``num_frames`` as in
    :func:`decode_window` (``excitation`` too). Returns ``z`` of the absolute groups ``keep = [a, b)``, ``(B, n_group,
    b - a)``, and the log-determinant of those positions, ``(B,)`` (every step's log-det split over
    time by :meth:`~waveflow.flows.Flow.forward_per_position`, summed over ``keep``). With ``H``
    groups of context on each side of ``keep`` (or a sequence edge) both are exact.
    """
    g = model.n_group
    width = audio.shape[1] // g
    keep_lo, keep_hi = (0, width) if keep is None else (keep[0] - start, keep[1] - start)
    if not 0 <= keep_lo < keep_hi <= width:
        raise ValueError(f"keep {keep} is not inside the window [{start}, {start + width})")
    total_frames = mel_offset + mel.shape[2] if num_frames is None else num_frames
    cond = model.condition_window(mel, mel_offset, start, width, total_frames, excitation)
    z, logdet = model.flow.forward_per_position(squeeze(audio, g), cond)
    return z[:, :, keep_lo:keep_hi], logdet[:, keep_lo:keep_hi].sum(1)


def encode_chunked(model: WaveGlow, audio: Tensor, mel: Tensor, chunk_groups: int) -> tuple[Tensor, Tensor]:
    """``model.forward(audio, mel)`` in windows of at most ``chunk_groups + 2 * H`` groups.

    Memory is bounded by the chunk, not the recording; ``z`` and the log-det equal the unchunked
    values up to float rounding (the exact likelihood of a long recording, chunk by chunk).
    """
    model._check_mel(mel)
    model._check_audio(audio, mel)
    g = model.n_group
    num_groups = audio.shape[1] // g
    windows = list(
        chunk_windows(
            mel.shape[2],
            num_groups,
            chunk_groups,
            context_groups(model),
            g,
            model.hop_length,
            model.cond_frames,
            exact_length=False,
        )
    )
    if len(windows) == 1:
        return model.forward(audio, mel)
    exc = model.excitation(mel, audio.shape[1]) if model.has_source else None
    z = audio.new_empty(audio.shape[0], g, num_groups)
    logdet = None
    for a, b, w0, w1, f0, f1 in windows:
        z[:, :, a:b], part = encode_window(
            model,
            mel[:, :, f0:f1],
            audio[:, w0 * g : w1 * g],
            w0,
            f0,
            keep=(a, b),
            num_frames=mel.shape[2],
            excitation=None if exc is None else exc[:, w0 * g : w1 * g],
        )
        logdet = part if logdet is None else logdet + part
    return z, logdet


# -- streaming -----------------------------------------------------------------------------------------
@dataclass
class StreamState:
    """Everything a stream carries from one step to the next (positions are absolute).

    ``mel``: ``(1, n_mels, k)``, the received frames from ``mel_start`` on that a future window can
    still reach; ``frames_received``: frames received in total. ``z``: ``(1, n_group, m)``, the
    stream's latent groups ``[z_start, z_start + m)``, read in order from ``latent``.
    ``emitted``: groups of final audio handed out. ``tail``: ``(O * n_group,)`` provisional audio
    just after ``emitted``, to be cross-faded with the next step's estimate (``None`` before the
    first step or without overlap). ``finished``: :meth:`StreamingSynthesizer.flush` was called.
    A source model's excitation (:mod:`waveflow.nn.source`): ``exc`` ``(1, m)`` holds the final
    samples ``[exc_start, pitch_frames * hop)``; ``exc_cycles`` (float64 ``(1,)``) is the phase in
    cycles at sample ``pitch_frames * hop - 1`` and ``exc_fill`` the last voiced pitch before frame
    ``pitch_frames``, so the next span continues the whole sequence's excitation exactly.
    """

    latent: LatentStream
    mel: Tensor | None = None
    mel_start: int = 0
    frames_received: int = 0
    z: Tensor | None = None
    z_start: int = 0
    emitted: int = 0
    tail: Tensor | None = None
    finished: bool = False
    exc: Tensor | None = None
    exc_start: int = 0
    pitch_frames: int = 0
    exc_cycles: Tensor | None = None
    exc_fill: Tensor | None = None


class StreamingSynthesizer:
    """Mel chunks in, audio chunks out, with explicit :class:`StreamState` (see the module docstring).

    Args:
        model: the flow (eval mode), or a compilation of it (an :class:`Engine`, e.g.
            :class:`~waveflow.infer.fast.FastWaveGlow`): the stream runs whatever engine it is given.
        latent: where the noise comes from; its groups are consumed in order.
        left_context, right_context: context in samples each side of the emitted audio (rounded up
            to whole groups). ``None``: :func:`context_samples`, which makes the stream exact. The
            stream lags the mel by ``right_context`` samples.
        overlap: cross-fade length in samples (rounded up to whole groups), at most
            ``right_context``. ``None``: 0 when ``right_context`` is exact (nothing to smooth),
            otherwise ``min(hop_length, right_context)``.
    """

    def __init__(
        self,
        model: WaveGlow | Engine,
        latent: LatentStream,
        *,
        left_context: int | None = None,
        right_context: int | None = None,
        overlap: int | None = None,
    ):
        self.model = model
        g = model.n_group
        # Exact right context: the flow's, plus the frames the conditioning reads ahead -- for a
        # source model, at least the frames its pitch predictor reads ahead (plus the one that the
        # excitation interpolates towards), since the excitation there is still provisional.
        lookahead = -(-model.cond_lookahead // g)
        self.pitch_context = model.f0_predictor.context if model.has_source else 0
        if model.has_source:
            lookahead = max(lookahead, -(-(self.pitch_context + 1) * model.hop_length // g))
        exact = context_groups(model) + lookahead
        for name, value in (
            ("left_context", left_context),
            ("right_context", right_context),
            ("overlap", overlap),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative number of samples, got {value!r}")
        if latent.n_group != g:
            raise ValueError(f"the latent stream has n_group={latent.n_group}, the model {g}")
        self.left = exact if left_context is None else -(-left_context // g)
        self.right = exact if right_context is None else -(-right_context // g)
        if overlap is None:
            overlap_groups = 0 if self.right >= exact else min(-(-model.hop_length // g), self.right)
        else:
            overlap_groups = -(-overlap // g)
        if overlap_groups > self.right:
            raise ValueError(
                f"overlap ({overlap_groups * g} samples) cannot exceed the right context ({self.right * g} samples)"
            )
        self.overlap = overlap_groups
        self.state = StreamState(latent=latent)

    @property
    def latency_samples(self) -> int:
        """Samples the audio lags behind the received mel (the right context)."""
        return self.right * self.model.n_group

    def push(self, mel: Tensor) -> Tensor:
        """Add ``mel`` ``(1, n_mels, n)`` and return the audio that became final, ``(samples,)`` (maybe empty)."""
        st = self.state
        if st.finished:
            raise ValueError("the stream is finished; start a new one")
        st.mel = mel if st.mel is None else torch.cat([st.mel, mel], dim=2)  # (1, n_mels, k + n)
        st.frames_received += mel.shape[2]
        available = st.frames_received * self.model.hop_length // self.model.n_group
        boundary = available - self.right
        if boundary - st.emitted < max(1, self.overlap):
            return self._empty()
        return self._step(boundary, available)

    def flush(self) -> Tensor:
        """End of the mel: return the rest of the audio, ``(samples,)``."""
        st = self.state
        if st.finished:
            raise ValueError("the stream is already finished")
        st.finished = True
        available = st.frames_received * self.model.hop_length // self.model.n_group
        if available == st.emitted:
            return self._empty()
        return self._step(available, available)

    def _empty(self) -> Tensor:
        reference = self.state.mel
        return torch.empty(0, device=None if reference is None else reference.device)

    def _step(self, boundary: int, available: int) -> Tensor:
        st, model, g = self.state, self.model, self.model.n_group
        w0 = max(0, st.emitted - self.left)
        # The latent must cover [w0, available): read what is missing, forget what lies before w0.
        if st.z is None:
            st.z, st.z_start = st.latent.read(available), 0
        elif st.z_start + st.z.shape[2] < available:
            missing = available - st.z_start - st.z.shape[2]
            st.z = torch.cat([st.z, st.latent.read(missing)], dim=2)  # (1, g, m + missing)
        f0, f1 = frames_for_samples(model, w0 * g, available * g, st.frames_received)
        mel = st.mel[:, :, f0 - st.mel_start : f1 - st.mel_start]
        z = st.z[:, :, w0 - st.z_start : available - st.z_start].to(mel.device, mel.dtype)
        end_of_tail = boundary + self.overlap if not st.finished else boundary
        exc = self._excitation(w0 * g, available * g) if model.has_source else None
        # Audio of [emitted, end_of_tail): the final part, then the provisional tail.
        window = model.decode_window(
            mel,
            z,
            w0,
            f0,
            keep=(st.emitted, end_of_tail),
            num_frames=st.frames_received,
            excitation=exc,
        )[0]
        new = window[: (boundary - st.emitted) * g]
        if st.tail is not None:
            o = st.tail.shape[0]
            fade_in = torch.linspace(0.0, 1.0, o + 2, device=new.device, dtype=new.dtype)[1:-1]  # (o,)
            new = torch.cat([st.tail * (1 - fade_in) + new[:o] * fade_in, new[o:]])
        st.tail = window[(boundary - st.emitted) * g :] if end_of_tail > boundary else None
        st.emitted = boundary

        # Drop history no later window can reach (windows only move forward).
        next_w0 = max(0, st.emitted - self.left)
        keep_from = frames_for_samples(model, next_w0 * g, next_w0 * g + 1, st.frames_received)[0]
        if model.has_source:  # the pitch predictor re-reads frames from pitch_frames - its context
            keep_from = min(keep_from, max(0, st.pitch_frames - self.pitch_context))
            if st.exc is not None:  # never past the final samples, which the next span continues
                cut = min(next_w0 * g, st.pitch_frames * model.hop_length)
                st.exc, st.exc_start = st.exc[:, cut - st.exc_start :], cut
        st.mel, st.mel_start = st.mel[:, :, keep_from - st.mel_start :], keep_from
        st.z, st.z_start = st.z[:, :, next_w0 - st.z_start :], next_w0
        return new

    def _excitation(self, start: int, stop: int) -> Tensor:
        """A source model's excitation of samples ``[start, stop)`` (``stop`` = every received frame's hop).

        Samples before ``pitch_frames * hop`` are final (kept in the state); the rest is computed
        from the pitch predicted on the frames received so far, and what became final -- up to the
        frame before the last one whose prediction no future frame can change (every frame after
        :meth:`flush`) -- is kept, with the phase and pitch it ends on.
        """
        st, model = self.state, self.model
        hop = model.hop_length
        k, received = st.pitch_frames, st.frames_received
        lo = max(0, k - self.pitch_context)
        mel = st.mel[:, :, lo - st.mel_start :]  # frames [lo, received)
        freq, voiced = model.f0_predictor.predict(mel)
        freq, voiced = freq[:, k - lo :], voiced[:, k - lo :]  # frames [k, received)
        span, cycles = sine_excitation(
            freq, voiced, hop, (received - k) * hop, st.exc_cycles, fill=st.exc_fill, return_cycles=True
        )
        span = span.to(mel.dtype)
        final = received if st.finished else max(k, received - self.pitch_context - 1)
        if final > k:
            kept = (final - k) * hop
            st.exc_cycles = cycles[:, kept - 1]
            st.exc_fill = last_voiced_pitch(freq[:, : final - k], voiced[:, : final - k], st.exc_fill)
            st.exc = span[:, :kept] if st.exc is None else torch.cat([st.exc, span[:, :kept]], dim=1)
            st.pitch_frames = final
        done = st.exc if st.exc is not None else span[:, :0]
        whole = torch.cat([done, span[:, (st.pitch_frames - k) * hop :]], dim=1)  # [exc_start, stop)
        return whole[:, start - st.exc_start : stop - st.exc_start]
