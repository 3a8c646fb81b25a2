"""NVIDIA WaveGlow checkpoints <-> waveflow: NVIDIA's layouts recognised, their keys mapped both ways.

The file is read by :mod:`waveflow.safe_load` (xz, size caps, the allow-listing unpickler, shape
and NaN/Inf checks); this module interprets what it returns, in one of three layouts:

* **NVIDIA/waveglow training checkpoints** (``train.py``'s ``save_checkpoint`` and the published
  ``waveglow_256channels*.pt``): ``{'model': <pickled glow.WaveGlow module>, 'iteration',
  'optimizer', 'learning_rate'}``, or only ``'model'``. Their modules come back from the allow
  list as inert :class:`~waveflow.safe_load.StandIn` objects; NVIDIA's ``glow.py`` never runs.
* **DeepLearningExamples / torch.hub** checkpoints: ``{'epoch', 'config', 'state_dict', ...}``
  with plain tensors (often with ``module.`` prefixes and per-layer ``cond_layers``); these load
  with ``torch.load(weights_only=True)``.
* **Bare NVIDIA state dicts** (either layout), also loaded with ``weights_only=True``.

Weight-normalised convolutions are always rebuilt from ``weight_g``/``weight_v``: the ``weight``
attribute a pickled NVIDIA module carries is stale (the initial weight of the model
``save_checkpoint`` built, not the trained one).

Name mapping (NVIDIA -> waveflow ``WaveGlow``)::

    upsample.{weight,bias}                   -> upsample.conv.{weight,bias}
    convinv.{k}.conv.weight (c, c, 1)        -> flow.steps.{k}.mix.weight (c, c)
    WN.{k}.<conv>.weight_g / weight_v        -> flow.steps.{k}.coupling.conditioner.<conv>.parametrizations.weight.original0 / original1
    WN.{k}.<conv>.bias, WN.{k}.end.*         -> flow.steps.{k}.coupling.conditioner.<conv>.bias, ....end.*
    WN.{k}.cond_layers.{i}.X (DLE, old)      -> concatenated along dim 0 into ....cond_layer.X
    WN.{k}.res_layers.{i} + skip_layers.{i}  -> ....res_skip_layers.{i} (pre-``convert_model.py`` layout)
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from waveflow.config import ModelConfig, WaveNetConfig
from waveflow.errors import CheckpointError
from waveflow.flows import EarlyOutputSchedule

# The `X as X` imports re-export names that were imported from here before the reader moved out.
from waveflow.safe_load import XZ_MAGIC as XZ_MAGIC
from waveflow.safe_load import (
    CheckpointSource,
    MapLocation,
    StandIn,
    check_finite,
    check_state_dict_fits,
    read_checked,
)
from waveflow.safe_load import UnsafeCheckpointError as UnsafeCheckpointError
from waveflow.safe_load import restricted_pickle_module as restricted_pickle_module

# NVIDIA hard-codes the upsampler's stride (256); a bare state dict cannot tell it.
NVIDIA_HOP_LENGTH = 256

_WF_CONDITIONER_RE = re.compile(r"flow\.steps\.(\d+)\.coupling\.conditioner\.(.+)")


def nvidia_key(key: str) -> str:
    """The NVIDIA name of a waveflow ``WaveGlow`` state-dict key (for messages about NVIDIA files)."""
    if key.startswith("upsample.conv."):
        return "upsample." + key[len("upsample.conv.") :]
    if m := re.fullmatch(r"flow\.steps\.(\d+)\.mix\.weight", key):
        return f"convinv.{m.group(1)}.conv.weight"
    if m := _WF_CONDITIONER_RE.fullmatch(key):
        rest = m.group(2)
        for nv_name, wf_name in _WN_PARAM.items():
            rest = rest.replace(wf_name, nv_name)
        return f"WN.{m.group(1)}.{rest}"
    return key


# -- NVIDIA state dict -> waveflow ---------------------------------------------------------------
_WN_PARAM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


@dataclass
class NvidiaImport:
    """The result of reading an NVIDIA checkpoint.

    ``format``: ``"nvidia-original"`` (pickled ``glow.WaveGlow``), ``"nvidia-dle"``
    (DeepLearningExamples / torch.hub) or ``"nvidia-state-dict"``. ``state_dict`` loads into
    ``WaveGlow(config)`` with ``strict=True``. ``weight_norm_folded``: the file held plain
    ``weight`` tensors (NVIDIA's ``remove_weightnorm`` had been applied), so ``config.weight_norm``
    is false. ``info``: what else the file said (``iteration``, ``epoch``, ``learning_rate``).
    """

    format: str
    config: ModelConfig
    state_dict: dict[str, Tensor]
    weight_norm_folded: bool
    info: dict[str, Any] = field(default_factory=dict)


def _int_attr(obj: StandIn, name: str, label: str) -> int | None:
    value = obj.__dict__.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(
            f"{label}: attribute {name!r} of {obj.nvidia_class} is {value!r}, expected an integer"
        )
    return value


def flatten_module(
    obj: StandIn, label: str, prefix: str = "", out: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """The ``state_dict()`` a pickled module object would give: ``_parameters`` and ``_buffers``, recursively.

    Plain tensor attributes (such as weight norm's stale ``weight``) are deliberately ignored.
    """
    out = {} if out is None else out
    if prefix.count(".") > 16:
        raise CheckpointError(f"{label}: module tree is nested too deeply at {prefix!r}")
    state = obj.__dict__
    for table in ("_parameters", "_buffers"):
        entries = state.get(table) or {}
        if not isinstance(entries, Mapping):
            raise CheckpointError(f"{label}: {prefix or 'model'}.{table} is not a mapping")
        for name, t in entries.items():
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise CheckpointError(f"{label}: {prefix}{name} is a {type(t).__name__}, expected a tensor")
            out[f"{prefix}{name}"] = t
    children = state.get("_modules") or {}
    if not isinstance(children, Mapping):
        raise CheckpointError(f"{label}: {prefix or 'model'}._modules is not a mapping")
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, StandIn):
            raise CheckpointError(f"{label}: submodule {prefix}{name} is a {type(child).__name__}")
        flatten_module(child, label, f"{prefix}{name}.", out)
    return out


def _split_conv_params(sub: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    convs: dict[str, dict[str, Tensor]] = {}
    for key, t in sub.items():
        conv, _, param = key.rpartition(".")
        convs.setdefault(conv, {})[param] = t
    return convs


def _conv_kind(params: Mapping[str, Tensor], where: str) -> bool:
    """True if the conv is weight-normalised (g, v, bias); False if it holds a plain weight."""
    names = set(params)
    if names == {"weight_g", "weight_v", "bias"}:
        return True
    if names == {"weight", "bias"}:
        return False
    wanted = {"weight_g", "weight_v", "bias"} if names & {"weight_g", "weight_v"} else {"weight", "bias"}
    problems = [f"{where}.{n} is missing" for n in sorted(wanted - names)]
    problems += [f"{where}.{n} is unexpected" for n in sorted(names - wanted)]
    raise CheckpointError(
        "; ".join(problems) + " (a convolution holds bias + weight_g/weight_v, or bias + weight)"
    )


def _cat_params(parts: list[dict[str, Tensor]], where: str) -> dict[str, Tensor]:
    names = set(parts[0])
    if any(set(p) != names for p in parts):
        raise CheckpointError(f"{where}: the layers to fuse hold different parameters")
    # Weight norm is per output channel (dim 0), so stacking g, v and bias along dim 0 is exact.
    return {n: _cat0([p[n] for p in parts], f"{where}.{n}") for n in sorted(names)}


def _cat0(tensors: list[Tensor], where: str) -> Tensor:
    """``torch.cat(tensors, 0)``; on the meta device (a preview) only the shape is made, which is cheap."""
    if any(t.dim() == 0 for t in tensors) or len({(tuple(t.shape[1:]), t.dtype) for t in tensors}) != 1:
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise CheckpointError(f"{where}: the layers to fuse have shapes {shapes}, which do not stack")
    if any(t.device.type == "meta" for t in tensors):
        first = tensors[0]
        return torch.empty(
            (sum(t.shape[0] for t in tensors), *first.shape[1:]), dtype=first.dtype, device="meta"
        )
    return torch.cat(tensors, dim=0)


def _indexed(convs: Mapping[str, Any], name: str, where: str) -> list[int]:
    idx = sorted(int(k.split(".")[1]) for k in convs if re.fullmatch(rf"{name}\.\d+", k))
    if idx != list(range(len(idx))):
        raise CheckpointError(f"{where}: {name} indices are not 0..n-1: {idx[:16]}")
    return idx


def _convert_wn(sub: Mapping[str, Tensor], where: str) -> tuple[dict[str, Tensor], dict[str, int], bool]:
    """One NVIDIA ``WN`` (keys relative to it) -> waveflow ``WaveNet`` keys, sizes, folded flag."""
    convs = _split_conv_params(sub)
    layers = _indexed(convs, "in_layers", where)
    if not layers:
        raise CheckpointError(f"{where}: no in_layers")
    n_layers = len(layers)
    fused: dict[str, dict[str, Tensor]] = {}
    for name in ("start", "end"):
        if name not in convs:
            raise CheckpointError(f"{where}: missing {name}")
        fused[name] = convs.pop(name)
    for i in layers:
        fused[f"in_layers.{i}"] = convs.pop(f"in_layers.{i}")

    if "cond_layer" in convs:
        fused["cond_layer"] = convs.pop("cond_layer")
    else:
        cond = _indexed(convs, "cond_layers", where)
        if len(cond) != n_layers:
            raise CheckpointError(f"{where}: {len(cond)} cond_layers for {n_layers} in_layers")
        fused["cond_layer"] = _cat_params(
            [convs.pop(f"cond_layers.{i}") for i in cond], f"{where}.cond_layers"
        )

    if any(k.startswith("res_skip_layers.") for k in convs):
        rs = _indexed(convs, "res_skip_layers", where)
        if len(rs) != n_layers:
            raise CheckpointError(f"{where}: {len(rs)} res_skip_layers for {n_layers} in_layers")
        for i in rs:
            fused[f"res_skip_layers.{i}"] = convs.pop(f"res_skip_layers.{i}")
    else:
        # Before convert_model.py: separate residual (n_layers - 1 of them) and skip convolutions.
        res = _indexed(convs, "res_layers", where)
        skip = _indexed(convs, "skip_layers", where)
        if len(skip) != n_layers or len(res) != n_layers - 1:
            raise CheckpointError(
                f"{where}: expected res_skip_layers, or {n_layers - 1} res_layers + {n_layers} skip_layers"
            )
        for i in skip:
            parts = [convs.pop(f"res_layers.{i}")] if i < n_layers - 1 else []
            parts.append(convs.pop(f"skip_layers.{i}"))
            fused[f"res_skip_layers.{i}"] = _cat_params(parts, f"{where}.res_skip_layers.{i}")
    if convs:
        raise CheckpointError(f"{where}: unexpected entries {sorted(convs)}")

    end = fused["end"]
    if set(end) != {"weight", "bias"}:
        problems = [f"{where}.end.{n} is missing" for n in sorted({"weight", "bias"} - set(end))]
        problems += [f"{where}.end.{n} is unexpected" for n in sorted(set(end) - {"weight", "bias"})]
        raise CheckpointError("; ".join(problems) + " (end holds a plain weight and bias)")
    kinds = {name: _conv_kind(p, f"{where}.{name}") for name, p in fused.items() if name != "end"}
    if len(set(kinds.values())) != 1:
        raise CheckpointError(f"{where}: some convolutions have weight norm and others do not")
    has_wn = next(iter(kinds.values()))

    out: dict[str, Tensor] = {}
    for name, params in fused.items():
        for param, t in params.items():
            out[f"{name}.{_WN_PARAM.get(param, param)}"] = t

    def weight(name: str) -> Tensor:
        return fused[name]["weight_v" if has_wn else "weight"]

    start_w, in_w, cond_w, end_w = weight("start"), weight("in_layers.0"), weight("cond_layer"), end["weight"]
    sizes = {
        "n_layers": n_layers,
        "n_channels": start_w.shape[0],
        "kernel_size": in_w.shape[2],
        "in_channels": start_w.shape[1],
        "out_channels": end_w.shape[0],
        "cond_channels": cond_w.shape[1],
        "cond_out": cond_w.shape[0],
    }
    c = sizes["n_channels"]
    if sizes["cond_out"] != 2 * c * n_layers:
        raise CheckpointError(
            f"{where}: cond_layer has {sizes['cond_out']} outputs, expected 2*{c}*{n_layers}"
        )
    return out, sizes, not has_wn


def convert_state_dict(
    nvidia: Mapping[str, Any],
    *,
    n_early_every: int | None = None,
    n_early_size: int | None = None,
    hop_length: int | None = None,
    alternate_halves: bool = False,
    label: str = "state dict",
) -> tuple[ModelConfig, dict[str, Tensor], bool]:
    """An NVIDIA WaveGlow state dict (original or DLE layout) -> ``(ModelConfig, state_dict, folded)``.

    Sizes come from tensor shapes; the early-output schedule from the 1x1 convolution sizes unless
    ``n_early_every``/``n_early_size`` are given (they are then checked against the shapes).
    ``hop_length`` is the upsampler's stride (NVIDIA: 256), which shapes cannot reveal. Any
    ``module.``-style prefix in front of ``upsample.weight`` is stripped. Floating tensors are cast
    to float32. ``folded``: the file holds plain weights, and ``config.weight_norm`` is false.
    """
    anchors = [
        k for k in nvidia if isinstance(k, str) and (k == "upsample.weight" or k.endswith(".upsample.weight"))
    ]
    if not anchors:
        raise CheckpointError(f"{label}: no 'upsample.weight' entry, so this is not a WaveGlow state dict")
    prefixes = {k[: -len("upsample.weight")] for k in anchors}
    if len(prefixes) != 1:
        raise CheckpointError(
            f"{label}: several WaveGlow models in one state dict (prefixes {sorted(prefixes)})"
        )
    prefix = prefixes.pop()
    sd: dict[str, Tensor] = {}
    for k, v in nvidia.items():
        if isinstance(k, str) and k.startswith(prefix):
            if not isinstance(v, Tensor):
                raise CheckpointError(f"{label}: {k} is a {type(v).__name__}, expected a tensor")
            v = v.detach()  # drops any hooks the file attached to the tensor
            sd[k[len(prefix) :]] = v.float() if v.is_floating_point() else v

    out: dict[str, Tensor] = {}
    up_w = sd.pop("upsample.weight")
    if "upsample.bias" not in sd:
        raise CheckpointError(f"{label}: upsample.bias is missing")
    up_b = sd.pop("upsample.bias")
    if up_w.dim() != 3 or up_w.shape[0] != up_w.shape[1]:
        raise CheckpointError(
            f"{label}: upsample.weight has shape {tuple(up_w.shape)}, expected (n_mels, n_mels, kernel)"
        )
    n_mels, kernel = up_w.shape[0], up_w.shape[2]
    out["upsample.conv.weight"], out["upsample.conv.bias"] = up_w, up_b

    flows = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"convinv\.(\d+)\.conv\.weight", k)))
    if not flows or flows != list(range(len(flows))):
        raise CheckpointError(f"{label}: convinv indices are not 0..n-1: {flows}")
    n_flows = len(flows)
    channels: list[int] = []
    wn_sizes: list[dict[str, int]] = []
    folded_flags = set()
    for k in flows:
        w = sd.pop(f"convinv.{k}.conv.weight")
        sd.pop(f"convinv.{k}.W_inverse", None)  # a cached inverse, if infer() ran before saving
        if w.dim() != 3 or w.shape[0] != w.shape[1] or w.shape[2] != 1:
            raise CheckpointError(
                f"{label}: convinv.{k}.conv.weight has shape {tuple(w.shape)}, expected (c, c, 1)"
            )
        out[f"flow.steps.{k}.mix.weight"] = w.squeeze(-1)  # (c, c, 1) -> (c, c)
        channels.append(w.shape[0])
        wn_prefix = f"WN.{k}."
        sub = {key[len(wn_prefix) :]: sd.pop(key) for key in [key for key in sd if key.startswith(wn_prefix)]}
        if not sub:
            raise CheckpointError(f"{label}: missing WN.{k}")
        wn_out, sizes, folded = _convert_wn(sub, f"{label}: WN.{k}")
        for key, t in wn_out.items():
            out[f"flow.steps.{k}.coupling.conditioner.{key}"] = t
        wn_sizes.append(sizes)
        folded_flags.add(folded)
    if sd:
        raise CheckpointError(f"{label}: unexpected entries {sorted(sd)[:8]}")
    if len(folded_flags) != 1:
        raise CheckpointError(f"{label}: some flows have weight norm and others do not")
    folded = folded_flags.pop()

    n_group = channels[0]
    if n_early_every is None or n_early_size is None:
        drops = [
            (k, channels[k - 1] - channels[k]) for k in range(1, n_flows) if channels[k] != channels[k - 1]
        ]
        n_early_every, n_early_size = (drops[0][0], drops[0][1]) if drops else (n_flows, 0)
    schedule = EarlyOutputSchedule.compute(n_flows, n_group, n_early_every, n_early_size)
    if list(schedule.channels) != channels:
        raise CheckpointError(
            f"{label}: 1x1 convolution sizes {channels} do not follow an early-output schedule "
            f"(every {n_early_every}, size {n_early_size} gives {list(schedule.channels)})"
        )
    for key in ("n_layers", "n_channels", "kernel_size"):
        values = {s[key] for s in wn_sizes}
        if len(values) != 1:
            raise CheckpointError(f"{label}: WN {key} differs between flows: {sorted(values)}")
    for k, (c, s) in enumerate(zip(channels, wn_sizes)):
        n_a = c // 2
        if s["in_channels"] != n_a or s["out_channels"] != 2 * (c - n_a):
            raise CheckpointError(
                f"{label}: WN.{k} maps {s['in_channels']} -> {s['out_channels']} channels; "
                f"a {c}-channel coupling needs {n_a} -> {2 * (c - n_a)}"
            )
        if s["cond_channels"] != n_mels * n_group:
            raise CheckpointError(
                f"{label}: WN.{k}.cond_layer takes {s['cond_channels']} channels, expected n_mels*n_group = {n_mels * n_group}"
            )
    config = ModelConfig(
        n_mels=n_mels,
        hop_length=NVIDIA_HOP_LENGTH if hop_length is None else hop_length,
        upsample_kernel_size=kernel,
        n_flows=n_flows,
        n_group=n_group,
        n_early_every=n_early_every,
        n_early_size=n_early_size,
        wavenet=WaveNetConfig(
            n_layers=wn_sizes[0]["n_layers"],
            n_channels=wn_sizes[0]["n_channels"],
            kernel_size=wn_sizes[0]["kernel_size"],
        ),
        alternate_halves=alternate_halves,
        weight_norm=not folded,
    )
    try:
        config.validate()
    except ValueError as exc:
        raise CheckpointError(f"{label}: the tensors describe an invalid model: {exc}") from None
    check_state_dict_fits(
        config, out, False, label, rename=nvidia_key, what="the model its other tensors describe"
    )
    check_finite(out, label, rename=nvidia_key)
    return config, out, folded


def _from_stand_in(model: StandIn, label: str, info: dict[str, Any]) -> NvidiaImport:
    if model.nvidia_class.rsplit(".", 1)[-1] != "WaveGlow":
        raise CheckpointError(f"{label}: 'model' is a pickled {model.nvidia_class}, expected a WaveGlow")
    flat = flatten_module(model, label)
    every = _int_attr(model, "n_early_every", label)
    size = _int_attr(model, "n_early_size", label)
    hop = None
    upsample = (model.__dict__.get("_modules") or {}).get("upsample")
    if isinstance(upsample, StandIn):
        stride = upsample.__dict__.get("stride")
        if isinstance(stride, tuple) and len(stride) == 1 and isinstance(stride[0], int):
            hop = stride[0]
    # glow_old.py's WaveGlow alternates which half conditions the coupling (odd flows use the
    # second half); the current glow.py and DeepLearningExamples never do.
    alternate = model.nvidia_class.split(".")[-2] == "glow_old"
    config, sd, folded = convert_state_dict(
        flat, n_early_every=every, n_early_size=size, hop_length=hop, alternate_halves=alternate, label=label
    )
    n_flows = _int_attr(model, "n_flows", label)
    n_group = _int_attr(model, "n_group", label)
    if (n_flows is not None and n_flows != config.n_flows) or (
        n_group is not None and n_group != config.n_group
    ):
        raise CheckpointError(
            f"{label}: attributes say n_flows={n_flows}, n_group={n_group} but the weights have "
            f"{config.n_flows} flows of {config.n_group} channels"
        )
    return NvidiaImport("nvidia-original", config, sd, folded, info)


def _plain_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dle_schedule(cfg: Any, label: str) -> tuple[int | None, int | None]:
    if cfg is None:
        return None, None
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"{label}: 'config' is a {type(cfg).__name__}, expected a dict")
    every, size = cfg.get("n_early_every"), cfg.get("n_early_size")
    if (every is not None and not isinstance(every, int)) or (size is not None and not isinstance(size, int)):
        raise CheckpointError(
            f"{label}: config n_early_every={every!r}, n_early_size={size!r} are not integers"
        )
    return every, size


def _check_dle_config(cfg: Any, config: ModelConfig, label: str) -> None:
    if not isinstance(cfg, Mapping):
        return
    wn = cfg.get("WN_config") or {}
    expected = {
        "n_mel_channels": config.n_mels,
        "n_flows": config.n_flows,
        "n_group": config.n_group,
        "n_layers": config.wavenet.n_layers,
        "n_channels": config.wavenet.n_channels,
        "kernel_size": config.wavenet.kernel_size,
    }
    stated = {**{k: cfg.get(k) for k in ("n_mel_channels", "n_flows", "n_group")}, **dict(wn)}
    bad = {k: (stated[k], v) for k, v in expected.items() if stated.get(k) is not None and stated[k] != v}
    if bad:
        detail = ", ".join(f"{k}: config {a} vs weights {b}" for k, (a, b) in bad.items())
        raise CheckpointError(f"{label}: the stored config disagrees with the weights ({detail})")


def convert_loaded(obj: Any, label: str) -> NvidiaImport:
    """Recognise an already-unpickled NVIDIA checkpoint object and convert it."""
    if isinstance(obj, StandIn):  # torch.save(model) of the bare module
        return _from_stand_in(obj, label, {})
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{label}: holds a {type(obj).__name__}, not an NVIDIA WaveGlow checkpoint")
    if obj.get("format") == "waveflow":
        raise CheckpointError(
            f"{label} is a waveflow checkpoint; load it with waveflow.checkpoint.load_checkpoint"
        )
    info = {k: obj[k] for k in ("iteration", "epoch", "learning_rate") if k in obj and _plain_number(obj[k])}
    model = obj.get("model")
    if isinstance(model, StandIn):
        return _from_stand_in(model, label, info)
    if isinstance(model, Mapping):
        config, sd, folded = convert_state_dict(model, label=label)
        return NvidiaImport("nvidia-state-dict", config, sd, folded, info)
    if "state_dict" in obj:
        sd_in = obj["state_dict"]
        if not isinstance(sd_in, Mapping):
            raise CheckpointError(f"{label}: 'state_dict' is a {type(sd_in).__name__}, expected a mapping")
        cfg = obj.get("config")
        every, size = _dle_schedule(cfg, label)
        config, sd, folded = convert_state_dict(sd_in, n_early_every=every, n_early_size=size, label=label)
        _check_dle_config(cfg, config, label)
        return NvidiaImport("nvidia-dle", config, sd, folded, info)
    if any(isinstance(k, str) and k.endswith("upsample.weight") for k in obj):
        config, sd, folded = convert_state_dict(obj, label=label)
        return NvidiaImport("nvidia-state-dict", config, sd, folded, {})
    keys = sorted(str(k) for k in obj)[:8]
    raise CheckpointError(f"{label}: not an NVIDIA WaveGlow checkpoint (top-level keys {keys})")


def import_nvidia(
    src: str | Path | bytes | CheckpointSource, map_location: MapLocation = "cpu"
) -> NvidiaImport:
    """Read an NVIDIA checkpoint (any of the three layouts, optionally xz-compressed).

    The file is read by :func:`waveflow.safe_load.read_checked` (code in it never runs; a global
    outside the allow list raises :class:`UnsafeCheckpointError`); every failure is a
    :class:`~waveflow.errors.CheckpointError`: an unreadable file, a bomb, tensors that disagree
    with one another (checked before a zip file's tensors are read), non-finite weights.
    """
    return read_checked(src, lambda obj, label, _previewing: convert_loaded(obj, label), map_location)


def load_nvidia_checkpoint(
    path_or_bytes: str | Path | bytes, map_location: MapLocation = "cpu"
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """An NVIDIA WaveGlow checkpoint -> ``(ModelConfig, state_dict)`` for :class:`waveflow.model.WaveGlow`.

    ``WaveGlow(config).load_state_dict(state_dict)`` (strict) works for every layout. When the file
    held weight-norm-folded weights, ``config.weight_norm`` is false. NVIDIA files carry no mel
    settings; pair the config with ``waveflow.presets.tacotron2_mel()`` (their convention).
    """
    result = import_nvidia(path_or_bytes, map_location)
    return result.config, result.state_dict


# -- waveflow -> NVIDIA --------------------------------------------------------------------------
def to_nvidia_state_dict(model: torch.nn.Module, layout: str = "original") -> OrderedDict[str, Tensor]:
    """The weights of a waveflow ``WaveGlow`` with NVIDIA's key names.

    ``layout="original"``: ``glow.WaveGlow().state_dict()`` of NVIDIA/waveglow (fused
    ``cond_layer``); ``"dle"``: DeepLearningExamples' ``WaveGlow`` (per-layer ``cond_layers``, no
    ``module.`` prefix). With weight norm the convolutions get ``weight_g``/``weight_v``; a model
    whose weight norm was folded gives plain ``weight`` tensors (NVIDIA's ``remove_weightnorm``
    layout). NVIDIA's class hard-codes the upsampler (kernel 1024, stride 256), 1x1 mixing, affine
    couplings on the second half and no ActNorm; other configurations raise ``ValueError``.
    """
    if layout not in ("original", "dle"):
        raise ValueError(f"layout must be 'original' or 'dle', got {layout!r}")
    cfg: ModelConfig = model.config  # type: ignore[assignment]
    unsupported = {
        "mixing": (cfg.mixing, "conv1x1"),
        "coupling": (cfg.coupling, "affine"),
        "actnorm": (cfg.actnorm, False),
        "alternate_halves": (cfg.alternate_halves, False),
        "log_scale_clamp": (cfg.log_scale_clamp, None),
        "hop_length": (cfg.hop_length, NVIDIA_HOP_LENGTH),
        "upsample_kernel_size": (cfg.upsample_kernel_size, 1024),
    }
    bad = {k: v for k, (v, want) in unsupported.items() if v != want}
    if bad:
        raise ValueError(f"NVIDIA's WaveGlow class cannot hold this model: {bad}")
    src = model.state_dict()
    out: OrderedDict[str, Tensor] = OrderedDict()
    out["upsample.weight"] = src["upsample.conv.weight"]
    out["upsample.bias"] = src["upsample.conv.bias"]
    n_layers, c = cfg.wavenet.n_layers, cfg.wavenet.n_channels

    def conv(dst: str, src_prefix: str, rows: slice | None = None) -> None:
        weight_norm = f"{src_prefix}.{_WN_PARAM['weight_g']}" in src
        names = {"bias": "bias", **(_WN_PARAM if weight_norm else {"weight": "weight"})}
        for nv_name, wf_name in names.items():
            t = src[f"{src_prefix}.{wf_name}"]
            out[f"{dst}.{nv_name}"] = t if rows is None else t[rows]

    for k in range(cfg.n_flows):
        wf = f"flow.steps.{k}.coupling.conditioner"
        nv = f"WN.{k}"
        # NVIDIA's registration order: in_layers, res_skip_layers, (cond_layers), start, end, (cond_layer).
        for i in range(n_layers):
            conv(f"{nv}.in_layers.{i}", f"{wf}.in_layers.{i}")
        for i in range(n_layers):
            conv(f"{nv}.res_skip_layers.{i}", f"{wf}.res_skip_layers.{i}")
        if layout == "dle":
            for i in range(n_layers):
                conv(f"{nv}.cond_layers.{i}", f"{wf}.cond_layer", slice(2 * c * i, 2 * c * (i + 1)))
        conv(f"{nv}.start", f"{wf}.start")
        out[f"{nv}.end.weight"] = src[f"{wf}.end.weight"]
        out[f"{nv}.end.bias"] = src[f"{wf}.end.bias"]
        if layout == "original":
            conv(f"{nv}.cond_layer", f"{wf}.cond_layer")
    for k in range(cfg.n_flows):
        out[f"convinv.{k}.conv.weight"] = src[f"flow.steps.{k}.mix.weight"].unsqueeze(
            -1
        )  # (c, c) -> (c, c, 1)
    return out
