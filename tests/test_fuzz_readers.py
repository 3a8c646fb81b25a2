"""Fuzzing the mel and audio readers with files an attacker or a broken disk could hand them.

Random bytes, real files truncated at many points or with flipped bytes, wrong dtypes, wrong
shapes, headers declaring absurd sizes or sample rates, and a FIFO. Whatever the file,
:func:`waveflow.cli._inputs.load_mel_file`, :func:`waveflow.audio.io.load_audio` and
:func:`waveflow.audio.io.audio_info` must either return what their contract promises or raise an
:class:`waveflow.errors.InputError` with a one-line message (the audio readers name the file; the
mel reader's callers add the path, as its docstring says), in bounded time and memory.

The readers run in a child process so that a hang fails the test (with the last case named)
instead of stopping the suite; the RNG is seeded, so a failure reproduces.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import REPO
from tests.helpers import torch_bytes
from waveflow.audio.io import audio_info, load_audio
from waveflow.cli._inputs import load_mel_file
from waveflow.errors import InputError

N_MELS = 40
FRAMES = 30
RATE = 8000
MEL_SUFFIXES = (".npy", ".npz", ".pt")
CHILD_TIMEOUT_S = 120.0  # a reader that blocks (a FIFO) or loops would never finish: reported, not awaited
MAX_RSS_MB = 550  # the interpreter with torch is ~250 MB; one header lying about its rate cost 400 MB more


# -- building files -----------------------------------------------------------------------------------
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _audio(fmt: str, subtype: str, samples: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    data = buffer.getvalue()
    peak = data.find(b"PEAK")  # float WAVs carry a PEAK chunk stamped with the time: zero the stamp
    return data if peak < 0 else data[: peak + 12] + bytes(4) + data[peak + 16 :]


def _npy_header(shape: tuple[int, ...], descr: str = "<f4", data: bytes = b"\0" * 64) -> bytes:
    """A version 1.0 ``.npy`` file with a hand-written header (any shape, however absurd)."""
    header = "{'descr': " + repr(descr) + ", 'fortran_order': False, 'shape': " + repr(shape) + ", }"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data


def _zip_member(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def _flac_with_total_samples(data: bytes, total: int) -> bytes:
    """Rewrite the 36-bit total-samples field of a FLAC file's STREAMINFO block."""
    assert data[:4] == b"fLaC"
    field = bytearray(data[21:26])  # 4 bits of byte 21 (after bits per sample), then 4 bytes
    field[0] = (field[0] & 0xF0) | ((total >> 32) & 0x0F)
    field[1:5] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    return data[:21] + bytes(field) + data[26:]


def speech(num_samples: int = 4000) -> np.ndarray:
    t = np.arange(num_samples) / RATE
    return (0.5 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)


def fuzz_cases(seed: int = 0) -> list[tuple[str, bytes]]:
    """``(file name, content)`` of every case; the suffix picks the readers."""
    rng = np.random.default_rng(seed)
    mel = rng.standard_normal((N_MELS, FRAMES)).astype(np.float32)
    audio = speech()
    real = {
        "mel.npy": _npy(mel),
        "mel.npz": _npz(mel=mel),
        "mel.pt": torch_bytes(torch.from_numpy(mel)),
        "pcm16.wav": _audio("WAV", "PCM_16", audio),
        "float.wav": _audio("WAV", "FLOAT", audio),
        "pcm16.flac": _audio("FLAC", "PCM_16", audio),
    }
    cases: list[tuple[str, bytes]] = list(real.items())
    for name, data in real.items():
        stem, suffix = name.split(".")
        # Every byte of the headers, then points spread over the whole file.
        cuts = set(range(0, min(96, len(data)), 3)) | set(
            np.linspace(0, len(data) - 1, 12).astype(int).tolist()
        )
        cases += [(f"cut{cut}_{stem}.{suffix}", data[:cut]) for cut in sorted(cuts)]
        for i in range(6):
            flipped = bytearray(data)
            for position in rng.integers(0, min(len(data), 256), size=4):  # mostly header bytes
                flipped[position] = int(rng.integers(256))
            cases.append((f"flip{i}_{stem}.{suffix}", bytes(flipped)))
    for suffix in (*MEL_SUFFIXES, ".wav", ".flac", ".ogg"):
        for i in range(4):
            cases.append((f"random{i}{suffix}", rng.bytes(int(rng.integers(1, 2000)))))

    # Wrong dtypes (numpy, and torch tensors of each kind).
    for dtype in ("complex64", "bool", "int8", "uint16", "int64", "float16", "float64", "<U3", "S3", "M8[s]"):
        array = np.zeros((N_MELS, FRAMES), dtype=dtype)
        tag = np.dtype(dtype).name
        cases += [(f"dtype_{tag}.npy", _npy(array)), (f"dtype_{tag}.npz", _npz(mel=array))]
    cases.append(("dtype_struct.npy", _npy(np.zeros((N_MELS, FRAMES), dtype=[("a", "<f4"), ("b", "<f4")]))))
    cases.append(("dtype_object.npy", _npy(np.array([{"a": 1}], dtype=object))))
    for dtype in (
        torch.complex64,
        torch.bool,
        torch.int8,
        torch.uint8,
        torch.int64,
        torch.float16,
        torch.bfloat16,
    ):
        cases.append((f"tensor_{str(dtype)[6:]}.pt", torch_bytes(torch.ones(N_MELS, FRAMES, dtype=dtype))))
    cases += [
        ("tensor_sparse.pt", torch_bytes(torch.ones(N_MELS, FRAMES).to_sparse())),
        ("tensor_strided.pt", torch_bytes(torch.ones(N_MELS, 2 * FRAMES)[:, ::2])),
        ("dict_list.pt", torch_bytes({"mel": [1.0, 2.0]})),
        ("dict_other.pt", torch_bytes({"x": torch.ones(2)})),
        ("string.pt", torch_bytes("mel")),
        ("two.npz", _npz(a=mel, b=mel)),
        ("none.npz", _zip_member("readme.txt", b"hello")),
    ]
    # Wrong shapes, zero sizes.
    for shape in [(), (N_MELS,), (1, N_MELS, FRAMES), (2, N_MELS, FRAMES), (1, 1, N_MELS, FRAMES), (0,), (0, FRAMES),
                  (N_MELS, 0), (1, N_MELS, 0), (N_MELS, FRAMES, 1)]:  # fmt: skip
        tag = "x".join(map(str, shape)) or "scalar"
        cases += [
            (f"shape_{tag}.npy", _npy(np.ones(shape, np.float32))),
            (f"shape_{tag}.pt", torch_bytes(torch.ones(shape))),
        ]
    cases.append(("nan.npy", _npy(np.full((N_MELS, FRAMES), np.nan, np.float32))))
    # Headers declaring far more data than the file holds, or shapes numpy cannot represent.
    for i, shape in enumerate(
        [(N_MELS, 10**9), (N_MELS, 10**12), (2**62, 2**62), (N_MELS, -1), (10**6,) * 8, (N_MELS,) * 40]
    ):
        cases += [
            (f"huge{i}.npy", _npy_header(shape)),
            (f"huge{i}.npz", _zip_member("mel.npy", _npy_header(shape))),
        ]
    cases += [
        ("header_too_long.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{" * 100),
        ("header_code.npy", _npy_header((N_MELS, FRAMES), descr="__import__('os')")),
    ]
    # Audio headers with absurd fields: sample rate, channels, data length, bits, FLAC total samples.
    wav = real["pcm16.wav"]
    for name, offset, value in [
        ("rate0", 24, struct.pack("<I", 0)),
        ("rate1", 24, struct.pack("<I", 1)),
        ("rate_max", 24, struct.pack("<I", 2**31 - 1)),
        ("channels0", 22, struct.pack("<H", 0)),
        ("channels1000", 22, struct.pack("<H", 1000)),
        ("datalen", 40, struct.pack("<I", 2**32 - 1)),
        ("bits3", 34, struct.pack("<H", 3)),
    ]:
        cases.append((f"header_{name}.wav", _patched(wav, offset, value)))
    flac = _flac_with_total_samples(real["pcm16.flac"], 2**36 - 1)
    cases += [("flac_total_max.flac", flac), ("flac_total_max_cut.flac", flac[:300])]
    names = [name for name, _ in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


# -- running the readers (in the child process) --------------------------------------------------------
def _readers(path: Path) -> list[tuple[str, Any]]:
    if path.suffix in MEL_SUFFIXES:
        return [
            ("load_mel_file", lambda: load_mel_file(path, N_MELS)),
            ("load_mel_file(time_first)", lambda: load_mel_file(path, FRAMES, time_first=True)),
        ]
    return [
        ("load_audio", lambda: load_audio(path)),
        ("load_audio(22050)", lambda: load_audio(path, 22050)),
        ("audio_info", lambda: audio_info(path)),
    ]


def _contract_broken(reader: str, result: Any) -> str | None:
    """Why a reader's return value breaks its documented contract (None if it keeps it)."""
    if reader.startswith("load_mel_file"):
        rows = FRAMES if "time_first" in reader else N_MELS
        ok = (
            isinstance(result, np.ndarray)
            and result.dtype == np.float32
            and result.ndim == 2
            and result.shape[0] == rows
            and result.shape[1] > 0
            and bool(np.isfinite(result).all())
        )
        return None if ok else f"returned {type(result).__name__} {getattr(result, 'shape', '')}"
    if reader == "audio_info":
        rate, frames = result
        return None if rate > 0 and frames > 0 else f"returned {result}"
    audio, rate = result
    ok = isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    ok = ok and rate > 0 and (reader == "load_audio" or rate == 22050)
    return None if ok else f"returned {audio.dtype} {audio.shape} at {rate} Hz"


def run_readers(folder: str) -> None:
    """Child process: every reader on every file in ``folder``, one JSON line per call."""
    warnings.simplefilter("ignore")  # warnings are not failures (stderr is not checked here)
    for path in sorted(Path(folder).iterdir()):
        for reader, call in _readers(path):
            print(json.dumps({"case": path.name, "reader": reader, "started": True}), flush=True)
            outcome: dict[str, Any] = {"case": path.name, "reader": reader}
            try:
                broken = _contract_broken(reader, call())
                outcome.update(kind="returned", broken=broken)
            except ValueError as exc:
                outcome.update(
                    kind="refused", type=type(exc).__name__, input_error=isinstance(exc, InputError)
                )
                outcome["message"] = str(exc)
            except BaseException as exc:  # noqa: BLE001 (the test reports whatever escaped)
                outcome.update(kind="escaped", type=type(exc).__name__, message=str(exc)[:300])
            print(json.dumps(outcome), flush=True)
    # VmHWM is this address space's own peak; ru_maxrss would start at the parent's peak at fork
    # time (pytest's, after whatever ran before) and survive exec.
    with open("/proc/self/status") as status:
        rss_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"max_rss_mb": rss_mb}), flush=True)


def _run_child(code: str, timeout: float) -> tuple[list[dict[str, Any]], str | None]:
    """Run ``code`` in a fresh interpreter; its JSON lines, and the last started case on a timeout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        started = [r for r in lines if r.get("started")]
        return lines, (f"{started[-1]['reader']} on {started[-1]['case']}" if started else "the start")
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], None


# -- the tests ---------------------------------------------------------------------------------------------
def test_readers_survive_the_fuzz_corpus(tmp_path):
    cases = fuzz_cases(seed=0)
    for name, data in cases:
        (tmp_path / name).write_bytes(data)
    os.mkfifo(tmp_path / "fifo.npy")  # opening a FIFO for reading blocks until a writer comes
    os.mkfifo(tmp_path / "fifo.wav")
    lines, hung = _run_child(
        f"from tests.test_fuzz_readers import run_readers; run_readers({str(tmp_path)!r})", CHILD_TIMEOUT_S
    )
    assert hung is None, f"the readers hung or crawled: still running {hung} after {CHILD_TIMEOUT_S} s"
    results = [r for r in lines if "kind" in r]
    assert len(results) >= 2 * (len(cases) + 2)

    escaped = [
        f"{r['reader']}({r['case']}): {r['type']}: {r['message']}" for r in results if r["kind"] == "escaped"
    ]
    assert not escaped, "\n".join(escaped)
    refused = [r for r in results if r["kind"] == "refused"]
    not_input_error = [f"{r['reader']}({r['case']}): {r['type']}" for r in refused if not r["input_error"]]
    assert not not_input_error, "\n".join(not_input_error)
    for r in refused:
        message = r["message"]
        assert message.strip() and "\n" not in message, (r["case"], r["reader"], message)
        if not r["reader"].startswith("load_mel_file"):
            assert r["case"] in message, (r["case"], r["reader"], message)  # names the file
    broken = [
        f"{r['reader']}({r['case']}): {r['broken']}"
        for r in results
        if r["kind"] == "returned" and r["broken"]
    ]
    assert not broken, "\n".join(broken)
    (memory,) = [r["max_rss_mb"] for r in lines if "max_rss_mb" in r]
    assert memory < MAX_RSS_MB, f"the child peaked at {memory:.0f} MB"
    # The real files are read, the fuzzed ones mostly refused: the corpus exercises both paths.
    returned = {r["case"] for r in results if r["kind"] == "returned"}
    assert {"mel.npy", "mel.npz", "mel.pt", "pcm16.wav", "float.wav", "pcm16.flac"} <= returned
    assert len(refused) > len(results) // 2


# -- regressions: one per bug the fuzzer found ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "what"),
    [(torch.complex64, "complex64"), (torch.bool, "bool"), (torch.complex128, "complex128")],
)
def test_complex_and_bool_tensors_are_refused_not_cast(tmp_path, dtype, what):
    # Before: the tensor was cast to float32, dropping the imaginary part (with a warning) or
    # turning True/False into 1/0, and accepted as a mel.
    path = tmp_path / "mel.pt"
    path.write_bytes(torch_bytes(torch.ones(N_MELS, FRAMES, dtype=dtype)))
    with pytest.raises(InputError, match=f"holds {what} data, expected floating-point mel values"):
        load_mel_file(path, N_MELS)


def test_sparse_nested_and_quantized_tensors_are_refused_by_what_they_are(tmp_path):
    # Before: "not a readable .pt file (TypeError: can't convert Sparse layout tensor to numpy ...)".
    with warnings.catch_warnings():  # quantized and nested tensors are deprecated / prototype
        warnings.simplefilter("ignore")
        tensors = {
            "sparse": torch.ones(N_MELS, FRAMES).to_sparse(),
            "nested": torch.nested.nested_tensor([torch.ones(N_MELS, 3), torch.ones(N_MELS, 4)]),
            "quantized": torch.quantize_per_tensor(torch.ones(N_MELS, FRAMES), 0.1, 0, torch.qint8),
        }
    for what, tensor in tensors.items():
        path = tmp_path / f"{what}.pt"
        path.write_bytes(torch_bytes(tensor))
        with pytest.raises(InputError, match=f"holds a {what} tensor"):
            load_mel_file(path, N_MELS)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_npy_header_declaring_more_data_than_the_file_holds(tmp_path, suffix):
    # Before: numpy tried to allocate the declared 149 GiB first ("not a readable .npy file
    # (MemoryError: Unable to allocate 149. GiB ...)"), which succeeds on a machine with enough
    # virtual memory; the size is now checked against the file before anything is allocated.
    data = _npy_header((N_MELS, 10**9))
    path = tmp_path / f"mel{suffix}"
    path.write_bytes(data if suffix == ".npy" else _zip_member("mel.npy", data))
    with pytest.raises(
        InputError, match=r"declares shape \(40, 1000000000\) of float32 \(160000000000 bytes\)"
    ) as info:
        load_mel_file(path, N_MELS)
    assert "64 bytes" in str(info.value) and "MemoryError" not in str(info.value)


def test_flac_declaring_a_huge_length_is_refused_without_allocating_it(tmp_path):
    # Before: soundfile allocated the declared 2**36 frames (256 GiB) up front: MemoryError (exit
    # "out of memory" for a 3 KB file). Now the file is decoded in bounded blocks and libsndfile's
    # complaint about the missing frames is a one-line refusal naming the file.
    flac = _flac_with_total_samples(_audio("FLAC", "PCM_16", speech()), 2**36 - 1)
    tracemalloc.start()  # numpy's buffers are traced: what the readers allocated, not pytest's peak
    try:
        for name, data in [("lies.flac", flac), ("lies_cut.flac", flac[:300])]:
            (tmp_path / name).write_bytes(data)
            for call in (load_audio, lambda p: load_audio(p, 22050)):
                with pytest.raises(InputError, match=rf"{name} is not a readable audio file"):
                    call(tmp_path / name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024**2  # far below the 256 GiB the header declares


@pytest.mark.parametrize("file_rate", [1, 10, 2**31 - 1])
def test_resampling_from_an_absurd_rate_is_refused(tmp_path, file_rate):
    # Before: a header claiming 1 Hz turned 4000 samples into 88 million (400 MB, a second; a
    # long file would exhaust memory); one claiming 2**31 - 1 Hz returned an empty array.
    path = tmp_path / "odd.wav"
    path.write_bytes(_patched(_audio("WAV", "PCM_16", speech()), 24, struct.pack("<I", file_rate)))
    with pytest.raises(InputError, match=rf"odd.wav has sample rate {file_rate} Hz; resampling to 22050 Hz"):
        load_audio(path, 22050)
    assert load_audio(path)[1] == file_rate  # without resampling the file is read as it is


def test_resampling_that_leaves_no_samples_is_refused(tmp_path):
    path = tmp_path / "short.wav"
    path.write_bytes(_audio("WAV", "PCM_16", speech(2), rate=96000))
    with pytest.raises(InputError, match="short.wav: 2 sample"):
        load_audio(path, 8000)


def test_fifo_and_devices_are_refused_without_blocking(tmp_path):
    # Before: load_audio and load_mel_file opened a FIFO and waited forever for a writer.
    for name in ("pipe.wav", "pipe.npy"):
        os.mkfifo(tmp_path / name)
    code = (
        "from pathlib import Path\n"
        "from waveflow.audio.io import load_audio, audio_info\n"
        "from waveflow.cli._inputs import load_mel_file\n"
        "from waveflow.errors import InputError\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "for call in (lambda: load_audio(folder / 'pipe.wav'), lambda: audio_info(folder / 'pipe.wav'),\n"
        "             lambda: load_mel_file(folder / 'pipe.npy', 40), lambda: load_audio('/dev/zero')):\n"
        "    try:\n"
        "        call()\n"
        "    except InputError as exc:\n"
        "        print(exc)\n"
    )
    lines, hung = _run_child(
        code.replace("print(exc)", "import json; print(json.dumps({'message': str(exc)}))"), 60
    )
    assert hung is None, "a reader blocked on a FIFO"
    messages = [r["message"] for r in lines]
    assert len(messages) == 4 and all("not a regular file" in m for m in messages), messages


def test_the_corpus_is_deterministic_and_sized_for_a_quick_run():
    a, b = fuzz_cases(seed=0), fuzz_cases(seed=0)
    assert a == b
    assert 250 <= len(a) <= 600
    assert {name.rsplit(".", 1)[1] for name, _ in a} == {"npy", "npz", "pt", "wav", "flac", "ogg"}
