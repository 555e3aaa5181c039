"""SAEs on disk in SAELens's format: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

``cfg.json`` carries SAELens's inference fields (``architecture`` in SAELens's vocabulary: "standard"
for relu, "topk", "jumprelu" — a trained BatchTopK SAE is saved as a JumpReLU SAE with its global
threshold, as SAELens does — plus ``d_in``, ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``,
``normalize_activations`` and ``k`` where relevant), so SAELens's ``SAE.load_from_disk`` reads the
folder. dictlab's own configs sit under the key ``"dictlab"``, which SAELens ignores:
``{"format": 2, "kind": "sae", "sae": <the architecture's config>, "train": <TrainConfig>}``. Format 1
stored one flat config with every architecture's fields; it loads with the fields of its architecture's
config class kept. The SAELens fields must agree with the dictlab block (architecture, d_in, d_sae, k).
A folder written by SAELens (no ``"dictlab"`` key) of architecture standard, topk or jumprelu loads
here too. The MP-SAE is saved with architecture "mp" and only ``W_dec``, ``b_dec``; SAELens cannot load it.

Only JSON and safetensors are read, never a pickle; every malformed input raises a one-line ValueError
naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dictlab.config import parse_config
from dictlab.models.io import MODEL_FORMATS, ModelFormat, read_json, read_safetensors
from dictlab.sae.base import SAE_ARCHITECTURES, SparseAutoencoder, read_saved_configs, sae_config_class
from dictlab.sae.config import SAEConfig, TrainConfig

SAELENS_CONFIG_FILE = "cfg.json"
SAELENS_WEIGHTS_FILE = "sae_weights.safetensors"
DICTLAB_KEY = "dictlab"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: one flat SAE config for every architecture, before configs were per architecture

# SAELens architecture name -> dictlab architecture, for folders SAELens wrote.
FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
# SAELens architectures whose cfg.json has no k (a BatchTopK SAE is saved as a JumpReLU one, threshold and all).
SAELENS_WITHOUT_K = ("standard", "jumprelu")


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
    if "k" in type(sae.cfg).model_fields and sae.saelens_architecture not in SAELENS_WITHOUT_K:
        cfg["k"] = sae.cfg.k  # type: ignore[attr-defined]
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


def read_configs(cfg: dict[str, Any], source: Path) -> tuple[SAEConfig, TrainConfig | None]:
    """The SAE and training configs stored in, or implied by, an SAELens cfg.json read from ``source``."""
    own = cfg.get(DICTLAB_KEY)
    if own is None:
        return from_saelens(cfg, source), None
    if not isinstance(own, dict) or own.get("format") not in READABLE_FORMATS:
        raise ValueError(
            f"{source}: the {DICTLAB_KEY!r} entry is not a dictlab SAE config (an object with format "
            f"{' or '.join(map(str, READABLE_FORMATS))})"
        )
    if "sae" not in own:
        raise ValueError(f"{source}: the {DICTLAB_KEY!r} entry has no 'sae' config")
    flat = own["format"] == 1
    sae_config, train_config = read_saved_configs(own, flat=flat, where=str(source), prefix=f"{DICTLAB_KEY}.")
    check_agreement(cfg, sae_config, source)
    return sae_config, train_config


def check_agreement(cfg: dict[str, Any], sae_config: SAEConfig, source: Path) -> None:
    """ValueError when a SAELens field of cfg.json disagrees with the dictlab block's SAE config."""
    ours = {**sae_config.model_dump(), "architecture": SAE_ARCHITECTURES[sae_config.architecture].saelens_architecture}
    for name in ("architecture", "d_in", "d_sae", "k"):
        if name in cfg and name in ours and cfg[name] != ours[name]:
            theirs = f"dictlab.sae.{name}={ours[name]!r}"
            if name == "architecture":
                theirs = f"dictlab.sae.architecture={sae_config.architecture!r} (saved by SAELens as {ours[name]!r})"
            raise ValueError(f"{source}: SAELens field {name}={cfg[name]!r} disagrees with {theirs}")


def from_saelens(cfg: dict[str, Any], source: Path) -> SAEConfig:
    """The SAE config of a cfg.json written by SAELens itself (no dictlab block)."""
    architecture = cfg.get("architecture")
    if architecture not in FROM_SAELENS:
        raise ValueError(
            f"{source}: unknown SAE architecture {architecture!r}; SAELens folders of architecture "
            f"{', '.join(sorted(FROM_SAELENS))} can be loaded"
        )
    if cfg.get("apply_b_dec_to_input", True) is not True:
        raise ValueError(f"{source}: apply_b_dec_to_input=false is not supported (dictlab encodes y − b_dec)")
    if cfg.get("normalize_activations", "none") != "none":
        normalize = cfg["normalize_activations"]
        raise ValueError(f"{source}: normalize_activations={normalize!r} is not supported; use 'none'")
    if cfg.get("rescale_acts_by_decoder_norm", False):
        raise ValueError(f"{source}: rescale_acts_by_decoder_norm=true is not supported; fold the decoder norms first")
    config_class = sae_config_class(FROM_SAELENS[architecture])
    fields = {name: cfg[name] for name in ("d_in", "d_sae", "k") if name in config_class.model_fields and name in cfg}
    return parse_config(config_class, {"architecture": FROM_SAELENS[architecture], **fields}, where=str(source))


def load_sae(folder: str | Path, device: torch.device | str = "cpu") -> SparseAutoencoder:
    """Load an SAE folder written by ``save_sae`` (or by SAELens); malformed files raise ValueError."""
    path = Path(folder)
    if not path.is_dir():
        files = f"{SAELENS_CONFIG_FILE} and {SAELENS_WEIGHTS_FILE}"
        raise ValueError(f"{path} is not a folder; an SAE is a folder with {files}")
    sae_config, train_config = read_configs(read_json(path / SAELENS_CONFIG_FILE), path / SAELENS_CONFIG_FILE)
    tensors = read_safetensors(path / SAELENS_WEIGHTS_FILE)
    try:
        sae = SparseAutoencoder.from_configs(sae_config, train_config, tensors)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return sae.to(device)


MODEL_FORMATS.register("saelens")(ModelFormat("saelens", SAELENS_CONFIG_FILE, load_sae))
