"""The untrained floor: a random unit dictionary drawn from the fit's own stream, FISTA codes on it."""

from __future__ import annotations

import torch

from dictlab.data import make_compositional, random_unit_dictionary
from dictlab.experiments import run_method
from dictlab.methods import Problem, build_method
from dictlab.models import FitContext, load_model, save_model


def test_the_dictionary_comes_from_the_fits_stream_not_the_datas_seed(tmp_path) -> None:
    problem = Problem(num_latents=20, k=3, input_dim=10, ground_truth=torch.zeros(20, 10))
    y = torch.randn(50, 10)
    first = build_method("random_dictionary", problem).fit(y, FitContext(seed=0))
    again = build_method("random_dictionary", problem).fit(y, FitContext(seed=0))
    other = build_method("random_dictionary", problem).fit(y, FitContext(seed=1))
    assert torch.equal(first.dictionary, again.dictionary)
    assert not torch.equal(first.dictionary, other.dictionary)
    assert torch.allclose(first.dictionary.norm(dim=1), torch.ones(20))
    # the data generator's own draw from seed 0 is not replayed
    assert not torch.allclose(first.dictionary, random_unit_dictionary(20, 10, torch.Generator().manual_seed(0)))
    save_model(first, tmp_path / "floor")
    assert torch.equal(load_model(tmp_path / "floor").encode(y), first.encode(y))


def test_the_floor_scores_far_below_the_oracle_and_near_its_chance() -> None:
    data = make_compositional(num_latents=40, k=3, n_samples=1000, seed=0)
    floor = run_method("random_dictionary", data, seed=0).metrics
    oracle = run_method("fista_oracle", data, seed=0).metrics
    assert oracle["mcc_ood"] > 0.95
    assert floor["mcc_ood"] < 0.6 * oracle["mcc_ood"]
    assert floor["dict_mean_cosine"] < 0.6
