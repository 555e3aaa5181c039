"""One registry from architecture name to SAE class and config class; methods and k follow from it.

Adding an architecture is one module: the soft-threshold SAE below (config, class, registration) trains,
logs its own loss term, saves and loads without any other file knowing about it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from pydantic import Field

import dictlab.sae.config
from dictlab.methods import METHODS, Problem, build_method
from dictlab.models import FitContext, load_model
from dictlab.sae import (
    SAE_ARCHITECTURES,
    SAELENS_CONFIG_FILE,
    LossTerms,
    SAEConfig,
    SparseAutoencoder,
    TrainConfig,
    make_sae,
    parse_sae_config,
    sae_config_class,
)


def problem(k: int | None = 3) -> Problem:
    """Sizes every architecture can be built for: targets (transcoders) and two sources (crosscoders) included."""
    return Problem(num_latents=20, k=k, input_dim=8, ground_truth=torch.randn(20, 8), target_dim=8, sources=(4, 4))


def data_shape(name: str) -> dict[str, Any]:
    """The sizes ``problem()`` gives the config of architecture ``name``."""
    fields = sae_config_class(name).model_fields
    return {
        "d_in": 8,
        "d_sae": 20,
        **({"k": 3} if "k" in fields else {}),
        **({"d_out": 8} if "d_out" in fields else {}),
        **({"source_dims": [4, 4]} if "source_dims" in fields else {}),
    }


def test_every_entry_names_its_config_class_and_description() -> None:
    for name in SAE_ARCHITECTURES:
        cls = SAE_ARCHITECTURES[name]
        assert issubclass(cls, SparseAutoencoder) and cls.architecture == name
        assert issubclass(cls.config_class, SAEConfig) and sae_config_class(name) is cls.config_class
        assert cls.config_class.model_fields["architecture"].default == name  # a saved config names its class
        assert cls.description and "\n" not in cls.description
        assert {"d_in", "d_sae", "architecture"} <= set(cls.config_class.model_fields)


def test_the_base_config_has_only_what_every_sae_has() -> None:
    assert list(SAEConfig.model_fields) == ["d_in", "d_sae", "architecture"]
    assert not hasattr(dictlab.sae.config, "K_ARCHITECTURES")


def test_an_unknown_architecture_lists_the_allowed_ones() -> None:
    allowed = ", ".join(SAE_ARCHITECTURES.names())
    with pytest.raises(ValueError, match=f"unknown SAE architecture 'gated'; allowed: {allowed}$"):
        sae_config_class("gated")
    with pytest.raises(ValueError, match=f"unknown SAE architecture 'gated'; allowed: {allowed}$"):
        make_sae(SAEConfig(d_in=4, d_sae=8, architecture="gated"))
    message = f"^where: sae.architecture: unknown SAE architecture 'gated'; allowed: {allowed}$"
    with pytest.raises(ValueError, match=message):
        parse_sae_config({"architecture": "gated", "d_in": 4, "d_sae": 8}, where="where", prefix="sae.")


def test_parse_sae_config_builds_the_class_the_values_name() -> None:
    for name in SAE_ARCHITECTURES:
        cls = sae_config_class(name)
        values = {"architecture": name, **data_shape(name)}
        config = parse_sae_config(values)
        assert type(config) is cls and config.model_dump() == cls(**values).model_dump()
        assert parse_sae_config(config.model_dump()) == config  # a saved config reads back as itself


def takes_k(name: str) -> bool:
    return "k" in sae_config_class(name).model_fields


@pytest.mark.parametrize("name", SAE_ARCHITECTURES.names())
def test_k_architectures_are_those_whose_config_has_k(name: str) -> None:
    """The problem's k reaches exactly the configs with a field k; nothing else lists them."""
    sae = build_method(f"sae_{name}", problem(k=3))
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (8, 20)
    if takes_k(name):
        assert sae.cfg.k == 3
        assert build_method(f"sae_{name}", problem(k=3), {"k": 5}).cfg.k == 5
        sizes = {key: value for key, value in data_shape(name).items() if key != "k"}
        with pytest.raises(ValueError, match=r"k\n.*Field required|k is required with activation='topk'"):
            sae_config_class(name)(**sizes)
        with pytest.raises(ValueError, match="k=21 must be at most d_sae=20"):
            sae_config_class(name)(**sizes, k=21)
    else:
        assert not hasattr(sae.cfg, "k")
        with pytest.raises(ValueError, match=f"method sae_{name}: unknown parameter.*k"):
            build_method(f"sae_{name}", problem(k=3), {"k": 5})


@pytest.mark.parametrize("name", SAE_ARCHITECTURES.names())
def test_data_without_k_need_k_only_where_the_config_has_it(name: str) -> None:
    no_k = problem(k=None)
    if takes_k(name):
        with pytest.raises(ValueError, match=f"method sae_{name} takes its sparsity from the data's k"):
            build_method(f"sae_{name}", no_k)
        for recipe in ("dictlab", "study"):
            assert build_method(f"sae_{name}", no_k, {"k": 4}, recipe=recipe).cfg.k == 4
    else:
        assert build_method(f"sae_{name}", no_k).cfg.d_sae == 20


def test_one_method_per_architecture_with_the_class_description() -> None:
    sae_methods = [name for name in METHODS.names() if name.startswith("sae_")]
    assert sae_methods == [
        "sae_batchtopk",
        "sae_crosscoder",
        "sae_jumprelu",
        "sae_matryoshka_batchtopk",
        "sae_mp",
        "sae_relu",
        "sae_topk",
        "sae_transcoder",
    ]
    assert sae_methods == [f"sae_{name}" for name in SAE_ARCHITECTURES]
    for name in SAE_ARCHITECTURES:
        assert METHODS[f"sae_{name}"].description == SAE_ARCHITECTURES[name].description


@pytest.mark.parametrize("name", SAE_ARCHITECTURES.names())
def test_study_recipe_uses_each_class_study_settings(name: str) -> None:
    study = build_method(f"sae_{name}", problem(), {}, recipe="study")
    cls = sae_config_class(name)
    shape = data_shape(name)
    assert study.cfg == cls.study(**shape)
    assert study.train_config == TrainConfig.study()
    assert build_method(f"sae_{name}", problem()).cfg == cls(**shape)


def test_sizes_cannot_be_overridden_but_the_width_can() -> None:
    for field in ("d_in", "architecture"):
        with pytest.raises(ValueError, match=f"method sae_relu: {field} follow"):
            build_method("sae_relu", problem(), {field: 4})
    assert build_method("sae_relu", problem(), {"d_sae": 4}).dictionary.shape[0] == 4


# --- a new architecture, defined here and nowhere else ------------------------------------------------------


class SoftThresholdSAEConfig(SAEConfig):
    architecture: Literal["softthreshold"] = "softthreshold"
    threshold: float = Field(0.05, ge=0, description="θ: codes are ReLU(pre − θ).")
    l1_coefficient: float = Field(1e-3, ge=0, description="Weight of the L1 penalty mean_b Σ_j z_j.")


class SoftThresholdSAE(SparseAutoencoder):
    architecture = "softthreshold"
    config_class = SoftThresholdSAEConfig
    description = "SAE with a fixed soft threshold (a test architecture)"
    saelens_architecture = "softthreshold"
    cfg: SoftThresholdSAEConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre - self.cfg.threshold)

    def loss_terms(self, y: torch.Tensor, reconstruction: torch.Tensor, codes: torch.Tensor) -> LossTerms:
        l1 = self.cfg.l1_coefficient * codes.sum(dim=1).mean()
        return {**super().loss_terms(y, reconstruction, codes), "l1_loss": l1}


@pytest.fixture
def soft_threshold() -> Iterator[type[SparseAutoencoder]]:
    """Registered for one test only, so that the registry (and METHODS, built at import) stay as shipped."""
    SAE_ARCHITECTURES.register("softthreshold")(SoftThresholdSAE)
    try:
        yield SoftThresholdSAE
    finally:
        SAE_ARCHITECTURES.remove("softthreshold")


def test_a_new_architecture_is_one_class_and_one_config(soft_threshold: Any, tmp_path: Path) -> None:
    assert sae_config_class("softthreshold") is SoftThresholdSAEConfig
    g = torch.Generator().manual_seed(0)
    y = torch.relu(torch.randn(300, 6, generator=g)) @ torch.randn(6, 6, generator=g)
    config = parse_sae_config({"architecture": "softthreshold", "d_in": 6, "d_sae": 12, "l1_coefficient": 0.01})
    sae = make_sae(config, TrainConfig(n_steps=60, batch_size=50, log_every=20)).fit(y, FitContext(seed=1))
    assert isinstance(sae, SoftThresholdSAE)
    history = sae.history
    assert list(history[0]) == ["step", "lr", "loss", "mse_loss", "l1_loss", "l0", "dead_latents"]
    assert history[-1]["mse_loss"] < history[0]["mse_loss"]
    assert all(r["loss"] == pytest.approx(r["mse_loss"] + r["l1_loss"], rel=1e-12) for r in history)
    pre = (y - sae.b_dec.detach()) @ sae.W_enc.detach() + sae.b_enc.detach()
    torch.testing.assert_close(sae.encode(y), torch.relu(pre - 0.05))

    sae.save(str(tmp_path))
    cfg = json.loads((tmp_path / SAELENS_CONFIG_FILE).read_text())
    assert cfg["architecture"] == "softthreshold" and "k" not in cfg
    assert cfg["dictlab"]["sae"] == {
        "d_in": 6,
        "d_sae": 12,
        "architecture": "softthreshold",
        "threshold": 0.05,
        "l1_coefficient": 0.01,
    }
    loaded = load_model(tmp_path)
    assert isinstance(loaded, SoftThresholdSAE) and loaded.cfg == sae.cfg
    torch.testing.assert_close(loaded.encode(y), sae.encode(y), rtol=0, atol=0)


def test_the_test_architecture_is_gone_afterwards() -> None:
    assert "softthreshold" not in SAE_ARCHITECTURES
