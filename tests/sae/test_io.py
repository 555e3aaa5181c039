"""SAEs saved in SAELens's format: round trips, the cfg.json vocabulary, and malformed folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dictlab.models import load_model
from dictlab.sae import (
    SAELENS_CONFIG_FILE,
    SAELENS_WEIGHTS_FILE,
    SparseAutoencoder,
    TrainConfig,
    load_sae,
    make_sae,
    sae_config_class,
)

ARCHITECTURES = ["relu", "topk", "batchtopk", "jumprelu", "mp"]
SAELENS_NAMES = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu", "mp": "mp"}


def trained(architecture: str) -> SparseAutoencoder:
    g = torch.Generator().manual_seed(1)
    y = torch.rand(200, 10, generator=g) @ torch.randn(10, 10, generator=g)
    cls = sae_config_class(architecture)
    config = cls(d_in=10, d_sae=16, **({"k": 3} if "k" in cls.model_fields else {}))
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
    assert cfg["dictlab"]["format"] == 2 and cfg["dictlab"]["kind"] == "sae"
    assert cfg["dictlab"]["sae"] == sae.cfg.model_dump()  # the architecture's own fields, no others
    assert set(cfg["dictlab"]["sae"]) == set(type(sae.cfg).model_fields)
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
        ({"cfg_edit": lambda c: c.pop("dictlab") and c.update(architecture="gated")}, "unknown SAE architecture 'ga"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(architecture="gated")}, "unknown SAE architecture 'gated'"),
        ({"cfg_edit": lambda c: c["dictlab"].update(format=99)}, "not a dictlab SAE config"),
        ({"cfg_edit": lambda c: c.update(dictlab=[1])}, "not a dictlab SAE config"),
        ({"cfg_edit": lambda c: c["dictlab"].pop("sae")}, "has no 'sae' config"),
        ({"cfg_edit": lambda c: c["dictlab"].update(sae=[1, 2])}, r"cfg.json: dictlab.sae must be a table of fields"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].pop("architecture")}, r"dictlab.sae.architecture is missing"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(architecture=3)}, r"dictlab.sae.architecture: .*string"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(d_sae="many")}, r"cfg.json: dictlab.sae.d_sae='many': "),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(l1_coefficient=True)}, r"dictlab.sae.l1_coefficient=True"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(unknown_field=1)}, r"dictlab.sae.unknown_field: unknown"),
        ({"cfg_edit": lambda c: c["dictlab"]["sae"].update(k=3)}, r"dictlab.sae.k: unknown field 'k'"),  # relu has none
        ({"cfg_edit": lambda c: c["dictlab"]["train"].update(lr="fast")}, r"cfg.json: dictlab.train.lr='fast'"),
        ({"cfg_edit": lambda c: c.pop("dictlab") and c.update(apply_b_dec_to_input=False)}, "apply_b_dec_to_input"),
        ({"tensors_edit": lambda t: t.pop("b_enc")}, r"missing \['b_enc'\]"),
        ({"tensors_edit": lambda t: t.update(extra=torch.zeros(3))}, r"unexpected \['extra'\]"),
        ({"tensors_edit": lambda t: t.update(W_dec=torch.zeros(16, 11))}, r"'W_dec' must have shape \(16, 10\)"),
        ({"tensors_edit": lambda t: t.update(b_dec=torch.full((10,), float("nan")))}, "'b_dec' must be finite"),
        ({"tensors_edit": lambda t: t.update(b_dec=torch.zeros(10, dtype=torch.int32))}, "'b_dec' must be finite fl"),
    ],
)
def test_malformed_folders_raise_value_error(saved_relu: Path, tmp_path: Path, edit: dict, message: str) -> None:
    corrupt(saved_relu, tmp_path, **edit)
    with pytest.raises(ValueError, match=message) as raised:
        load_model(tmp_path)
    assert "\n" not in str(raised.value)


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


# The flat SAE config every architecture shared in cfg.json format 1 (dictlab before per-architecture configs).
FORMAT_1_DEFAULTS = {
    "k": None,
    "l1_coefficient": 3e-3,
    "l0_coefficient": 1e-3,
    "jumprelu_bandwidth": 1e-2,
    "jumprelu_init_threshold": 0.1,
    "topk_threshold_lr": 0.01,
    "mp_absolute": False,
    "mp_allow_reselect": True,
}


@pytest.mark.parametrize(
    ("architecture", "fields", "expected"),
    [
        ("relu", {"l1_coefficient": 0.02}, {"l1_coefficient": 0.02}),
        ("topk", {"k": 3}, {"k": 3}),
        (
            "jumprelu",
            {"jumprelu_bandwidth": 0.5},
            {"l0_coefficient": 1e-3, "jumprelu_bandwidth": 0.5, "jumprelu_init_threshold": 0.1},
        ),
        ("mp", {"k": 3, "mp_absolute": True}, {"k": 3, "mp_absolute": True, "mp_allow_reselect": True}),
    ],
)
def test_a_format_1_folder_loads_with_its_architectures_fields(
    architecture: str, fields: dict, expected: dict, tmp_path: Path
) -> None:
    source = trained(architecture)
    tensors = {name: t.detach().contiguous() for name, t in source.tensors().items()}
    save_file(tensors, str(tmp_path / SAELENS_WEIGHTS_FILE))
    flat = {"d_in": 10, "d_sae": 16, "architecture": architecture, **FORMAT_1_DEFAULTS, **fields}
    cfg = {
        "architecture": {"relu": "standard"}.get(architecture, architecture),
        "d_in": 10,
        "d_sae": 16,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        **({"k": 3} if "k" in fields else {}),
        "dictlab": {"format": 1, "kind": "sae", "sae": flat, "train": {"n_steps": 20, "batch_size": 50}},
    }
    (tmp_path / SAELENS_CONFIG_FILE).write_text(json.dumps(cfg))
    loaded = load_model(tmp_path)
    assert type(loaded) is type(source)
    config = sae_config_class(architecture)(d_in=10, d_sae=16, **expected)
    assert loaded.cfg == config
    assert loaded.train_config == TrainConfig(n_steps=20, batch_size=50)
    y = torch.randn(20, 10)
    reference = SparseAutoencoder.from_configs(config, None, tensors)
    torch.testing.assert_close(loaded.encode(y), reference.encode(y), rtol=0, atol=0)


def test_a_format_1_folder_with_a_bad_architecture_is_refused(saved_relu: Path, tmp_path: Path) -> None:
    def to_format_1(cfg: dict) -> None:
        cfg["dictlab"] = {"format": 1, "kind": "sae", "sae": {**cfg["dictlab"]["sae"], "architecture": "gated"}}

    corrupt(saved_relu, tmp_path, cfg_edit=to_format_1)
    with pytest.raises(ValueError, match=r"cfg.json: dictlab.sae.architecture: unknown SAE architecture 'gated'; all"):
        load_sae(tmp_path)


def test_a_flat_config_in_dictlabs_own_format_still_loads(tmp_path: Path) -> None:
    """Folders saved by ``save_model`` before configs were per architecture hold the flat config too."""
    from dictlab.models import save_model

    sae = trained("topk")
    save_model(sae, tmp_path)
    header = json.loads((tmp_path / "config.json").read_text())
    header["config"]["sae"] = {**FORMAT_1_DEFAULTS, **header["config"]["sae"]}
    (tmp_path / "config.json").write_text(json.dumps(header))
    loaded = load_model(tmp_path)
    assert loaded.cfg == sae.cfg
    header["config"]["sae"]["typo"] = 1  # not the flat config any more: strict again
    (tmp_path / "config.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match=r"cannot rebuild a 'sae' model: sae\.\w+: unknown field"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("architecture", "field", "value", "message"),
    [
        ("relu", "d_sae", 20, "field d_sae=20 disagrees with dictlab.sae.d_sae=16"),
        ("relu", "d_in", 9, "field d_in=9 disagrees with dictlab.sae.d_in=10"),
        (
            "relu",
            "architecture",
            "topk",
            r"field architecture='topk' disagrees with dictlab.sae.architecture='relu' "
            r"\(saved by SAELens as 'standard'\)",
        ),
        (
            "batchtopk",
            "architecture",
            "topk",
            r"field architecture='topk' disagrees with dictlab.sae.architecture='batchtopk' "
            r"\(saved by SAELens as 'jumprelu'\)",
        ),
        ("topk", "k", 4, "field k=4 disagrees with dictlab.sae.k=3"),
        ("mp", "k", 2, "field k=2 disagrees with dictlab.sae.k=3"),
    ],
)
def test_a_cfg_json_whose_saelens_fields_disagree_with_dictlabs_is_refused(
    architecture: str, field: str, value: object, message: str, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    trained(architecture).save(str(source))
    target = tmp_path / "target"
    target.mkdir()
    corrupt(source, target, cfg_edit=lambda c: c.update({field: value}))
    with pytest.raises(ValueError, match=f"cfg.json: SAELens {message}"):
        load_sae(target)


def test_saelens_topk_and_jumprelu_folders_without_dictlab_entry_load(tmp_path: Path) -> None:
    for architecture in ("topk", "jumprelu"):
        source, folder = tmp_path / f"{architecture}-source", tmp_path / architecture
        sae = trained(architecture)
        sae.save(str(source))
        folder.mkdir()
        corrupt(source, folder, cfg_edit=lambda c: c.pop("dictlab"))
        loaded = load_sae(folder)
        assert loaded.architecture == architecture and loaded.train_config == TrainConfig()
        fields = {"k": 3} if architecture == "topk" else {}
        assert loaded.cfg == sae_config_class(architecture)(d_in=10, d_sae=16, **fields)
        y = torch.randn(20, 10)
        torch.testing.assert_close(loaded.encode(y), sae.encode(y), rtol=0, atol=0)
    corrupt(tmp_path / "topk-source", tmp_path / "topk", cfg_edit=lambda c: c.pop("dictlab") and c.pop("k"))
    with pytest.raises(ValueError, match=r"cfg.json: k: Field required"):
        load_sae(tmp_path / "topk")


def test_loading_never_unpickles(saved_relu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_sae(saved_relu)
    assert loaded.architecture == "relu"
