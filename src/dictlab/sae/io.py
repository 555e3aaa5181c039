"""SAEs on disk in SAELens's format: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

``cfg.json`` carries SAELens's inference fields (``architecture`` in SAELens's vocabulary: "standard"
for relu, "topk", "jumprelu" — a trained BatchTopK SAE is saved as a JumpReLU SAE with its global
threshold, as SAELens does — plus ``d_in``, ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``,
``normalize_activations`` and ``k`` where relevant), so SAELens's ``SAE.load_from_disk`` reads the
folder. dictlab's own configs sit under the key ``"dictlab"``, which SAELens ignores. A folder written
by SAELens (no ``"dictlab"`` key) of architecture standard, topk or jumprelu loads here too. The
MP-SAE is saved with architecture "mp" and only ``W_dec``, ``b_dec``; SAELens cannot load it.

Only JSON and safetensors are read, never a pickle; every malformed input raises ValueError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dictlab.models.io import MODEL_FORMATS, ModelFormat, read_json, read_safetensors
from dictlab.sae.base import SparseAutoencoder

SAELENS_CONFIG_FILE = "cfg.json"
SAELENS_WEIGHTS_FILE = "sae_weights.safetensors"
DICTLAB_KEY = "dictlab"
FORMAT_VERSION = 1

# SAELens architecture name -> dictlab architecture, for folders SAELens wrote.
FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}


def saelens_config(sae: SparseAutoencoder) -> dict[str, Any]:
    """SAELens's inference cfg.json fields for ``sae``."""
    cfg: dict[str, Any] = {
        "architecture": sae.saelens_architecture,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "dtype": str(sae.W_dec.dtype).removeprefix("torch."),
        "device": str(sae.W_dec.device),
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
    }
    if sae.saelens_architecture in ("topk", "mp"):
        cfg["k"] = sae.cfg.k
    return cfg


def save_sae(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write ``sae`` to ``folder`` (created if missing) in SAELens format; returns the folder."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.tensors().items()}
    save_file(tensors, str(path / SAELENS_WEIGHTS_FILE))
    cfg = saelens_config(sae)
    cfg[DICTLAB_KEY] = {"format": FORMAT_VERSION, "kind": sae.kind, **sae.config()}
    (path / SAELENS_CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return path


def dictlab_config(cfg: dict[str, Any], source: Path) -> dict[str, Any]:
    """The ``SparseAutoencoder.config()`` dict stored in, or implied by, an SAELens cfg.json."""
    own = cfg.get(DICTLAB_KEY)
    if own is not None:
        if not isinstance(own, dict) or own.get("format") != FORMAT_VERSION or "sae" not in own:
            raise ValueError(f"{source}: the {DICTLAB_KEY!r} entry is not a dictlab SAE config (format {FORMAT_VERSION})")
        return own
    architecture = cfg.get("architecture")
    if architecture not in FROM_SAELENS:
        raise ValueError(
            f"{source}: unknown SAE architecture {architecture!r}; SAELens folders of architecture "
            f"{', '.join(sorted(FROM_SAELENS))} can be loaded"
        )
    if cfg.get("apply_b_dec_to_input", True) is not True:
        raise ValueError(f"{source}: apply_b_dec_to_input=false is not supported (dictlab encodes y − b_dec)")
    if cfg.get("normalize_activations", "none") != "none":
        raise ValueError(f"{source}: normalize_activations={cfg['normalize_activations']!r} is not supported; use 'none'")
    if cfg.get("rescale_acts_by_decoder_norm", False):
        raise ValueError(f"{source}: rescale_acts_by_decoder_norm=true is not supported; fold the decoder norms first")
    sae = {"architecture": FROM_SAELENS[architecture], "d_in": cfg.get("d_in"), "d_sae": cfg.get("d_sae")}
    if architecture == "topk":
        sae["k"] = cfg.get("k")
    return {"sae": sae}


def load_sae(folder: str | Path, device: torch.device | str = "cpu") -> SparseAutoencoder:
    """Load an SAE folder written by ``save_sae`` (or by SAELens); malformed files raise ValueError."""
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; an SAE is a folder with {SAELENS_CONFIG_FILE} and {SAELENS_WEIGHTS_FILE}")
    cfg = read_json(path / SAELENS_CONFIG_FILE)
    config = dictlab_config(cfg, path / SAELENS_CONFIG_FILE)
    tensors = read_safetensors(path / SAELENS_WEIGHTS_FILE)
    try:
        sae = SparseAutoencoder.from_saved(config, tensors)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return sae.to(device)


MODEL_FORMATS.register("saelens")(ModelFormat("saelens", SAELENS_CONFIG_FILE, load_sae))
