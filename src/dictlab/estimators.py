"""scikit-learn estimators for dictlab's methods: ``clone``, ``Pipeline``, ``GridSearchCV`` and numpy work.

Each estimator wraps one method of ``dictlab.methods`` (or, for ``SparseCoder``, a given dictionary with one
of ``dictlab.inference.solvers.SOLVERS``) as a scikit-learn transformer::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.linear_model import LogisticRegression
    from dictlab.estimators import DLFista

    pipe = make_pipeline(StandardScaler(), DLFista(n_components=64, lam=0.05), LogisticRegression())
    pipe.fit(X_train, labels_train).score(X_test, labels_test)

The contract is scikit-learn's, shapes batch first and atoms as rows as everywhere in dictlab:

* ``fit(X, y=None)`` learns from X (N, n_features) and ignores ``y``; dictlab's ``FitContext`` is built from
  ``random_state`` (an int seed; None means 0, so an estimator left at its defaults is reproducible), never
  taken from the second positional argument.
* ``transform(X)`` → codes (N, n_components), ``inverse_transform(Z)`` → (N, n_features) = ``Z @ components_ +
  offset_``; ``fit_transform`` as ``fit(X).transform(X)``.
* Fitted attributes: ``components_`` (n_components, n_features) numpy, atoms as rows (scikit-learn's
  ``DictionaryLearning`` convention); ``offset_`` (n_features,) (an SAE's ``b_dec``; zeros for the others);
  ``n_components_``; ``n_features_in_`` and ``feature_names_in_`` (scikit-learn's validation); ``model_``, the
  fitted ``dictlab.models.DictionaryModel`` (torch: ``model_.encode``, ``model_.save``, ``model_.history``).
* Inputs: numpy arrays (or anything ``sklearn.utils.check_array`` takes) and torch tensors (moved to the CPU).
  NaN/inf, complex, sparse or object data are refused by scikit-learn's own validation. Models compute on the
  CPU in the dtype of the training data — float32 stays float32, float64 stays float64 (every dictlab learner
  computes in its input's dtype; other dtypes become float64) — and outputs are numpy in that dtype (the
  ``preserves_dtype`` tag says so). ``SparseCoder`` computes in the dtype of each ``transform``'s X.

Parameters are flat: ``n_components`` (the number of atoms/latents; None: n_features, as scikit-learn's
``DictionaryLearning``), ``recipe`` where the method has recipes (``"dictlab"``: dictlab's fast defaults,
``"study"``: arXiv 2603.28744's settings), ``random_state``, and every hyperparameter field of the method's
config classes under the field's name, with the field's own default (generated from the classes' pydantic
``model_fields``; ``help(DLFista)`` lists them with their descriptions). Sizes that follow from the data
(``d_in``, ``d_sae``, ``width``, ``input_dim``, ``architecture``) are not parameters. Only a parameter whose value
differs from its config default is passed to the method, so with ``recipe="study"`` a parameter left at its
default takes the study's value (``model_.config()`` shows the values a fit used). Values are validated at
``fit`` (scikit-learn's rule: ``__init__`` only stores them) by the method's config, whose ValueError names the
field; numpy scalars (from ``np.logspace`` grids) are taken as the Python numbers they hold.

Adding the estimator of another method is a class naming it and its config classes::

    class MOD(DictionaryLearningEstimator):
        _method = "mod"
        _config_classes = (MODConfig,)

(plus ``_required = ("n_nonzero",)`` for an optional field that the method would otherwise take from the data,
as K-SVD's sparsity). The parameters, their docs (``help(MOD)``) and the recipe switch follow from the classes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from dictlab.config import parse_config
from dictlab.data import DataSizes
from dictlab.inference.solvers import SOLVERS, Solver
from dictlab.learners.dl_fista import DLFistaConfig
from dictlab.learners.ksvd import KSVDConfig
from dictlab.learners.mod import MODConfig
from dictlab.learners.online import OnlineDLConfig
from dictlab.learners.softplus_adam import SoftplusAdamConfig
from dictlab.methods import _FIXED, Problem, build_method  # _FIXED: the size fields that follow from the data
from dictlab.models import DictionaryModel, FitContext, SparseCodingModel
from dictlab.sae import TrainConfig, sae_config_class
from dictlab.validation import check_int_range

__all__ = [
    "KSVD",
    "MOD",
    "BatchTopKSAE",
    "DLFista",
    "DictionaryLearningEstimator",
    "DictlabEstimator",
    "JumpReLUSAE",
    "MatchingPursuitSAE",
    "MatryoshkaBatchTopKSAE",
    "OnlineDictionaryLearning",
    "ReLUSAE",
    "SoftplusAdam",
    "SparseCoder",
    "TopKSAE",
]

_FLOATS = (np.float64, np.float32)  # the dtypes models compute in; anything else becomes the first
_KW = inspect.Parameter.KEYWORD_ONLY
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _as_numpy(x: Any) -> Any:
    """A torch tensor as a CPU numpy array (half precisions as float32, which numpy lacks); anything else as is,
    for scikit-learn's validation."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        return x.numpy()
    return x


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    """A validated array as a tensor, sharing its memory unless it is read-only (a memmap)."""
    return torch.from_numpy(x) if x.flags.writeable else torch.tensor(x)


def _as_python(value: Any) -> Any:
    """A numpy scalar (``np.float64(0.1)`` from ``np.logspace``, ``np.int64`` from ``np.arange``) as the Python
    number it holds, so that dictlab's strict configs take it; anything else as is."""
    return value.item() if isinstance(value, np.generic) else value


def _same(value: Any, default: Any) -> bool:
    """Whether ``value`` is its field's default: equal and of the same type (``1`` is not the default ``True``)."""
    return type(value) is type(default) and bool(value == default)


class _Field:
    """One hyperparameter as an estimator parameter: its default (None for a required field) and where it comes from."""

    def __init__(self, name: str, default: Any, required: bool) -> None:
        self.name = name
        self.default = default
        self.required = required
        self.owners: list[tuple[str, str]] = []  # (config class name, description)


def _fields(config_classes: Sequence[type[BaseModel]], owner: str) -> dict[str, _Field]:
    """The hyperparameter fields of ``config_classes`` by name, in class and field order, without the sizes that
    follow from the data; TypeError (at class creation) when two classes give one name different defaults."""
    fields: dict[str, _Field] = {}
    for cls in config_classes:
        for name, info in cls.model_fields.items():
            if name in _FIXED:
                continue
            required = info.is_required()
            default = None if required else info.get_default(call_default_factory=True)
            field = fields.setdefault(name, _Field(name, default, required))
            if not (_same(default, field.default) and required == field.required):
                raise TypeError(
                    f"{owner}: field {name!r} has default {field.default!r} in one config class and {default!r} in "
                    f"{cls.__name__}; one estimator parameter cannot have both"
                )
            field.owners.append((cls.__name__, info.description or ""))
    return fields


class DictlabEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base of dictlab's scikit-learn estimators (see the module docstring for the contract).

    A subclass names ``_config_classes``: the pydantic classes whose fields are its hyperparameters. Its
    ``__init__`` is generated from them (``_leading`` parameters first, then the fields, then ``_trailing``),
    with a real signature, so that ``get_params``, ``clone`` and ``GridSearchCV`` see every parameter.
    """

    _config_classes: ClassVar[tuple[type[BaseModel], ...]]
    _required: ClassVar[tuple[str, ...]] = ()  # optional fields the estimator needs set (e.g. K-SVD's n_nonzero)
    _fields_: ClassVar[dict[str, _Field]]

    model_: DictionaryModel
    components_: np.ndarray
    offset_: np.ndarray
    n_components_: int
    n_features_in_: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_config_classes" not in cls.__dict__:
            return  # an abstract layer (DictionaryLearningEstimator); its subclasses name their classes
        fields = _fields(cls._config_classes, cls.__name__)
        for name in cls._required:
            fields[name].required = True
        leading, trailing = cls._leading(), cls._trailing()
        clash = sorted({p.name for p in (*leading, *trailing)} & set(fields))
        if clash:
            raise TypeError(f"{cls.__name__}: config field(s) {', '.join(clash)} clash with estimator parameters")
        hyper = [inspect.Parameter(f.name, _KW, default=f.default) for f in fields.values()]
        self_ = inspect.Parameter("self", _POSITIONAL)
        signature = inspect.Signature([self_, *leading, *hyper, *trailing])

        def __init__(self: DictlabEstimator, *args: Any, **kwargs: Any) -> None:
            bound = signature.bind(self, *args, **kwargs)  # TypeError for an unknown or missing parameter
            bound.apply_defaults()
            for name, value in list(bound.arguments.items())[1:]:
                setattr(self, name, value)

        __init__.__signature__ = signature  # type: ignore[attr-defined]  # what inspect (and sklearn) read
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__module__ = cls.__module__
        __init__.__doc__ = f"See ``help({cls.__name__})`` for the parameters."
        cls.__init__ = __init__  # type: ignore[method-assign,assignment]
        cls._fields_ = fields
        parts = (inspect.cleandoc(cls.__doc__ or ""), cls._common_doc(), cls._parameter_doc(fields))
        cls.__doc__ = "\n\n".join(part for part in parts if part)

    # --- what a subclass defines ----------------------------------------------------------------------
    @classmethod
    def _leading(cls) -> list[inspect.Parameter]:
        """Parameters before the hyperparameter fields."""
        return []

    @classmethod
    def _trailing(cls) -> list[inspect.Parameter]:
        """Parameters after the hyperparameter fields."""
        return []

    @classmethod
    def _common_doc(cls) -> str:
        """The docs of the parameters that are not config fields (the numpydoc "Parameters" section), if any."""
        return ""

    @classmethod
    def _parameter_doc(cls, fields: dict[str, _Field]) -> str:
        """The hyperparameters' docs: name, default and config class(es), then each class's description."""
        lines = ["Hyperparameters (keyword-only; generated from the config classes)", "-" * 66]
        for field in fields.values():
            shown = "required" if field.required else f"default={field.default!r}"
            lines.append(f"{field.name} : {shown} ({', '.join(owner for owner, _ in field.owners)})")
            by_description: dict[str, list[str]] = {}
            for owner, description in field.owners:
                by_description.setdefault(description, []).append(owner)
            for description, owners in by_description.items():
                lead = f"[{', '.join(owners)}] " if len(by_description) > 1 else ""
                lines.append(f"    {lead}{description}")
        return "\n".join(lines)

    # --- scikit-learn's API ---------------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """Codes (N, n_components) of observations X (N, n_features), numpy in the model's dtype."""
        check_is_fitted(self)
        x = self._check_x(X, reset=False)
        with torch.no_grad():
            codes = self._coder(x.dtype).encode(_as_tensor(x))
        return codes.detach().cpu().numpy()

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Reconstructions (N, n_features) = X @ components_ + offset_ of codes X (N, n_components)."""
        check_is_fitted(self)
        codes = check_array(_as_numpy(X), dtype=_FLOATS, order="C", input_name="codes")
        coder = self._coder(codes.dtype)
        width = coder.dictionary.shape[0]
        if codes.shape[1] != width:
            raise ValueError(f"codes have {codes.shape[1]} columns, but {type(self).__name__} has {width} components")
        with torch.no_grad():
            out = coder.decode(_as_tensor(codes))
        return out.detach().cpu().numpy()

    @property
    def _n_features_out(self) -> int:
        """For ``get_feature_names_out``: one output per component."""
        return self.n_components_

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # --- shared steps ------------------------------------------------------------------------------
    def _check_x(self, X: Any, *, reset: bool) -> np.ndarray:
        """X validated by scikit-learn (2-D, finite, float64 or float32, C order; at transform, the fitted number
        of features), then in the dtype the fitted model computes in."""
        x: np.ndarray = validate_data(self, _as_numpy(X), reset=reset, dtype=_FLOATS, order="C")
        if not reset and hasattr(self, "components_") and x.dtype != self.components_.dtype:
            x = x.astype(self.components_.dtype)
        return x

    def _coder(self, dtype: np.dtype) -> DictionaryModel:
        """The fitted model that encodes and decodes data of ``dtype``."""
        return self.model_

    def _hyperparameters(self, used: Sequence[type[BaseModel]] | None = None) -> dict[str, Any]:
        """The parameters that differ from their config default, for the method's overrides; ValueError for a
        required one left unset (and, with ``used``, for one that none of the classes in ``used`` has)."""
        out: dict[str, Any] = {}
        where = type(self).__name__
        names = None if used is None else {name for cls in used for name in cls.model_fields}
        for field in self._fields_.values():
            value = _as_python(getattr(self, field.name))
            unset = value is None if field.required else _same(value, field.default)
            if names is not None and field.name not in names:
                if unset:
                    continue  # a field of another variant (solver), left alone
                raise ValueError(
                    f"{where}: {field.name}={value!r} is not a parameter of {self._variant()}; its parameters: "
                    f"{', '.join(sorted(names - _FIXED))}"
                )
            if unset and field.required:
                description = field.owners[0][1].rstrip(".")
                raise ValueError(
                    f"{where}: {field.name} is required for {self._variant()} ({description}); "
                    f"set {where}({field.name}=...)"
                )
            if unset:
                continue
            out[field.name] = value
        return out

    def _variant(self) -> str:
        return type(self).__name__

    def _finish_fit(self, model: DictionaryModel) -> None:
        self.model_ = model
        self.components_ = model.dictionary.detach().cpu().numpy().copy()
        offset = model.offset
        self.offset_ = (
            np.zeros(self.components_.shape[1], self.components_.dtype)
            if offset is None
            else offset.detach().cpu().to(model.dictionary.dtype).numpy().copy()
        )
        self.n_components_ = int(self.components_.shape[0])


class DictionaryLearningEstimator(DictlabEstimator):
    """A dictionary learnt from the data by the dictlab method ``_method`` (see the module docstring)."""

    _method: ClassVar[str]

    @classmethod
    def _leading(cls) -> list[inspect.Parameter]:
        return [inspect.Parameter("n_components", _POSITIONAL, default=None)]

    @classmethod
    def _common_doc(cls) -> str:
        recipe = (
            """recipe : {"dictlab", "study"}, default="dictlab"
    Starting hyperparameters: dictlab's fast defaults, or the study's (arXiv 2603.28744). A hyperparameter set to
    another value than its default overrides the recipe's; one left at its default takes the recipe's.
"""
            if cls._has_recipes()
            else ""
        )
        return f"""Parameters
----------
n_components : int or None, default=None
    Number of atoms (the method's ``width``, an SAE's ``d_sae``); None: n_features.
{recipe}random_state : int or None, default=None
    Seed of every random draw of the fit (dictlab's ``FitContext(seed=...)``); None: 0."""

    @classmethod
    def _has_recipes(cls) -> bool:
        """Whether the method has recipes: whether any of its config classes has ``study()``."""
        return any(hasattr(config, "study") for config in cls._config_classes)

    @classmethod
    def _trailing(cls) -> list[inspect.Parameter]:
        recipe = [inspect.Parameter("recipe", _KW, default="dictlab")] if cls._has_recipes() else []
        return [*recipe, inspect.Parameter("random_state", _KW, default=None)]

    def fit(self, X: Any, y: Any = None) -> DictionaryLearningEstimator:
        """Learn the dictionary from X (N, n_features); ``y`` is ignored. Returns self."""
        x = self._check_x(X, reset=True)
        n, m = x.shape
        width = _as_python(self.n_components)
        components = m if width is None else check_int_range("n_components", width, 1)
        overrides = self._hyperparameters()
        k = overrides.get("k")
        problem = Problem.stand_in(DataSizes(num_latents=components, k=k, input_dim=m, n_train=n))
        recipe = getattr(self, "recipe", "dictlab")
        model = build_method(self._method, problem, overrides, recipe)
        self._finish_fit(model.fit(_as_tensor(x), FitContext(seed=self._seed())))
        return self

    def _seed(self) -> int:
        seed = _as_python(self.random_state)
        if seed is None:
            return 0
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"random_state must be an int seed or None, got {seed!r}")
        return seed


# --- dictionary learning -----------------------------------------------------------------------------------


class DLFista(DictionaryLearningEstimator):
    """DL-FISTA (method ``dl_fista``): alternating FISTA codes and least-squares dictionary updates;
    codes by FISTA with the final λ. See ``dictlab.learners.dl_fista``."""

    _method = "dl_fista"
    _config_classes = (DLFistaConfig,)


class SoftplusAdam(DictionaryLearningEstimator):
    """Softplus-Adam (method ``softplus_adam``): codes softplus(u) and dictionary optimised jointly by Adam;
    new data coded by FISTA. See ``dictlab.learners.softplus_adam``."""

    _method = "softplus_adam"
    _config_classes = (SoftplusAdamConfig,)


class MOD(DictionaryLearningEstimator):
    """The Method of Optimal Directions (method ``mod``): FISTA (or OMP, ``coder="omp"`` with ``n_nonzero``)
    codes and least-squares dictionary updates. See ``dictlab.learners.mod``."""

    _method = "mod"
    _config_classes = (MODConfig,)


class KSVD(DictionaryLearningEstimator):
    """K-SVD (method ``ksvd``): OMP codes with ``n_nonzero`` atoms per sample (required: scikit-learn does not
    know the data's k) and rank-1 atom updates. See ``dictlab.learners.ksvd``."""

    _method = "ksvd"
    _config_classes = (KSVDConfig,)
    _required = ("n_nonzero",)


class OnlineDictionaryLearning(DictionaryLearningEstimator):
    """Online dictionary learning (method ``online_dl``, Mairal et al. 2009): mini-batch Lasso codes and
    block-coordinate atom updates. See ``dictlab.learners.online``."""

    _method = "online_dl"
    _config_classes = (OnlineDLConfig,)


# --- sparse autoencoders: one estimator per architecture (``k``, where the architecture has it, is required) ---


class ReLUSAE(DictionaryLearningEstimator):
    """ReLU SAE with an L1 penalty (method ``sae_relu``); training fields from ``dictlab.sae.TrainConfig``."""

    _method = "sae_relu"
    _config_classes = (sae_config_class("relu"), TrainConfig)


class TopKSAE(DictionaryLearningEstimator):
    """TopK SAE (method ``sae_topk``): the ``k`` largest pre-activations per sample; ``k`` is required."""

    _method = "sae_topk"
    _config_classes = (sae_config_class("topk"), TrainConfig)


class BatchTopKSAE(DictionaryLearningEstimator):
    """BatchTopK SAE (method ``sae_batchtopk``): ``k`` active per sample on average over a training batch, one
    learnt threshold at inference; ``k`` is required."""

    _method = "sae_batchtopk"
    _config_classes = (sae_config_class("batchtopk"), TrainConfig)


class MatryoshkaBatchTopKSAE(DictionaryLearningEstimator):
    """Matryoshka BatchTopK SAE (method ``sae_matryoshka_batchtopk``): nested prefixes of the dictionary each
    reconstruct the input; ``k`` is required."""

    _method = "sae_matryoshka_batchtopk"
    _config_classes = (sae_config_class("matryoshka_batchtopk"), TrainConfig)


class JumpReLUSAE(DictionaryLearningEstimator):
    """JumpReLU SAE with an L0 penalty (method ``sae_jumprelu``)."""

    _method = "sae_jumprelu"
    _config_classes = (sae_config_class("jumprelu"), TrainConfig)


class MatchingPursuitSAE(DictionaryLearningEstimator):
    """Matching-pursuit SAE (method ``sae_mp``): ``k`` greedy steps on the decoder, no encoder; ``k`` is required."""

    _method = "sae_mp"
    _config_classes = (sae_config_class("mp"), TrainConfig)


# --- a given dictionary ---------------------------------------------------------------------------------------


class SparseCoder(DictlabEstimator):
    """Sparse coding on a given dictionary with one of dictlab's solvers, as scikit-learn's ``SparseCoder``.

    ``transform`` is ``dictlab.models.SparseCodingModel(dictionary, solver).encode`` (the same codes, bit for
    bit). The estimator is stateless, as scikit-learn's: ``fit`` only validates (and sets ``model_``,
    ``components_``, ``n_features_in_``); ``transform`` works unfitted and always uses the current parameters.
    Computation is in the dtype of X (the dictionary is cast to it).

    Parameters
    ----------
    dictionary : array-like or torch tensor of shape (n_components, n_features)
        The atoms, as rows; used as given (not normalised).
    solver : {"fista", "ista", "mp", "omp"}, default="fista"
        The inference procedure (``dictlab.inference.solvers.SOLVERS``). Only the hyperparameters the solver has
        may differ from their defaults; ``mp`` needs ``n_steps`` and ``omp`` needs ``n_nonzero``.
    """

    _config_classes = tuple(SOLVERS[name] for name in SOLVERS)

    @classmethod
    def _leading(cls) -> list[inspect.Parameter]:
        return [
            inspect.Parameter("dictionary", _POSITIONAL),
            inspect.Parameter("solver", _POSITIONAL, default="fista"),
        ]

    def fit(self, X: Any, y: Any = None) -> SparseCoder:
        """Validate X (N, n_features) against the dictionary and the parameters; ``y`` is ignored. Returns self."""
        x = self._check_x(X, reset=True)
        model = self._coder(x.dtype)
        self._finish_fit(model)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True  # stateless: transform needs no fit

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    @property
    def _n_features_out(self) -> int:
        return int(self._dictionary().shape[0])

    def _check_x(self, X: Any, *, reset: bool) -> np.ndarray:
        x: np.ndarray = validate_data(self, _as_numpy(X), reset=reset, dtype=_FLOATS, order="C")
        m = self._dictionary().shape[1]
        if x.shape[1] != m:
            raise ValueError(
                f"X has {x.shape[1]} features, but SparseCoder's dictionary has {m} (its shape is "
                "(n_components, n_features))"
            )
        return x

    def _dictionary(self) -> np.ndarray:
        dictionary: np.ndarray = check_array(_as_numpy(self.dictionary), dtype=_FLOATS, input_name="dictionary")
        return dictionary

    def _variant(self) -> str:
        return f"solver {self.solver!r}"

    def _coder(self, dtype: np.dtype) -> SparseCodingModel:
        """The model of the current parameters, its dictionary in ``dtype`` (cheap: nothing is learnt)."""
        solver_class: type[Solver] = SOLVERS[self.solver]
        params = self._hyperparameters(used=[solver_class])
        solver = parse_config(solver_class, params, where=f"SparseCoder(solver={self.solver!r})")
        dictionary = np.ascontiguousarray(self._dictionary(), dtype=dtype)
        return SparseCodingModel(torch.from_numpy(dictionary), solver)
