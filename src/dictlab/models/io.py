"""Save and load models as a folder: ``config.json`` (kind + hyperparameters) and ``model.safetensors``.

Only JSON and safetensors are ever read — never a pickle — so loading a file a user hands us cannot
run code. SAEs use SAELens's files instead (``cfg.json`` + ``sae_weights.safetensors``, see
``dictlab.sae.io``); ``load_model`` recognises both.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dictlab.models.base import MODEL_KINDS, DictionaryModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
# Packages whose modules register model kinds on import; imported before a kind is looked up.
_MODEL_PACKAGES = ("dictlab.sae", "dictlab.learners", "dictlab.baselines")


def save_model(model: DictionaryModel, path: str | Path) -> Path:
    """Write ``model`` to folder ``path`` (created if missing); returns the folder."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.tensors().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE))
    header = {"dictlab_format": FORMAT_VERSION, "kind": model.kind, "config": model.config()}
    (folder / CONFIG_FILE).write_text(json.dumps(header, indent=2, sort_keys=True))
    return folder


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable JSON config: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"missing weights file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a valid safetensors file: {err}") from None


def load_model(path: str | Path, device: torch.device | str = "cpu") -> DictionaryModel:
    """Load a model saved by ``save_model`` or an SAE folder in SAELens format."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; a saved model is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}")
    if (folder / CONFIG_FILE).is_file():
        header = read_json(folder / CONFIG_FILE)
        if header.get("dictlab_format") != FORMAT_VERSION or "kind" not in header:
            raise ValueError(f"{folder / CONFIG_FILE} is not a dictlab model config (format {FORMAT_VERSION})")
        for package in _MODEL_PACKAGES:
            importlib.import_module(package)
        cls = MODEL_KINDS[header["kind"]]
        tensors = {k: v.to(device) for k, v in read_safetensors(folder / WEIGHTS_FILE).items()}
        return cls.from_saved(header.get("config", {}), tensors)
    from dictlab.sae.io import SAELENS_CONFIG_FILE, load_sae

    if (folder / SAELENS_CONFIG_FILE).is_file():
        return load_sae(folder, device=device)
    raise ValueError(f"{folder} holds neither {CONFIG_FILE} (dictlab) nor {SAELENS_CONFIG_FILE} (SAELens)")
