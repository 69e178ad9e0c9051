"""SklearnPipelineTask: a scikit-learn estimator (or Pipeline) as one step of a search.

The task fits the estimator on the ``'train'`` phase, then writes its output for every phase
present in the StoreGate — the ``transform`` of a transformer (feature selection, scaling,
PCA, ...) or the prediction of a predictor — to ``output_var_names``, replacing what an
earlier execution wrote there. scikit-learn is an optional dependency
(``pip install 'multiml[sklearn]'``); it is imported only when a task is created.

>>> import numpy as np
>>> from multiml import StoreGate
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(100, 4))
>>> label = (x[:, 2] > 0).astype(int)          # only feature 2 carries information
>>> sg = StoreGate(data_id='doc')
>>> sg.add_data('x', x, phase=(0.6, 0.2, 0.2))
>>> sg.add_data('label', label, phase=(0.6, 0.2, 0.2))
>>> sg.compile()
>>> task = SklearnPipelineTask(storegate=sg, model='SelectKBest', model_args={'k': 1},
...                            input_var_names='x', output_var_names='x_sel',
...                            true_var_names='label')
>>> task.set_hps({'model__k': 2})
{'model__k': 2}
>>> task.execute()
>>> sg.get_data('x_sel', 'test').shape
(20, 2)
>>> bool(task.ml.model.get_support()[2])
True
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from multiml import const
from multiml.task.basic.ml_base import MLBaseTask

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'multiml[sklearn]'"

OUTPUT_MODES = ("auto", "transform", "predict", "predict_proba", "decision_function")
"""Allowed values of ``SklearnPipelineTask(output=...)``."""

SKLEARN_MODULES = (
    "sklearn.preprocessing",
    "sklearn.feature_selection",
    "sklearn.decomposition",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.svm",
    "sklearn.neighbors",
    "sklearn.tree",
    "sklearn.naive_bayes",
    "sklearn.discriminant_analysis",
    "sklearn.neural_network",
    "sklearn.cluster",
    "sklearn.impute",
    "sklearn.kernel_approximation",
    "sklearn.random_projection",
    "sklearn.manifold",
    "sklearn.cross_decomposition",
    "sklearn.gaussian_process",
    "sklearn.kernel_ridge",
    "sklearn.isotonic",
    "sklearn.mixture",
    "sklearn.covariance",
    "sklearn.semi_supervised",
    "sklearn.calibration",
    "sklearn.multiclass",
    "sklearn.multioutput",
    "sklearn.dummy",
    "sklearn.pipeline",
    "sklearn.compose",
)
"""Modules searched, in this order, for an estimator given by name."""

# MLBaseTask settings that have no meaning for a scikit-learn estimator.
_UNUSED_SETTINGS = ("optimizer", "scheduler", "loss")


def require_sklearn(what: str = "SklearnPipelineTask") -> Any:
    """Import and return the ``sklearn`` package, or raise an ImportError saying how to get it.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    try:
        import sklearn
        import sklearn.base
    except ImportError as exc:
        raise ImportError(
            f"{what} needs scikit-learn, which is not installed; install it with "
            f"{INSTALL_HINT} (or pip install scikit-learn)"
        ) from exc
    return sklearn


def lookup_estimator(name: str) -> type:
    """Find an estimator class by name in :data:`SKLEARN_MODULES`, or import a dotted path.

    >>> lookup_estimator('StandardScaler').__name__
    'StandardScaler'
    >>> lookup_estimator('sklearn.svm.SVC').__name__
    'SVC'

    Raises:
        ValueError: nothing has that name (close matches are suggested).
    """
    require_sklearn()
    if "." in name:
        module_name, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"model={name!r}: cannot import it ({exc})") from None
        if not callable(obj):
            raise ValueError(f"model={name!r} is a {type(obj).__name__}, not an estimator class")
        return obj
    for module in _sklearn_modules():
        obj = getattr(module, name, None)
        if inspect.isclass(obj) and hasattr(obj, "fit"):
            return obj
    candidates = sorted(
        {
            attr
            for module in _sklearn_modules()
            for attr in dir(module)
            if attr[:1].isupper() and hasattr(getattr(module, attr), "fit")
        }
    )
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f"; did you mean {close}?" if close else ""
    raise ValueError(
        f"model={name!r} is not an estimator in {', '.join(SKLEARN_MODULES)}{hint} (give an "
        "estimator name from there, a dotted import path, a class, an instance or a Pipeline)"
    )


def _sklearn_modules() -> Any:
    """Yield the modules of :data:`SKLEARN_MODULES` one by one (imported on demand)."""
    for module_name in SKLEARN_MODULES:
        try:
            yield importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - a module missing from an old/new release
            logger.debug("cannot import %s; skipped in the estimator lookup", module_name)


def rows_2d(data: Any, what: str) -> np.ndarray:
    """Arrange stored data as a 2-D ``(N, features)`` matrix.

    ``(N,)`` becomes one column, ``(N, F)`` is kept, ``(N, *k)`` is flattened row by row
    (C order), and a list of arrays (a list ``input_var_names``) is flattened per array and
    concatenated along the feature axis.

    >>> rows_2d(np.zeros((5, 2, 3)), 'x').shape, rows_2d([np.zeros(5), np.zeros((5, 2))], 'x').shape
    ((5, 6), (5, 3))
    """
    if isinstance(data, list | tuple):
        parts = [rows_2d(item, what) for item in data]
        lengths = sorted({len(part) for part in parts})
        if len(lengths) > 1:
            raise ValueError(f"{what}: the arrays have different numbers of rows {lengths}")
        return parts[0] if len(parts) == 1 else np.hstack(parts)
    array = np.asarray(data)
    if array.ndim == 0:
        raise ValueError(f"{what}: expected an array of shape (N, ...), got a scalar")
    if array.ndim == 1:
        return array.reshape(-1, 1)
    if array.ndim == 2:
        return array
    return array.reshape(len(array), -1)


def target_rows(data: Any, what: str) -> np.ndarray | None:
    """Targets as scikit-learn expects them: ``(N,)`` for one target, else ``(N, T)``."""
    if data is None:
        return None
    matrix = rows_2d(data, what)
    return matrix[:, 0] if matrix.shape[1] == 1 else matrix


class SklearnPipelineTask(MLBaseTask):
    """Fit a scikit-learn estimator on the train phase and write its output for all phases.

    ``execute()`` builds a fresh estimator, fits it on the ``'train'`` rows of
    ``input_var_names`` (with ``true_var_names`` as ``y`` when given — supervised
    transformers such as ``SelectKBest`` need it), and, when ``'test'`` is in ``phases``,
    writes the output of every phase present in the StoreGate to ``output_var_names`` in one
    store update (``phase='auto'``). Rows stay in store order. An existing output variable is
    replaced, never appended to, so the task can run again with other hyperparameters.

    Inputs are flattened to a 2-D ``(N, features)`` matrix: a ``(N, *k)`` variable becomes
    ``(N, prod(k))`` (row-major), an ``(N,)`` variable one column, a tuple
    ``input_var_names`` (stacked ``(N, M, *k)``) ``(N, M * prod(k))``, and a list of
    variables is flattened per variable and concatenated along the feature axis. Targets of
    one column are passed as ``(N,)``.

    Args:
        output: what is written back: ``'transform'``, ``'predict'``, ``'predict_proba'``,
            ``'decision_function'``, or ``'auto'`` (default: ``transform`` when the estimator
            has one, else ``predict``). The choice is checked when the task compiles.
        **kwargs: :class:`~multiml.task.basic.MLBaseTask` arguments. ``model`` is an
            estimator class, a class name looked up in :data:`SKLEARN_MODULES`
            (``'SelectKBest'``, ``'StandardScaler'``, ``'PCA'``, ``'LogisticRegression'``,
            ...), a dotted import path (``'sklearn.svm.SVC'``), a factory function, or an
            estimator instance / ``Pipeline`` (cloned with ``sklearn.base.clone`` on every
            compile, so the caller's object is never fitted). ``model_args`` and
            ``model__<param>`` hyperparameters are applied with ``set_params`` after
            construction, so nested names work too (``model__svc__C`` on a Pipeline with a
            step ``'svc'``); for a class or name, arguments without ``__`` are passed to the
            constructor (so required ones such as ``SelectFromModel``'s ``estimator`` can be
            given). Training settings of PyTorch tasks (``num_epochs``, ``batch_size``, ...)
            are ignored; ``optimizer``, ``scheduler`` and ``loss`` must stay unset.

    Weights: ``save_weights`` / ``load_weights`` are not supported (the Saver stores PyTorch
    state dicts only, and a fitted estimator is cheap to re-fit); setting either is a
    ``ValueError``. The fitted estimator is available as ``task.ml.model`` after execution.

    Raises:
        ImportError: scikit-learn is not installed (the message says how to install it).

    Example (a Pipeline with a nested hyperparameter)::

        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.linear_model import LogisticRegression
        pipe = Pipeline([('scale', StandardScaler()), ('clf', LogisticRegression())])
        task = SklearnPipelineTask(model=pipe, output='predict_proba',
                                   var_names='x proba label')
        hps = {'model__clf__C': [0.1, 1.0, 10.0]}
    """

    ml_type = "sklearn"

    def __init__(self, output: str = "auto", **kwargs: Any) -> None:
        require_sklearn(type(self).__name__)
        super().__init__(**kwargs)
        self._output = self._check_output(output)
        self._check_settings()

    # ------------------------------------------------------------- checks
    @staticmethod
    def _check_output(output: Any) -> str:
        if output not in OUTPUT_MODES:
            raise ValueError(f"output={output!r}: allowed values are {list(OUTPUT_MODES)}")
        return output

    def _check_settings(self) -> None:
        """Reject settings that do not apply to scikit-learn estimators."""
        for kind in ("save_weights", "load_weights"):
            value = getattr(self, f"_{kind}")
            if value:
                raise ValueError(
                    f"{self.name}: {kind}={value!r} is not supported by SklearnPipelineTask "
                    "(Saver.dump_ml stores PyTorch weights only; the estimator is re-fitted on "
                    f"every execution and stays available as task.ml.model); set {kind}=False"
                )
        for kind in _UNUSED_SETTINGS:
            value = getattr(self, f"_{kind}")
            if value is not None:
                raise ValueError(
                    f"{self.name}: {kind}={value!r} does not apply to a scikit-learn estimator; "
                    "configure the estimator through model / model_args instead"
                )
        outputs = self._output_var_names
        if isinstance(outputs, list) and len(outputs) != 1:
            raise ValueError(
                f"{self.name}: output_var_names={outputs!r}: an estimator produces one array; "
                "give one name, or a tuple of names to split its columns into variables"
            )

    @property
    def output(self) -> str:
        """What is written back (see the class docstring)."""
        return self._output

    # ------------------------------------------------------------ compile
    def compile_model(self) -> None:
        """Build a fresh, unfitted estimator and choose its output method."""
        require_sklearn(type(self).__name__)
        self._check_output(self._output)
        self._check_settings()
        estimator = self.build_estimator()
        self.ml.model = estimator
        self.ml.extras["output_method"] = self._output_method(estimator)
        self.ml.extras["fitted"] = False

    def build_estimator(self) -> Any:
        """A new estimator from ``model`` and ``model_args`` (never the caller's object).

        Raises:
            ValueError: ``model`` is unset or unknown, or a ``model_args`` key is not a
                parameter of the estimator.
        """
        from sklearn.base import clone

        spec = self._model
        if spec is None:
            raise ValueError(f"{self.name}: model is not set; give an estimator name or object")
        args = dict(self._model_args)
        if isinstance(spec, str):
            spec = lookup_estimator(spec)
        if inspect.isclass(spec) or (callable(spec) and not hasattr(spec, "get_params")):
            direct = {k: v for k, v in args.items() if "__" not in k}
            args = {k: v for k, v in args.items() if "__" in k}
            try:
                estimator = spec(**direct)
            except TypeError as exc:
                raise TypeError(
                    f"{self.name}: model={_describe(spec)} cannot be built with "
                    f"model_args={direct}: {exc}"
                ) from exc
            if not hasattr(estimator, "get_params"):
                raise TypeError(
                    f"{self.name}: model={_describe(spec)} built a {type(estimator).__name__}, "
                    "which is not a scikit-learn estimator (it has no get_params)"
                )
            # Clone so that estimator instances passed as arguments are never fitted in place.
            estimator = clone(estimator)
        elif hasattr(spec, "get_params"):
            estimator = clone(spec)
        else:
            raise TypeError(
                f"{self.name}: model={spec!r} is not a scikit-learn estimator; expected a name, "
                "a dotted path, a class, a factory or an estimator instance"
            )
        if args:
            try:
                estimator.set_params(**args)
            except ValueError as exc:
                keys = ", ".join(f"model__{k}" for k in args)
                raise ValueError(
                    f"{self.name}: cannot apply model_args ({keys}) to "
                    f"{type(estimator).__name__}: {exc}"
                ) from exc
        if not hasattr(estimator, "fit"):
            raise TypeError(f"{self.name}: {type(estimator).__name__} has no fit() method")
        return estimator

    def _output_method(self, estimator: Any) -> str:
        name = type(estimator).__name__
        if self._output == "auto":
            for method in ("transform", "predict"):
                if hasattr(estimator, method):
                    return method
            raise TypeError(
                f"{self.name}: {name} has neither transform() nor predict(), so nothing can be "
                "written back for every phase"
            )
        if not hasattr(estimator, self._output):
            available = [m for m in OUTPUT_MODES[1:] if hasattr(estimator, m)]
            raise ValueError(
                f"{self.name}: output={self._output!r}, but {name} (with these parameters) "
                f"has no {self._output}(); available: {available}"
            )
        return self._output

    # ---------------------------------------------------------------- fit
    def fit(self, train_data: tuple[Any, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Fit the compiled estimator on the train phase (or on ``(inputs, targets)``).

        Returns:
            ``{'train': [{'num_samples': N, 'fit_time': seconds}], 'valid': []}``.
        """
        estimator = self._compiled_estimator()
        if train_data is None:
            if self._storegate is None:
                raise ValueError(f"{self.name}: no storegate attached and no train_data given")
            inputs, targets = self.get_input_true_data(const.TRAIN)
        else:
            inputs, targets = train_data
        x = rows_2d(inputs, f"{self.name} inputs")
        y = target_rows(targets, f"{self.name} targets")
        if y is not None and len(y) != len(x):
            raise ValueError(
                f"{self.name}: {len(x)} input rows but {len(y)} target rows in the train data"
            )
        start = time.perf_counter()
        try:
            if y is None:
                estimator.fit(x)
            else:
                estimator.fit(x, y)
        except (TypeError, ValueError) as exc:
            if y is None:
                exc.add_note(
                    f"{self.name}: {type(estimator).__name__} was fitted without targets; set "
                    "true_var_names if it needs y"
                )
            raise
        elapsed = time.perf_counter() - start
        self.ml.extras["fitted"] = True
        logger.debug(
            "%s: fitted %s on %d rows x %d features in %.3fs",
            self.name,
            type(estimator).__name__,
            x.shape[0],
            x.shape[1],
            elapsed,
        )
        self.history = {
            const.TRAIN: [{"num_samples": int(x.shape[0]), "fit_time": elapsed}],
            const.VALID: [],
        }
        return self.history

    # ------------------------------------------------------------ predict
    def predict(self, phase: str = const.TEST, data: Any = None) -> np.ndarray:
        """Output of the fitted estimator for a phase (or for given inputs), rows in order.

        Returns:
            a numpy array of shape ``(N, ...)``.
        """
        estimator = self._compiled_estimator()
        if not self.ml.extras.get("fitted"):
            raise RuntimeError(
                f"{self.name}: the estimator is not fitted; call fit() first (or include "
                "'train' in phases)"
            )
        if data is None:
            if self._storegate is None:
                raise ValueError(f"{self.name}: no storegate attached and no data given")
            data = self._storegate.get_data(self._input_var_names, phase)
        x = rows_2d(data, f"{self.name} inputs")
        method = self.ml.extras["output_method"]
        return _dense(getattr(estimator, method)(x), f"{type(estimator).__name__}.{method}")

    def predict_update(self, phases: Sequence[str] | None = None) -> None:
        """Write the output of each phase to ``output_var_names``, replacing old values.

        With the default (every phase present in the StoreGate) the phases are written in one
        ``update_data(..., phase='auto')`` call: either all are replaced or, on error, none.
        """
        if self._output_var_names is None:
            raise ValueError(
                f"{self.name}: output_var_names is not set, so the outputs have nowhere to go"
            )
        names = self._output_var_names
        if isinstance(names, list):
            names = names[0]
        present = self._present_phases()
        wanted = present if phases is None else list(phases)
        outputs = {phase: self.predict(phase=phase) for phase in wanted}
        if wanted == present:
            stacked = np.concatenate([outputs[phase] for phase in present])
            self._storegate.update_data(names, stacked, phase="auto")
            return
        for phase, output in outputs.items():
            self._storegate.update_data(names, output, phase=phase, do_compile=False)
        self._storegate.compile()

    def _compiled_estimator(self) -> Any:
        if self.ml.model is None:
            raise RuntimeError(f"{self.name}: call compile() before fit()/predict()")
        return self.ml.model

    # ------------------------------------------------------------ weights
    def dump_model(self, extra_args: dict[str, Any] | None = None) -> None:
        """Not supported: raises ``ValueError`` (see the class docstring)."""
        raise ValueError(
            f"{self.name}: SklearnPipelineTask cannot dump weights (Saver.dump_ml stores "
            "PyTorch weights only); the fitted estimator is task.ml.model"
        )

    def load_model(self) -> None:
        """Not supported: raises ``ValueError`` (see the class docstring)."""
        raise ValueError(
            f"{self.name}: SklearnPipelineTask cannot load weights; it fits its estimator on "
            "the train phase every time it executes"
        )


def _describe(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _dense(output: Any, what: str) -> np.ndarray:
    """A numpy array from an estimator output (sparse matrices, DataFrames and the per-target
    lists of multi-output ``predict_proba`` included)."""
    if isinstance(output, list):
        arrays = [_dense(item, what) for item in output]
        shapes = sorted({a.shape for a in arrays})
        if len(shapes) > 1:
            raise ValueError(
                f"{what} returned one array per target with different shapes {shapes}; they "
                "cannot be stored as one variable"
            )
        return np.stack(arrays, axis=1)
    if hasattr(output, "toarray"):  # scipy.sparse
        output = output.toarray()
    return np.asarray(output)


__all__ = ["OUTPUT_MODES", "SKLEARN_MODULES", "SklearnPipelineTask", "lookup_estimator"]
