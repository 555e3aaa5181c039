"""SAEs on disk in SAELens's format: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

``cfg.json`` carries SAELens's inference fields (``architecture`` in SAELens's vocabulary: "standard"
for relu, "topk", "jumprelu" — a trained BatchTopK or Matryoshka BatchTopK SAE is saved as a JumpReLU SAE with
its global threshold, as SAELens does —, "transcoder" and "skip_transcoder" for ReLU transcoders — plus ``d_in``,
``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input`` (false for a transcoder, whose encoder reads its
inputs as they are), ``normalize_activations``, and ``k`` and ``d_out`` where relevant), so SAELens's
``SAE.load_from_disk`` reads the folder. dictlab's own configs sit under the key ``"dictlab"``, which SAELens
ignores: ``{"format": 2, "kind": "sae", "sae": <the architecture's config>, "train": <TrainConfig>}``. Format 1
stored one flat config with every architecture's fields; it loads with the fields of its architecture's
config class kept. The SAELens fields must agree with the dictlab block (architecture, d_in, d_sae, k, d_out,
apply_b_dec_to_input). A folder written by SAELens (no ``"dictlab"`` key) of architecture standard, topk,
jumprelu, transcoder or skip_transcoder loads here too. Architectures SAELens does not have are saved under
names it refuses rather than misreads: the MP-SAE as "mp" (only ``W_dec``, ``b_dec``), TopK transcoders as
"topk_transcoder" / "skip_topk_transcoder", crosscoders as "crosscoder" (ReLU) / "topk_crosscoder".

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
from dictlab.sae.crosscoder import CrosscoderConfig
from dictlab.sae.transcoder import TranscoderConfig

SAELENS_CONFIG_FILE = "cfg.json"
SAELENS_WEIGHTS_FILE = "sae_weights.safetensors"
DICTLAB_KEY = "dictlab"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: one flat SAE config for every architecture, before configs were per architecture

# SAELens architecture name -> (dictlab architecture, the config fields the name implies), for folders SAELens wrote.
FROM_SAELENS: dict[str, tuple[str, dict[str, Any]]] = {
    "standard": ("relu", {}),
    "topk": ("topk", {}),
    "jumprelu": ("jumprelu", {}),
    "transcoder": ("transcoder", {"activation": "relu"}),
    "skip_transcoder": ("transcoder", {"activation": "relu", "skip": True}),
}
# SAELens architectures whose cfg.json has no k (a BatchTopK SAE is saved as a JumpReLU one, threshold and all;
# ReLU transcoders and crosscoders have a k field only as the data's default).
SAELENS_WITHOUT_K = ("standard", "jumprelu", "transcoder", "skip_transcoder", "crosscoder")


def saelens_architecture(config: SAEConfig) -> str:
    """SAELens's architecture name for the SAE of ``config``: its class's ``saelens_architecture``, but for a
    transcoder or crosscoder the name says its activation and skip connection ("skip_topk_transcoder", …)."""
    if isinstance(config, TranscoderConfig | CrosscoderConfig):
        skip = "skip_" if isinstance(config, TranscoderConfig) and config.skip else ""
        topk = "topk_" if config.activation == "topk" else ""
        return f"{skip}{topk}{config.architecture}"
    return SAE_ARCHITECTURES[config.architecture].saelens_architecture


def saelens_shape(config: SAEConfig) -> dict[str, Any]:
    """The cfg.json fields that name and shape the SAE of ``config``: architecture, d_in, d_sae, d_out and k where
    the model has them, apply_b_dec_to_input (false where the encoder reads inputs in another space)."""
    architecture = saelens_architecture(config)
    fields: dict[str, Any] = {"architecture": architecture, "d_in": config.d_in, "d_sae": config.d_sae}
    if isinstance(config, TranscoderConfig):
        fields["d_out"] = config.d_out
    k = getattr(config, "k", None)
    if k is not None and architecture not in SAELENS_WITHOUT_K:
        fields["k"] = k
    fields["apply_b_dec_to_input"] = not SAE_ARCHITECTURES[config.architecture].predicts_target
    return fields


def saelens_config(sae: SparseAutoencoder) -> dict[str, Any]:
    """SAELens's inference cfg.json fields for ``sae``."""
    return {
        **saelens_shape(sae.cfg),
        "dtype": str(sae.W_dec.dtype).removeprefix("torch."),
        "device": str(sae.W_dec.device),
        "normalize_activations": "none",
    }


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
    ours = saelens_shape(sae_config)
    for name in ("architecture", "d_in", "d_sae", "k", "d_out", "apply_b_dec_to_input"):
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
    dictlab_architecture, implied = FROM_SAELENS[architecture]
    centred = not SAE_ARCHITECTURES[dictlab_architecture].predicts_target
    applied = cfg.get("apply_b_dec_to_input", centred)
    if applied is not centred:
        reads = "y − b_dec" if centred else "a transcoder's inputs as they are"
        raise ValueError(
            f"{source}: apply_b_dec_to_input={json.dumps(applied)} is not supported for {architecture} "
            f"(dictlab encodes {reads})"
        )
    if cfg.get("normalize_activations", "none") != "none":
        normalize = cfg["normalize_activations"]
        raise ValueError(f"{source}: normalize_activations={normalize!r} is not supported; use 'none'")
    if cfg.get("rescale_acts_by_decoder_norm", False):
        raise ValueError(f"{source}: rescale_acts_by_decoder_norm=true is not supported; fold the decoder norms first")
    config_class = sae_config_class(dictlab_architecture)
    sizes = ("d_in", "d_sae", "k", "d_out")
    fields = {name: cfg[name] for name in sizes if name in config_class.model_fields and name in cfg}
    return parse_config(config_class, {"architecture": dictlab_architecture, **implied, **fields}, where=str(source))


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
