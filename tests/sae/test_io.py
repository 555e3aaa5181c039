"""SAEs saved in SAELens's format: round trips, the cfg.json vocabulary, and malformed folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dictlab.models import load_model
from dictlab.sae import SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE, SAEConfig, SparseAutoencoder, TrainConfig, load_sae, make_sae

ARCHITECTURES = ["relu", "topk", "batchtopk", "jumprelu", "mp"]
SAELENS_NAMES = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu", "mp": "mp"}


def trained(architecture: str) -> SparseAutoencoder:
    g = torch.Generator().manual_seed(1)
    y = torch.rand(200, 10, generator=g) @ torch.randn(10, 10, generator=g)
    config = SAEConfig(d_in=10, d_sae=16, architecture=architecture, k=3)
    return make_sae(config, TrainConfig(n_steps=20, batch_size=50)).fit(y)


@pytest.fixture(scope="module")
def saved_relu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("relu")
    trained("relu").save(str(folder))
    return folder


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_save_load_round_trip(architecture: str, tmp_path: Path) -> None:
    sae = trained(architecture)
    sae.save(str(tmp_path))
    loaded = load_model(tmp_path)
    assert isinstance(loaded, type(sae)) and loaded.cfg == sae.cfg and loaded.train_config == sae.train_config
    y = torch.randn(30, 10)
    codes = sae.encode(y)
    torch.testing.assert_close(loaded.encode(y), codes, rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode(codes), sae.decode(codes), rtol=0, atol=0)
    assert loaded.training is False


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_folder_speaks_saelens(architecture: str, tmp_path: Path) -> None:
    sae = trained(architecture)
    sae.save(str(tmp_path))
    cfg = json.loads((tmp_path / SAELENS_CONFIG_FILE).read_text())
    assert cfg["architecture"] == SAELENS_NAMES[architecture]
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["device"]) == (10, 16, "float32", "cpu")
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg.get("k") == (3 if architecture in ("topk", "mp") else None)
    assert cfg["dictlab"]["sae"]["architecture"] == architecture
    tensors = load_file(str(tmp_path / SAELENS_WEIGHTS_FILE))
    expected = {"W_dec": (16, 10), "b_dec": (10,)}
    if architecture != "mp":
        expected |= {"W_enc": (10, 16), "b_enc": (16,)}
    if architecture in ("jumprelu", "batchtopk"):
        expected["threshold"] = (16,)
    assert {name: tuple(t.shape) for name, t in tensors.items()} == expected
    if architecture == "jumprelu":
        torch.testing.assert_close(tensors["threshold"], sae.log_threshold.detach().exp())


def test_saelens_folder_without_dictlab_entry_loads(saved_relu: Path, tmp_path: Path) -> None:
    cfg = json.loads((saved_relu / SAELENS_CONFIG_FILE).read_text())
    del cfg["dictlab"]
    (tmp_path / SAELENS_CONFIG_FILE).write_text(json.dumps(cfg))
    tensors = load_file(str(saved_relu / SAELENS_WEIGHTS_FILE))
    save_file(tensors, str(tmp_path / SAELENS_WEIGHTS_FILE))
    sae = load_sae(tmp_path)
    assert sae.architecture == "relu"
    y = torch.randn(5, 10)
    expected = torch.relu((y - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"])
    torch.testing.assert_close(sae.encode(y), expected)


def corrupt(source: Path, target: Path, cfg_edit=None, tensors_edit=None, cfg_text: str | None = None) -> Path:
    cfg = json.loads((source / SAELENS_CONFIG_FILE).read_text())
    tensors = load_file(str(source / SAELENS_WEIGHTS_FILE))
    if cfg_edit:
        cfg_edit(cfg)
    if tensors_edit:
        tensors_edit(tensors)
    (target / SAELENS_CONFIG_FILE).write_text(cfg_text if cfg_text is not None else json.dumps(cfg))
    save_file(tensors, str(target / SAELENS_WEIGHTS_FILE))
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"cfg_text": "{not json"}, "not a readable JSON"),
        ({"cfg_text": "[1, 2]"}, "must hold a JSON object"),
        ({"cfg_edit": lambda c: c.pop("dictlab") and c.update(architecture="gated")}, "unknown SAE architecture 'gated'"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(architecture="gated")}, "unknown SAE architecture 'gated'"),
        ({"cfg_edit": lambda c: c["dictlab"].update(format=99)}, "not a dictlab SAE config"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(d_sae="many")}, "d_sae"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(unknown_field=1)}, "unknown_field"),
        ({"cfg_edit": lambda c: c.pop("dictlab") and c.update(apply_b_dec_to_input=False)}, "apply_b_dec_to_input"),
        ({"tensors_edit": lambda t: t.pop("b_enc")}, r"missing \['b_enc'\]"),
        ({"tensors_edit": lambda t: t.update(extra=torch.zeros(3))}, r"unexpected \['extra'\]"),
        ({"tensors_edit": lambda t: t.update(W_dec=torch.zeros(16, 11))}, r"'W_dec' must have shape \(16, 10\)"),
        ({"tensors_edit": lambda t: t.update(b_dec=torch.full((10,), float("nan")))}, "'b_dec' must be finite"),
        ({"tensors_edit": lambda t: t.update(b_dec=torch.zeros(10, dtype=torch.int32))}, "'b_dec' must be finite floating"),
    ],
)
def test_malformed_folders_raise_value_error(saved_relu: Path, tmp_path: Path, edit: dict, message: str) -> None:
    corrupt(saved_relu, tmp_path, **edit)
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path)


def test_broken_or_missing_weights_file(saved_relu: Path, tmp_path: Path) -> None:
    (tmp_path / SAELENS_CONFIG_FILE).write_text((saved_relu / SAELENS_CONFIG_FILE).read_text())
    with pytest.raises(ValueError, match="missing weights file"):
        load_sae(tmp_path)
    (tmp_path / SAELENS_WEIGHTS_FILE).write_bytes(b"\x00\x01 not safetensors")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_sae(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        load_sae(tmp_path / "nowhere")


def test_negative_jumprelu_threshold_is_rejected(tmp_path: Path) -> None:
    source = tmp_path / "source"
    trained("jumprelu").save(str(source))
    target = tmp_path / "target"
    target.mkdir()
    corrupt(source, target, tensors_edit=lambda t: t.update(threshold=-t["threshold"]))
    with pytest.raises(ValueError, match="'threshold' of a JumpReLU SAE must be >= 0"):
        load_sae(target)


def test_generic_dictlab_format_round_trip(tmp_path: Path) -> None:
    from dictlab.models import save_model

    sae = trained("jumprelu")
    save_model(sae, tmp_path)
    loaded = load_model(tmp_path)
    y = torch.randn(30, 10)
    torch.testing.assert_close(loaded.encode(y), sae.encode(y), rtol=0, atol=0)
