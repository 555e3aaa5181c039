"""Shared tiny problems for the surgery tests: p = 30 latents, k = 3, 600 ID samples."""

from __future__ import annotations

import pytest
import torch

from dictlab.data import GroundTruthDataset, make_compositional
from dictlab.experiments import fit_method
from dictlab.experiments.runs import RunSpec
from dictlab.experiments.tasks import TaskContext
from dictlab.models import DictionaryModel

TINY = {"num_latents": 30, "k": 3, "n_samples": 600}
SAE_OVERRIDES = {"n_steps": 100}


@pytest.fixture(scope="session")
def data() -> GroundTruthDataset:
    return make_compositional(**TINY, seed=0)


@pytest.fixture(scope="session")
def data64() -> GroundTruthDataset:
    return make_compositional(**TINY, seed=1, dtype=torch.float64)


@pytest.fixture(scope="session")
def sae(data: GroundTruthDataset) -> DictionaryModel:
    return fit_method("sae_topk", data, seed=0, overrides=SAE_OVERRIDES)


def spec(task: str, **params: object) -> RunSpec:
    return RunSpec(experiment="test", task=task, data=TINY, seed=0, params=params)


def context() -> TaskContext:
    return TaskContext(seed=0)
