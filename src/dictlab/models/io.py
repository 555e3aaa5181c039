"""Models on disk: a folder in one of the registered formats, read without ever unpickling.

dictlab's own format is a folder with ``config.json`` (``{"dictlab_format": 1, "kind": …, "config": …}``)
and ``model.safetensors``. Other formats register a ``ModelFormat`` in ``MODEL_FORMATS`` from their own
package — the SAE family registers SAELens's ``cfg.json`` + ``sae_weights.safetensors`` — so this module
names no package above it; ``load_model`` recognises a folder by the file its format names. Only JSON and
safetensors are ever read, so loading a file a user hands us cannot run code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dictlab.models.base import MODEL_KINDS, DictionaryModel
from dictlab.registry import Registry

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelFormat:
    """A way a model is stored: the file that identifies such a folder and the function that loads it."""

    name: str
    config_file: str
    load: Callable[[Path, torch.device | str], DictionaryModel]


# Tried in registration order; the packages that add formats are the entry-point group ``dictlab.models``.
MODEL_FORMATS: Registry[ModelFormat] = Registry("model format", plugins="dictlab.models")


def save_model(model: DictionaryModel, path: str | Path) -> Path:
    """Write ``model`` in dictlab's format to folder ``path`` (created if missing); returns the folder."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.tensors().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE))
    header = {"dictlab_format": FORMAT_VERSION, "kind": model.kind, "config": model.config()}
    (folder / CONFIG_FILE).write_text(json.dumps(header, indent=2, sort_keys=True))
    return folder


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ValueError naming the file if it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable JSON config: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; ValueError naming the file if it is missing or malformed."""
    if not path.is_file():
        raise ValueError(f"missing weights file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a valid safetensors file: {err}") from None


def _load_dictlab(folder: Path, device: torch.device | str) -> DictionaryModel:
    path = folder / CONFIG_FILE
    header = read_json(path)
    if header.get("dictlab_format") != FORMAT_VERSION or "kind" not in header:
        raise ValueError(f"{path} is not a dictlab model config (format {FORMAT_VERSION} with a 'kind')")
    kind = header["kind"]
    if not isinstance(kind, str):
        raise ValueError(f"{path}: 'kind' must be a string naming a model kind, got {type(kind).__name__} {kind!r}")
    config = header.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"{path}: 'config' must be a JSON object, got {type(config).__name__}")
    cls = MODEL_KINDS[kind]
    tensors = {k: v.to(device) for k, v in read_safetensors(folder / WEIGHTS_FILE).items()}
    try:
        return cls.from_saved(config, tensors)
    except (ValueError, KeyError, TypeError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: cannot rebuild a {kind!r} model: {detail}") from None


MODEL_FORMATS.register("dictlab")(ModelFormat("dictlab", CONFIG_FILE, _load_dictlab))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> DictionaryModel:
    """Load a model folder in any registered format (dictlab's ``config.json``, SAELens's ``cfg.json`` …)."""
    folder = Path(path)
    formats = [MODEL_FORMATS[name] for name in _format_order()]
    if not folder.is_dir():
        files = " or ".join(f.config_file for f in formats)
        raise ValueError(f"{folder} is not a folder; a saved model is a folder with {files} and its weights")
    for model_format in formats:
        if (folder / model_format.config_file).is_file():
            return model_format.load(folder, device)
    known = ", ".join(f"{f.config_file} ({f.name})" for f in formats)
    raise ValueError(f"{folder} holds none of the model files {known}")


def _format_order() -> list[str]:
    """dictlab's own format first, then the others by name (a folder holding both is dictlab's)."""
    names = MODEL_FORMATS.names()
    return ["dictlab", *(n for n in names if n != "dictlab")]
