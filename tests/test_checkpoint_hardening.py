"""Bad checkpoints get one clear ``CheckpointError`` each, cheaply (issue 14).

Every file here is built in ``tmp_path`` from a tiny model: checkpoints whose tensors disagree
with their config (waveflow and NVIDIA layouts, missing or extra biases), non-finite weights,
"bombs" (a small file that declares or decompresses to a huge tensor), crafted pickles that ask
for ``os.system``, truncated files, and a training checkpoint's step in ``inspect``.

The bombs are loaded in a child process with an address-space limit, so that a regression fails
the test instead of exhausting the machine; the child reports its peak RSS growth.
"""

from __future__ import annotations

import functools
import io
import json
import lzma
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import perturbed_model, torch_bytes
from waveflow import cli, errors, presets, safe_load
from waveflow.checkpoint import FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint
from waveflow.cli.inspect_cmd import describe
from waveflow.config import VocoderConfig
from waveflow.errors import CheckpointError
from waveflow.interop import nvidia
from waveflow.model import WaveGlow

N_MELS = 8
MEL = presets.hifigan_mel().replace(n_mels=N_MELS)


@pytest.fixture
def model() -> WaveGlow:
    return perturbed_model(presets.waveglow_tiny().replace(n_mels=N_MELS), seed=3, std=0.02)


def _payload(model: WaveGlow, state_dict=None, **changes):
    raw = {
        "format": "waveflow",
        "format_version": FORMAT_VERSION,
        "waveflow_version": "0.1.0",
        "config": VocoderConfig(model=model.config, mel=MEL).to_dict(),
        "state_dict": dict(model.state_dict()) if state_dict is None else state_dict,
        "weight_norm_folded": False,
        "training_state": None,
        "metadata": {},
    }
    raw.update(changes)
    return raw


def _save(obj, path: Path, **kwargs) -> Path:
    torch.save(obj, path, **kwargs)
    return path


def _dle(model: WaveGlow, state_dict) -> dict:
    cfg = model.config
    return {
        "epoch": 3,
        "config": {
            "n_mel_channels": cfg.n_mels,
            "n_flows": cfg.n_flows,
            "n_group": cfg.n_group,
            "n_early_every": cfg.n_early_every,
            "n_early_size": cfg.n_early_size,
            "WN_config": {
                "n_layers": cfg.wavenet.n_layers,
                "n_channels": cfg.wavenet.n_channels,
                "kernel_size": 3,
            },
        },
        "state_dict": state_dict,
    }


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err.strip()


def _assert_checkpoint_exit(code: int, err: str, *words: str) -> None:
    """One line, naming the cause, with the bad-checkpoint exit code (3)."""
    assert err.count("\n") == 0 and err, err
    assert "Traceback" not in err and "weights_only" not in err, err
    assert code == errors.EXIT_CHECKPOINT, (code, err)
    for word in words:
        assert word in err, (word, err)


# -- 1. every failure is a CheckpointError -----------------------------------------------------------
def test_unsafe_checkpoint_error_is_a_checkpoint_error():
    assert issubclass(safe_load.UnsafeCheckpointError, CheckpointError)
    assert issubclass(safe_load.UnsafeCheckpointError, ValueError)
    assert errors.exit_code_for(safe_load.UnsafeCheckpointError("x")) == errors.EXIT_CHECKPOINT


@pytest.mark.parametrize(
    "content, words",
    [
        (b"these are not weights", "not a PyTorch checkpoint file"),
        (b"PK\x03\x04" + b"\0" * 40, "corrupt or truncated"),
        (lzma.compress(b"PK\x03\x04 some bytes")[:-9], "xz"),
    ],
    ids=["text", "broken-zip", "truncated-xz"],
)
def test_unreadable_files_raise_checkpoint_error(tmp_path, content, words):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    for load in (load_checkpoint, load_model, nvidia.import_nvidia):
        with pytest.raises(CheckpointError, match=words):
            load(path)


# -- 2. tensors that disagree with the config ---------------------------------------------------------
WAVEFLOW_MISMATCHES = {
    "shape": (
        lambda sd: sd.update({"upsample.conv.weight": torch.zeros(N_MELS, N_MELS, 512)}),
        ["upsample.conv.weight", "(8, 8, 512)", "(8, 8, 1024)"],
    ),
    "missing-bias": (
        lambda sd: sd.pop("flow.steps.1.coupling.conditioner.end.bias"),
        ["flow.steps.1.coupling.conditioner.end.bias", "missing"],
    ),
    "extra-bias": (
        lambda sd: sd.update({"flow.steps.0.mix.bias": torch.zeros(4)}),
        ["flow.steps.0.mix.bias", "unexpected"],
    ),
}


@pytest.mark.parametrize("case", WAVEFLOW_MISMATCHES)
def test_waveflow_weights_that_disagree_with_the_config(tmp_path, model, capsys, case):
    mutate, words = WAVEFLOW_MISMATCHES[case]
    state = dict(model.state_dict())
    mutate(state)
    path = _save(_payload(model, state), tmp_path / "bad.pt")
    _assert_refused_everywhere(path, (load_checkpoint, load_model), words, tmp_path, capsys)


def _assert_refused_everywhere(path, loaders, words, tmp_path, capsys) -> None:
    """Each loader raises a one-line CheckpointError naming the file and ``words``; inspect and
    convert exit 3 naming ``words[0]``, and convert writes nothing."""
    for load in loaders:
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message
        for word in words:
            assert word in message, (word, message)
    _assert_checkpoint_exit(*_cli(["inspect", str(path)], capsys), words[0])
    out = tmp_path / "out.pt"
    _assert_checkpoint_exit(*_cli(["convert", str(path), str(out)], capsys), words[0])
    assert not out.exists()


def _nv_shape(sd, key, shape):
    sd[key] = torch.zeros(shape)


NVIDIA_MISMATCHES = {
    "upsample-bias": (
        lambda sd: _nv_shape(sd, "upsample.bias", (N_MELS + 1,)),
        ["upsample.bias", "(9,)", "(8,)"],
    ),
    "kernel": (
        lambda sd: _nv_shape(sd, "WN.2.in_layers.1.weight_v", (32, 16, 5)),
        ["WN.2.in_layers.1.weight_v", "(32, 16, 5)", "(32, 16, 3)"],
    ),
    "missing-bias": (lambda sd: sd.pop("WN.1.start.bias"), ["WN.1.start.bias", "missing"]),
    "extra-bias": (lambda sd: _nv_shape(sd, "convinv.0.conv.bias", (4,)), ["convinv.0.conv.bias"]),
}


@pytest.mark.parametrize("layout", ["dle", "state-dict"])
@pytest.mark.parametrize("case", NVIDIA_MISMATCHES)
def test_nvidia_weights_that_disagree_with_the_config(tmp_path, model, capsys, case, layout):
    mutate, words = NVIDIA_MISMATCHES[case]
    sd = dict(nvidia.to_nvidia_state_dict(model, "original"))
    mutate(sd)
    path = _save(_dle(model, sd) if layout == "dle" else sd, tmp_path / "nv.pt")
    _assert_refused_everywhere(path, (nvidia.import_nvidia, load_model), words, tmp_path, capsys)


# -- 4. non-finite weights ----------------------------------------------------------------------------
def _poison(sd, nan_key, inf_key):
    sd[nan_key] = sd[nan_key].clone().contiguous()
    sd[nan_key].view(-1)[0] = float("nan")
    sd[inf_key] = sd[inf_key].clone().contiguous()
    sd[inf_key].view(-1)[-1] = float("-inf")


def test_nan_waveflow_checkpoint_is_refused_everywhere(tmp_path, model, capsys):
    from waveflow.infer.vocoder import Vocoder

    state = dict(model.state_dict())
    _poison(state, "upsample.conv.bias", "flow.steps.2.mix.weight")
    path = _save(_payload(model, state), tmp_path / "nan.pt")
    for load in (load_checkpoint, load_model, Vocoder.from_checkpoint):
        with pytest.raises(
            CheckpointError, match=r"non-finite.*upsample\.conv\.bias.*flow\.steps\.2\.mix\.weight"
        ):
            load(path)
    _assert_checkpoint_exit(*_cli(["inspect", str(path)], capsys), "non-finite", "upsample.conv.bias")
    out = tmp_path / "out.pt"
    _assert_checkpoint_exit(*_cli(["convert", str(path), str(out)], capsys), "non-finite")
    assert not out.exists()


@pytest.mark.parametrize("layout", ["dle", "state-dict"])
def test_nan_nvidia_checkpoint_is_refused(tmp_path, model, capsys, layout):
    sd = dict(nvidia.to_nvidia_state_dict(model, "dle" if layout == "dle" else "original"))
    _poison(sd, "WN.0.start.weight_v", "convinv.3.conv.weight")
    path = _save(_dle(model, sd) if layout == "dle" else sd, tmp_path / "nan.pt")
    for load in (nvidia.import_nvidia, functools.partial(load_model, mel_config=MEL)):
        with pytest.raises(
            CheckpointError, match=r"non-finite.*WN\.0\.start\.weight_v.*convinv\.3\.conv\.weight"
        ):
            load(path)
    _assert_checkpoint_exit(*_cli(["inspect", str(path)], capsys), "non-finite", "WN.0.start.weight_v")
    out = tmp_path / "out.pt"
    _assert_checkpoint_exit(*_cli(["convert", str(path), str(out)], capsys), "non-finite")
    assert not out.exists()


def test_score_refuses_a_nan_model_and_writes_nothing(tmp_path, capsys):
    from tests.cli.conftest import MEL as CLI_MEL
    from tests.cli.conftest import tiny_model, write_speech_wav

    m = tiny_model()
    with torch.no_grad():
        next(m.parameters()).view(-1)[0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", m, CLI_MEL)
    write_speech_wav(tmp_path / "a.wav", 2000)
    out = tmp_path / "s.json"
    code, err = _cli(["score", str(path), str(tmp_path / "a.wav"), "--json", str(out)], capsys)
    _assert_checkpoint_exit(code, err, "non-finite")
    assert not out.exists()


def test_weight_norm_that_folds_to_nan_is_refused(tmp_path, model, capsys):
    """g * v / |v| is NaN for an all-zero row of v: finite in the file, NaN once folded for inference."""
    from waveflow.infer.vocoder import Vocoder

    state = dict(model.state_dict())
    key = "flow.steps.0.coupling.conditioner.start.parametrizations.weight.original1"
    state[key] = state[key].clone()
    state[key][0].zero_()
    path = _save(_payload(model, state), tmp_path / "zero-v.pt")
    for load in (functools.partial(load_model, fold_weight_norm=True), Vocoder.from_checkpoint):
        with pytest.raises(
            CheckpointError, match=r"weight norm folded.*non-finite.*conditioner\.start\.weight"
        ):
            load(path)
    out = tmp_path / "out.pt"
    code, err = _cli(["convert", str(path), str(out), "--fold-weight-norm"], capsys)
    _assert_checkpoint_exit(code, err, "non-finite", "start.weight")
    assert not out.exists()


# -- 5. crafted pickles and corrupt files: say what the file is --------------------------------------
class _RunsShell:
    """Unpickling this would run a shell command (``os.system``) that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


CRAFTED = {
    "zip": lambda evil: torch_bytes({"format": "waveflow", "state_dict": {"w": evil}}),
    "zip-protocol-4": lambda evil: torch_bytes({"model": evil}, pickle_protocol=4),
    "legacy": lambda evil: torch_bytes({"model": evil}, _use_new_zipfile_serialization=False),
    "top-level": lambda evil: torch_bytes(evil),
    "xz": lambda evil: lzma.compress(torch_bytes({"state_dict": evil})),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("shape", CRAFTED)
def test_crafted_pickle_is_named_not_called_corrupt(tmp_path, capsys, shape):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(CRAFTED[shape](_RunsShell(marker)))
    for load in (load_checkpoint, load_model, nvidia.import_nvidia):
        with pytest.raises(CheckpointError) as info:
            load(path)
        message = str(info.value)
        assert "os.system" in message and "allow" in message, message
        assert "corrupt" not in message and "weights_only" not in message.replace("weights-only", ""), message
        assert "\n" not in message and str(path) in message
    for argv in (["inspect", str(path)], ["convert", str(path), str(tmp_path / "o.pt")]):
        _assert_checkpoint_exit(*_cli(argv, capsys), "os.system")
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_file_is_called_corrupt_without_torch_advice(tmp_path, model, capsys, legacy):
    data = torch_bytes(_payload(model), _use_new_zipfile_serialization=not legacy)
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    for load in (load_checkpoint, load_model, nvidia.import_nvidia):
        with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
            load(path)
        message = str(info.value).lower()
        assert "weights_only" not in message and "miniz" not in message and "\n" not in message
    _assert_checkpoint_exit(*_cli(["inspect", str(path)], capsys), "corrupt or truncated")


# -- 6. inspect reports the training step ---------------------------------------------------------------
@pytest.mark.parametrize("state", [{"trainer": {"step": 12}, "optimizer": {}}, {"step": 12}])
def test_inspect_reports_the_training_step(tmp_path, model, capsys, state):
    path = save_checkpoint(tmp_path / "train.pt", model, MEL, training_state=state)
    assert describe(path)["training_step"] == 12
    assert cli.main(["inspect", str(path)]) == 0
    assert "step 12" in capsys.readouterr().out
    out = tmp_path / "model.pt"
    assert cli.main(["convert", str(path), str(out)]) == 0
    assert load_checkpoint(out).metadata["training_step"] == 12


# -- 3. bombs: refused cheaply, in bounded memory ------------------------------------------------------------
BOMB_BYTES = 64 << 20  # what the bombs decompress to / declare
CAP = 4 << 20  # WAVEFLOW_MAX_CHECKPOINT_BYTES in the child process
MAX_GROWTH = 24 << 20  # peak RSS growth allowed while refusing

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a regression fails, it cannot swamp the machine
    from waveflow.checkpoint import load_checkpoint, load_model
    from waveflow.cli.inspect_cmd import describe
    from waveflow.errors import CheckpointError
    from waveflow.interop.nvidia import import_nvidia
    loaders = {"load_checkpoint": load_checkpoint, "load_model": load_model, "inspect": describe,
               "import_nvidia": import_nvidia}
    bomb, names, warm_waveflow, warm_nvidia = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
    for name in names:  # warm up on good files: lazy imports and caches are not the bomb's cost
        loaders[name](warm_nvidia if name == "import_nvidia" else warm_waveflow)
    report = {}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in names:
        try:
            loaders[name](bomb)
            outcome = "loaded"
        except CheckpointError as exc:
            outcome = "CheckpointError: " + str(exc)
        except BaseException as exc:
            outcome = type(exc).__name__ + ": " + str(exc)[:300]
        report[name] = {"outcome": outcome}
    report["growth"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def warm_files(tmp_path_factory) -> tuple[Path, Path]:
    """A good waveflow file and a good NVIDIA file of the tiny model, to warm the child up with."""
    folder = tmp_path_factory.mktemp("warm")
    torch.manual_seed(0)
    model = WaveGlow(presets.waveglow_tiny().replace(n_mels=N_MELS))
    good = save_checkpoint(folder / "good.pt", model, MEL)
    return good, _save(dict(nvidia.to_nvidia_state_dict(model)), folder / "good-nvidia.pt")


def _load_in_child(path: Path, loaders: list[str], warm: tuple[Path, Path], cap: int | None = CAP) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("WAVEFLOW_MAX_CHECKPOINT_BYTES", None)
    if cap is not None:
        env["WAVEFLOW_MAX_CHECKPOINT_BYTES"] = str(cap)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), ",".join(loaders), str(warm[0]), str(warm[1])],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_refused(report: dict, words: list[str]) -> None:
    for name, entry in report.items():
        if name == "growth":
            continue
        assert entry["outcome"].startswith("CheckpointError: "), (name, entry)
        assert "\n" not in entry["outcome"]
        for word in words:
            assert word in entry["outcome"], (name, word, entry["outcome"])
    assert report["growth"] < MAX_GROWTH, report


@pytest.fixture(scope="module")
def bomb_payload(tmp_path_factory) -> bytes:
    """A waveflow checkpoint of a tiny model plus one 64 MiB tensor of zeros (all of it compresses away)."""
    torch.manual_seed(0)
    model = WaveGlow(presets.waveglow_tiny().replace(n_mels=N_MELS))
    state = dict(model.state_dict())
    state["junk"] = torch.zeros(BOMB_BYTES // 4)
    return torch_bytes(_payload(model, state))


def _xz(data: bytes) -> bytes:
    comp = lzma.LZMACompressor(preset=0)
    chunks = [comp.compress(data[i : i + (8 << 20)]) for i in range(0, len(data), 8 << 20)]
    return b"".join(chunks) + comp.flush()


def test_xz_bomb_is_refused_from_its_declared_size(tmp_path, bomb_payload, warm_files):
    path = tmp_path / "bomb.pt.xz"
    path.write_bytes(_xz(bomb_payload))
    assert path.stat().st_size < 1 << 20  # 64 MiB of zeros, the tiny model's weights
    report = _load_in_child(path, ["load_checkpoint", "load_model", "inspect", "import_nvidia"], warm_files)
    _assert_refused(report, ["WAVEFLOW_MAX_CHECKPOINT_BYTES", str(path)])


def test_xz_bomb_without_an_index_stops_at_the_cap(tmp_path, bomb_payload, warm_files):
    """A stream cut before its index cannot say its size: decompression stops at the cap."""
    path = tmp_path / "bomb.pt.xz"
    path.write_bytes(_xz(bomb_payload)[:-200])
    report = _load_in_child(path, ["load_checkpoint", "load_model"], warm_files)
    _assert_refused(report, ["WAVEFLOW_MAX_CHECKPOINT_BYTES"])


def test_deflated_zip_bomb_is_refused_from_its_directory(tmp_path, bomb_payload, warm_files):
    src = zipfile.ZipFile(io.BytesIO(bomb_payload))
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    assert path.stat().st_size < 1 << 20
    report = _load_in_child(path, ["load_checkpoint", "load_model", "inspect", "import_nvidia"], warm_files)
    _assert_refused(report, ["WAVEFLOW_MAX_CHECKPOINT_BYTES", str(path)])


def test_tensor_declared_far_beyond_its_config_is_refused_before_loading(tmp_path, warm_files):
    """Within the cap, the stored config still bounds what is loaded: the shapes are checked first."""
    torch.manual_seed(0)
    model = WaveGlow(presets.waveglow_tiny().replace(n_mels=N_MELS))
    state = dict(model.state_dict())
    state["upsample.conv.weight"] = torch.zeros(N_MELS, N_MELS, (16 << 20) // (4 * N_MELS * N_MELS))
    path = tmp_path / "big.pt"
    path.write_bytes(torch_bytes(_payload(model, state)))
    report = _load_in_child(path, ["load_checkpoint", "load_model", "inspect"], warm_files, cap=None)
    _assert_refused(report, ["upsample.conv.weight", "expected"])
    assert report["growth"] < 12 << 20  # the 16 MiB tensor was never read


@pytest.mark.parametrize("layout", ["waveflow", "nvidia"])
def test_expanded_tensor_bomb_is_refused(tmp_path, warm_files, layout):
    """A 2 KB file whose tensor is a stride-0 view declaring 256 GB."""
    torch.manual_seed(0)
    model = WaveGlow(presets.waveglow_tiny().replace(n_mels=N_MELS))
    huge = torch.zeros(1).expand(N_MELS, N_MELS, 1 << 30)
    if layout == "waveflow":
        state = dict(model.state_dict())
        state["upsample.conv.weight"] = huge
        data, loaders = torch_bytes(_payload(model, state)), ["load_checkpoint", "load_model", "inspect"]
    else:
        sd = dict(nvidia.to_nvidia_state_dict(model))
        sd["upsample.weight"] = huge
        data, loaders = torch_bytes(sd), ["import_nvidia", "load_model", "inspect"]
    path = tmp_path / "expanded.pt"
    path.write_bytes(data)
    assert len(data) < 1 << 20
    report = _load_in_child(path, loaders, warm_files, cap=None)
    _assert_refused(report, ["upsample"])


def test_inspect_and_extract_mels_refuse_a_bomb_in_one_line(tmp_path, capsys):
    """The commands the issue saw end in a traceback: one line, exit 3, the tensor named."""
    from tests.cli.conftest import write_speech_wav

    torch.manual_seed(0)
    model = WaveGlow(presets.waveglow_tiny().replace(n_mels=N_MELS))
    state = dict(model.state_dict())
    state["upsample.conv.weight"] = torch.zeros(1).expand(N_MELS, N_MELS, 1 << 30)
    path = _save(_payload(model, state), tmp_path / "bomb.pt")
    write_speech_wav(tmp_path / "a.wav", 2000)
    _assert_checkpoint_exit(*_cli(["inspect", str(path)], capsys), "upsample.conv.weight")
    argv = ["extract-mels", "--checkpoint", str(path), str(tmp_path / "a.wav"), "-o", str(tmp_path / "mels")]
    _assert_checkpoint_exit(*_cli(argv, capsys), "upsample.conv.weight")
    assert not (tmp_path / "mels").exists()


def test_config_declaring_a_huge_model_is_refused_before_building_it(tmp_path, warm_files):
    """A few bytes of config can ask for terabytes of parameters: refused before they are allocated."""
    torch.manual_seed(0)
    model = WaveGlow(presets.waveglow_tiny().replace(n_mels=N_MELS))
    payload = _payload(model)
    payload["config"]["model"]["wavenet"]["n_channels"] = 1 << 16  # in_layers alone: 100 GB each
    path = _save(payload, tmp_path / "huge-config.pt")
    report = _load_in_child(path, ["load_checkpoint", "load_model", "inspect"], warm_files, cap=None)
    _assert_refused(report, ["do not fit the stored config"])


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"mixing": "conv1x1_lu", "actnorm": True},
        {"conditioning": "frame", "coupling": "additive"},
        {"share_wavenet": True, "weight_norm": False},
    ],
    ids=["default", "lu-actnorm", "frame-additive", "shared-no-wn"],
)
@pytest.mark.parametrize("folded", [False, True])
def test_expected_shapes_are_the_models(changes, folded):
    config = presets.waveglow_tiny().replace(n_mels=N_MELS, **changes)
    model = WaveGlow(config)
    if folded:
        model.remove_weight_norm()
    assert safe_load.expected_shapes(config, folded) == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


# -- the cap itself ---------------------------------------------------------------------------------------
def test_cap_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("WAVEFLOW_MAX_CHECKPOINT_BYTES", raising=False)
    assert safe_load.max_checkpoint_bytes() == safe_load.DEFAULT_MAX_CHECKPOINT_BYTES >= 650 << 20
    for raw, value in [("123456789", 123456789), ("2G", 2 << 30), ("700M", 700 << 20), ("64k", 64 << 10)]:
        monkeypatch.setenv("WAVEFLOW_MAX_CHECKPOINT_BYTES", raw)
        assert safe_load.max_checkpoint_bytes() == value
    monkeypatch.setenv("WAVEFLOW_MAX_CHECKPOINT_BYTES", "lots")
    with pytest.raises(errors.InputError, match="WAVEFLOW_MAX_CHECKPOINT_BYTES"):
        safe_load.max_checkpoint_bytes()


def test_xz_declared_size_reads_every_stream():
    data = lzma.compress(b"a" * 1000) + b"\0" * 8 + lzma.compress(b"b" * 70000)
    assert safe_load.xz_declared_size(io.BytesIO(data)) == 71000
    assert safe_load.xz_declared_size(io.BytesIO(data[:-20])) is None
    assert safe_load.CheckpointSource.from_any(data).open().read() == b"a" * 1000 + b"b" * 70000
