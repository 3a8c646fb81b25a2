"""Experiment configs from a YAML file plus dotted ``key=value`` overrides.

A config file mirrors :class:`~waveflow.config.ExperimentConfig`; every section and key may be
left out (the dataclass defaults apply)::

    model:
      n_flows: 12
      wavenet: {n_layers: 8, n_channels: 256}
    mel: {sample_rate: 22050, hop_length: 256}
    data:
      training_files: filelists/train.txt
      validation_files: filelists/val.txt
    train: {batch_size: 12, learning_rate: 1.0e-4}

Overrides name a field by its dotted path and take a YAML value: ``train.max_steps=1000``,
``model.wavenet.n_layers=4``, ``train.adam_betas=[0.9,0.98]``, ``mel.f_max=null``. Text fields
(file lists, the device) take the text after ``=`` as is. Unknown keys, in the file or in an
override, raise ``ValueError`` naming the dotted path and the valid keys at that level (the check
of :meth:`~waveflow.config.ConfigBase.from_dict`). ``model.n_mels`` and ``model.hop_length`` may
be left out: they come from the ``mel`` section.

Relative file-list paths (and ``data.mel_dir``, ``train.init_from``) are resolved against the
current folder (as any path on a command line) and stored absolute, so a resumed run finds them
from anywhere; ``train.init_from`` may also name a registered model (``default``), kept as a name.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from waveflow import pretrained
from waveflow.config import ConfigBase, ExperimentConfig
from waveflow.fileio import atomic_write_text

_PATH_FIELDS = ("training_files", "validation_files", "mel_dir")


def _field_types(cls: type[ConfigBase]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, ConfigBase)


def _parse_override(item: str) -> tuple[list[str], str]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {item!r} must look like section.key=value (e.g. train.max_steps=1000)")
    return key.split("."), value


def _override_value(parts: list[str], raw: str) -> Any:
    """Convert ``raw`` (YAML, or verbatim for text fields). An unknown key is left for
    ``ExperimentConfig.from_dict`` to name; a key below a value is refused here."""
    tp: Any = ExperimentConfig
    for i, part in enumerate(parts):
        if tp is None:  # an unknown key
            break
        if not _is_config_class(tp):
            raise ValueError(
                f"config key '{'.'.join(parts[:i])}' is a value, not a section; cannot set '{'.'.join(parts)}'"
            )
        tp = _field_types(tp).get(part)
    if tp is str:
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"override {'.'.join(parts)}={raw}: the value is not valid YAML ({exc})") from None


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the nested dict ``data`` with each ``dotted.key=value`` of ``overrides`` applied
    (unknown keys are refused when the result becomes an ``ExperimentConfig``)."""
    out = _deep_copy(data)
    for item in overrides:
        parts, raw = _parse_override(item)
        value = _override_value(parts, raw)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _absolute_paths(data: dict[str, Any], base: Path) -> None:
    train = data.get("train")
    if isinstance(train, dict):
        value = train.get("init_from")
        # A registered name (`default`) stays a name, unless a file of that name lies in `base`.
        if isinstance(value, str) and value:
            path = base / Path(value).expanduser()
            if path.exists() or not pretrained.is_registered(value):
                train["init_from"] = str(path.absolute())
    section = data.get("data")
    if not isinstance(section, dict):
        return
    for name in _PATH_FIELDS:
        value = section.get(name)
        if isinstance(value, str) and value:
            section[name] = str((base / Path(value).expanduser()).absolute())


def load_config(
    path: str | os.PathLike[str] | None, overrides: Sequence[str] = (), *, base: Path | None = None
) -> ExperimentConfig:
    """Read ``path`` (YAML; ``None`` for all defaults), apply ``overrides``, validate.

    Relative file-list paths are made absolute against ``base`` (default: the current folder).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for unreadable YAML, an
    unknown key (named by its dotted path) or values that fail validation.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ValueError(
                f"{path} must hold a mapping with sections model/mel/data/train, got {type(loaded).__name__}"
            )
        data = _deep_copy(loaded or {})
    data = apply_overrides(data, overrides)
    _absolute_paths(data, base or Path.cwd())
    return ExperimentConfig.from_dict(data)


def config_to_yaml(config: ExperimentConfig) -> str:
    """The full config as YAML, every field written out (sections in dataclass order)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


def write_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> Path:
    """Write :func:`config_to_yaml` to ``path`` atomically (temporary file, fsync, rename)."""
    return atomic_write_text(path, config_to_yaml(config))
