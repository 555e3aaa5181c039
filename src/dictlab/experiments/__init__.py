"""Running methods on data: the evaluation protocol, single runs and one study point over seeds."""

from dictlab.experiments.evaluate import encode_splits, score_codes
from dictlab.experiments.single_run import RunResult, fit_method, problem_of, run_method, run_point
from dictlab.experiments.summary import summarise

__all__ = ["RunResult", "encode_splits", "fit_method", "problem_of", "run_method", "run_point", "score_codes", "summarise"]
