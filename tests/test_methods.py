"""Every registered method: builds from its name, fits on tiny data, round-trips through save/load."""

from __future__ import annotations

import pytest
import torch

from dictlab.data import make_compositional
from dictlab.experiments import encode_splits, fit_method, score_codes
from dictlab.methods import METHODS, Problem, build_method
from dictlab.models import load_model

# Short schedules so that the whole file runs in seconds; the defaults are exercised by the benchmarks.
FAST = {
    "sae_relu": {"n_steps": 40},
    "sae_topk": {"n_steps": 40},
    "sae_batchtopk": {"n_steps": 40},
    "sae_jumprelu": {"n_steps": 40},
    "sae_mp": {"n_steps": 40},
    "lista_oracle": {"epochs": 1},
    "dl_lista": {"epochs": 1, "max_rounds": 5},
    "dl_fista": {"max_rounds": 5},
    "softplus_adam": {"n_steps": 40},
}


@pytest.fixture(scope="module")
def data():
    return make_compositional(num_latents=30, k=3, n_samples=600, seed=1)


# Seed 004's models need data with targets (a transcoder) or several sources (a crosscoder): the bench gives both.
LRB_DATA = {
    "sae_transcoder": {"target_dim": 20},
    "sae_crosscoder": {"num_sources": 2},
}


def data_for(name, data):
    if name not in LRB_DATA:
        return data
    from dictlab.data import make_dataset

    fields = {"num_latents": 30, "input_dim": 24, "n_samples": 600, "eval_samples": 100, "sparsity": 0.9}
    return make_dataset({"generator": "lrb", **fields, **LRB_DATA[name]}, seed=1)


@pytest.mark.parametrize("name", METHODS.names())
def test_fit_save_load_gives_identical_outputs(name, data, tmp_path):
    torch.manual_seed(0)
    data = data_for(name, data)
    if data.k is None and "ood" not in data.splits:
        data = type(data)(data.config, data.seed, data.dictionary, {**data.splits, "ood": data["id"]}, 3,
                          data.hierarchy, data.target_dictionary, data.sources)  # fmt: skip
    model = fit_method(name, data, seed=0, overrides=FAST.get(name))
    codes = model.encode(data["ood"].y)
    assert codes.shape[0] == len(data["ood"]) and torch.isfinite(codes).all()
    assert model.encode(data["ood"].y[:0]).shape == (0, codes.shape[1])  # an empty batch: empty codes, every method
    # Bit-equality after loading is a law only when both copies have the same memory layout (a loaded tensor is
    # row-major; a column-major one from LAPACK would run other matmul kernels on some machines).
    strided = {key: tuple(t.stride()) for key, t in model.tensors().items() if not t.is_contiguous()}
    assert not strided, f"{name} keeps non-contiguous tensors {strided}"
    model.save(str(tmp_path / name))
    loaded = load_model(tmp_path / name)
    assert torch.equal(loaded.encode(data["ood"].y), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))


@pytest.mark.parametrize("name", METHODS.names())
def test_study_recipe_builds(name, data):
    build_method(name, Problem.of(data_for(name, data)), {"k": 3} if name in LRB_DATA else {}, recipe="study")


def test_unknown_recipe_and_method_are_named(data):
    with pytest.raises(ValueError, match="unknown recipe 'fast'; allowed: dictlab, study"):
        build_method("fista_oracle", Problem.of(data), {}, recipe="fast")
    with pytest.raises(ValueError, match="unknown method 'sae_nope'"):
        build_method("sae_nope", Problem.of(data), {})


def test_scores_separate_the_oracle_from_unrelated_codes(data):
    oracle = fit_method("fista_oracle", data, seed=0)
    codes = encode_splits(oracle, data)
    good = score_codes(oracle, data, codes, seed=0)
    assert good["mcc_ood"] > 0.95 and good["dict_mean_cosine"] > 0.999 and good["auc_ood"] > 0.95
    generator = torch.Generator().manual_seed(0)
    shuffled = {split: c[torch.randperm(c.shape[0], generator=generator)] for split, c in codes.items()}
    bad = score_codes(oracle, data, shuffled, seed=0)
    assert bad["mcc_ood"] < 0.3 and abs(bad["mcc_ood"] - bad["mcc_chance_ood"]) < 0.1
    assert good["mcc_chance_ood"] < 0.3


def test_dl_lista_reuses_the_dl_fista_fit_of_the_same_run(data, monkeypatch):
    from dictlab.learners.dl_fista import DLFista
    from dictlab.models import FitCache

    alone = fit_method("dl_lista", data, seed=0, overrides=FAST["dl_lista"])  # no cache: fits DL-FISTA itself
    fits = []
    original = DLFista.fit
    monkeypatch.setattr(DLFista, "fit", lambda self, y, context=None: fits.append(1) or original(self, y, context))
    cache = FitCache()
    dl = fit_method("dl_fista", data, seed=0, overrides=FAST["dl_fista"], cache=cache)
    shared = fit_method("dl_lista", data, seed=0, overrides=FAST["dl_lista"], cache=cache)
    assert len(fits) == 1 and len(cache) == 1
    assert torch.equal(shared.dictionary, dl.dictionary)
    # reuse changes nothing: the cached fit is exactly the one dl_lista would have made
    assert torch.equal(shared.dictionary, alone.dictionary)
    assert torch.equal(shared.encode(data["ood"].y), alone.encode(data["ood"].y))


def test_fit_cache_never_shares_across_seeds_settings_or_data(data):
    from dictlab.models import FitCache

    cache = FitCache()
    base = fit_method("dl_fista", data, seed=0, overrides={"max_rounds": 3}, cache=cache)
    other_seed = fit_method("dl_fista", data, seed=1, overrides={"max_rounds": 3}, cache=cache)
    other_config = fit_method("dl_fista", data, seed=0, overrides={"max_rounds": 4}, cache=cache)
    copy = make_compositional(num_latents=30, k=3, n_samples=600, seed=1)  # equal data, another tensor
    other_data = fit_method("dl_fista", copy, seed=0, overrides={"max_rounds": 3}, cache=cache)
    assert len(cache) == 3  # the last fit replaced the first's entry: same key, another observations tensor
    assert not torch.equal(other_seed.dictionary, base.dictionary)
    assert not torch.equal(other_config.dictionary, base.dictionary)
    assert other_data is not base and torch.equal(other_data.dictionary, base.dictionary)
    # models without a fit key (a given dictionary, an SAE) are always fitted afresh
    assert fit_method("sae_topk", data, seed=0, overrides={"n_steps": 5}, cache=cache) is not None and len(cache) == 3


def test_an_sae_width_may_differ_from_the_datas_latents_but_other_sizes_follow_the_data(data):
    problem = Problem.of(data)
    wide = build_method("sae_topk", problem, {"d_sae": 4 * problem.num_latents, "k": 3})
    assert tuple(wide.dictionary.shape) == (4 * problem.num_latents, problem.input_dim)
    assert tuple(build_method("sae_topk", problem, {"k": 3}).dictionary.shape) == (
        problem.num_latents,
        problem.input_dim,
    )
    with pytest.raises(ValueError, match=r"method sae_topk: d_in follow\(s\) from the data"):
        build_method("sae_topk", problem, {"d_in": 7, "k": 3})
    with pytest.raises(ValueError, match="method dl_fista: d_sae"):
        build_method("dl_fista", problem, {"d_sae": 7})


def test_methods_say_what_data_they_need_and_run_all_leaves_out_the_rest(data):
    sizes = data.sizes()  # one source, no targets
    assert not METHODS["sae_transcoder"].fits(sizes) and not METHODS["sae_crosscoder"].fits(sizes)
    assert METHODS["sae_matryoshka_batchtopk"].fits(sizes) and METHODS["dl_fista"].fits(sizes)
    assert METHODS["sae_transcoder"].fits(data_for("sae_transcoder", data).sizes())
    assert METHODS["sae_crosscoder"].fits(data_for("sae_crosscoder", data).sizes())
    from dictlab.cli import fitting_methods

    kept = fitting_methods({"num_latents": 20, "k": 3}, METHODS.names())
    assert "sae_transcoder" not in kept and "sae_crosscoder" not in kept and "sae_topk" in kept


def test_a_transcoder_logs_its_match_to_the_target_dictionary_along_training(data):
    lrb = data_for("sae_transcoder", data)
    model = fit_method("sae_transcoder", lrb, seed=0, overrides={"k": 3, "n_steps": 20}, track_dynamics=True)
    assert all(0.0 <= entry["mean_cosine"] <= 1.0 for entry in model.history)
