"""PytorchBaseTask: train and predict a PyTorch model on StoreGate data.

>>> task = PytorchBaseTask(storegate=sg, input_var_names='x', output_var_names='pred',
...                        true_var_names='label', model='MLPBlock',
...                        model_args={'layers': [16, 32, 2]}, optimizer='Adam',
...                        optimizer_args={'lr': 1e-3}, loss='CrossEntropyLoss',
...                        num_epochs=5, batch_size=128)  # doctest: +SKIP
>>> task.execute()  # compile, fit, predict every phase, write 'pred' back  # doctest: +SKIP

The training input path reads each phase's arrays once (zero-copy from the numpy backend)
and gathers whole batches by index; with ``dataloader_args`` it instead streams batches
from the StoreGate through a ``torch.utils.data.DataLoader`` (useful for on-disk data and
parallel loading), still one fancy-index read per batch and variable.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from multiml import const
from multiml.task.basic.ml_base import MLBaseTask, read_vars
from multiml.task.pytorch import batching
from multiml.task.pytorch._build import build, check_device_name, lookup, resolve_device
from multiml.task.pytorch.batching import BatchSampler, BatchSource

logger = logging.getLogger(__name__)

History = dict[str, list[dict[str, Any]]]


class PytorchBaseTask(MLBaseTask):
    """Base task of PyTorch models.

    Args:
        device: ``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'``,
            ``'cuda:N'`` or an int N. A device that does not exist is a ``ValueError`` at
            compile time. Agents running combinations on GPU slots replace ``'auto'`` by
            the slot's device.
        gpu_ids: run the model with ``nn.DataParallel`` over these CUDA devices.
        amp: automatic mixed precision on CUDA (bfloat16 where supported, else float16
            with gradient scaling); ignored on CPU.
        batch_sampler: a custom batch sampler ``sampler(num_samples, batch_size, phase)``
            yielding index batches for the train phase (default: a random permutation
            per epoch, cut into consecutive batches).
        dataloader_args: when given, batches are streamed from the StoreGate through a
            ``torch.utils.data.DataLoader`` built with these arguments (``num_workers``
            defaults to the task's ``num_workers``) instead of reading each phase into
            memory first.
        **kwargs: :class:`~multiml.task.basic.MLBaseTask` arguments. ``model`` is a name in
            :mod:`multiml.task.pytorch.modules` or :mod:`torch.nn`, a dotted import path, a
            class or an instance; ``optimizer`` a name in :mod:`torch.optim` or a class;
            ``scheduler`` a name in :mod:`torch.optim.lr_scheduler` or a class; ``loss`` a
            name in :mod:`torch.nn`, a class or instance, or a list of those (one per
            output). ``metrics`` may hold ``'loss'``, ``'acc'``, ``'lr'``, ``'subloss'``
            and callables ``fn(outputs, targets) -> number`` (averaged over batches).
    """

    ml_type = "pytorch"
    _state_attrs = MLBaseTask._state_attrs | {"_torch_device", "_scaler"}

    def __init__(
        self,
        device: str | int | torch.device = "auto",
        gpu_ids: list[int] | None = None,
        amp: bool = False,
        batch_sampler: BatchSampler | None = None,
        dataloader_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._device = device
        self._gpu_ids = list(gpu_ids) if gpu_ids is not None else None
        self._amp = amp
        self._batch_sampler = batch_sampler
        self._dataloader_args = dict(dataloader_args) if dataloader_args is not None else None
        self._torch_device: torch.device | None = None
        self._scaler: torch.amp.GradScaler | None = None
        self._check_attrs()

    _NAMESPACES: dict[str, tuple[str, ...]] = {
        "_model": ("multiml.task.pytorch.modules", "torch.nn"),
        "_optimizer": ("torch.optim",),
        "_scheduler": ("torch.optim.lr_scheduler",),
        "_loss": ("torch.nn",),
    }

    def _checked_attrs(self) -> list[str]:
        return [*super()._checked_attrs(), *self._NAMESPACES, "_device"]

    def _check_hp(self, attr: str, value: Any) -> Any:
        """Names of models, optimizers, schedulers and losses must exist, and ``device``
        must be a device name, when they are given — not only when training starts."""
        if attr == "_device":
            try:
                check_device_name(value)
            except ValueError as exc:
                raise ValueError(f"{self.name}: {exc}") from None
            return value
        if attr in self._NAMESPACES:
            names = value if attr == "_loss" and isinstance(value, list | tuple) else [value]
            modules = [importlib.import_module(m) for m in self._NAMESPACES[attr]]
            for name in names:
                if isinstance(name, str):
                    try:
                        lookup(name, modules, attr[1:])
                    except ValueError as exc:
                        raise ValueError(f"{self.name}: {exc}") from None
            return value
        return super()._check_hp(attr, value)

    # --------------------------------------------------------------- devices
    @property
    def device(self) -> str | int | torch.device:
        """The requested device (see the class docstring)."""
        return self._device

    @device.setter
    def device(self, device: str | int | torch.device) -> None:
        self._device = device

    @property
    def torch_device(self) -> torch.device:
        """The resolved device (after compile)."""
        if self._torch_device is None:
            self._torch_device = resolve_device(self._device)
        return self._torch_device

    # --------------------------------------------------------------- compile
    def compile(self) -> None:
        """Resolve the device, then build a fresh model, optimizer, scheduler and loss.

        Raises:
            ValueError: ``device`` or ``gpu_ids`` name a device this machine does not have.
        """
        device = resolve_device(self._device)
        for gpu in self._gpu_ids or []:
            if not isinstance(gpu, int) or isinstance(gpu, bool):
                raise ValueError(
                    f"{self.name}: gpu_ids={self._gpu_ids!r}: {gpu!r} is not a CUDA device index"
                )
            try:
                resolve_device(gpu)
            except ValueError as exc:
                raise ValueError(f"{self.name}: gpu_ids={self._gpu_ids!r}: {exc}") from None
        previous, self._torch_device = self._torch_device, device
        try:
            super().compile()
        except BaseException:
            self._torch_device = previous
            raise

    def compile_model(self) -> None:
        """Build a fresh model (never reusing weights of an earlier compile) on the device."""
        from multiml.task.pytorch import modules

        if self._model is None:
            raise ValueError(f"{self.name}: model is not set")
        model = build(self._model, self._model_args, [modules, nn], "model")
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.name}: model built a {type(model).__name__}, not an nn.Module")
        self.ml.model = self.wrap_model(model)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """Move a model to the device (wrapped in ``nn.DataParallel`` with ``gpu_ids``)."""
        model = model.to(self.torch_device)
        if self._gpu_ids:
            model = nn.DataParallel(model, device_ids=self._gpu_ids)
        return model

    def compile_optimizer(self) -> None:
        """Build the optimizer over the trainable parameters, and the scheduler."""
        if self._optimizer is None:
            return
        params = [p for p in self.ml.model.parameters() if p.requires_grad]
        self.ml.optimizer = build(
            self._optimizer, self._optimizer_args, [torch.optim], "optimizer", (params,)
        )
        self.ml.scheduler = build(
            self._scheduler,
            self._scheduler_args,
            [torch.optim.lr_scheduler],
            "scheduler",
            (self.ml.optimizer,),
        )

    def compile_loss(self) -> None:
        """Build the loss, or one loss per output when ``loss`` is a list.

        ``loss_weights`` is then None (all 1) or a list with one weight per loss; with a
        single loss it may be a number that scales it.
        """
        weights = self._loss_weights
        if isinstance(self._loss, list | tuple):
            if self._loss_args:
                raise ValueError(
                    f"{self.name}: loss_args={self._loss_args} cannot be applied to a list of "
                    "losses; give configured instances in the list instead"
                )
            if weights is not None and (
                not isinstance(weights, list | tuple) or len(weights) != len(self._loss)
            ):
                raise ValueError(
                    f"{self.name}: loss_weights={weights!r} must be None or a list with one "
                    f"weight per loss ({len(self._loss)})"
                )
            self.ml.loss = [build(fn, {}, [nn], "loss") for fn in self._loss]
        else:
            if weights is not None and (
                isinstance(weights, bool) or not isinstance(weights, int | float)
            ):
                raise ValueError(
                    f"{self.name}: loss_weights={weights!r} with a single loss must be None or "
                    "a number (a list needs a list of losses)"
                )
            self.ml.loss = build(self._loss, self._loss_args, [nn], "loss")
        self.ml.loss_weights = weights

    @property
    def unwrapped_model(self) -> nn.Module:
        """The model without a DataParallel wrapper."""
        model = self.ml.model
        return model.module if isinstance(model, nn.DataParallel) else model

    # ------------------------------------------------------------------- fit
    def fit(self, train_data: Any = None, valid_data: Any = None) -> History:
        """Train for ``num_epochs`` and return per-epoch metrics.

        Args:
            train_data: ``(inputs, targets)`` arrays instead of the StoreGate's train phase.
            valid_data: likewise for validation (default: the StoreGate's valid phase when
                ``'valid'`` is in ``phases``).

        Returns:
            ``{'train': [metrics of epoch 1, ...], 'valid': [...]}``. With ``max_patience``
            training stops once the validation loss has not improved for that many epochs,
            and the weights of the best epoch are restored.
        """
        self._require_compiled(need_optimizer=True)
        if train_data is None and self._true_var_names is None:
            raise ValueError(f"{self.name}: true_var_names is not set, so there is nothing to fit")
        train = self._source(const.TRAIN, train_data)
        valid = self._source(const.VALID, valid_data) if self._has_valid(valid_data) else None
        stopper = _EarlyStopping(self._max_patience) if self._max_patience is not None else None
        if stopper is not None and valid is None:
            logger.warning(
                "%s: max_patience needs a 'valid' phase; early stopping is off", self.name
            )
            stopper = None
        self._scaler = self._make_scaler()
        history: History = {const.TRAIN: [], const.VALID: []}
        for epoch in range(1, self._num_epochs + 1):
            history[const.TRAIN].append(self._run_epoch(epoch, const.TRAIN, train)[0])
            valid_loss = None
            if valid is not None:
                metrics, valid_loss = self._run_epoch(epoch, const.VALID, valid)
                history[const.VALID].append(metrics)
            self._step_scheduler(valid_loss)
            if stopper is not None and stopper.update(valid_loss, self.unwrapped_model):
                logger.debug("%s: early stop after epoch %d", self.name, epoch)
                break
        if stopper is not None:
            stopper.restore(self.unwrapped_model)
        self.history = history
        return history

    def _has_valid(self, valid_data: Any) -> bool:
        if valid_data is not None:
            return True
        if const.VALID not in self._phases or self._storegate is None:
            return False
        return self._storegate.get_metadata().get("sizes", {}).get(const.VALID, 0) > 0

    def _require_compiled(self, need_optimizer: bool = False) -> None:
        if self.ml.model is None:
            raise RuntimeError(f"{self.name}: call compile() before fit()/predict()")
        if need_optimizer and self.ml.optimizer is None:
            raise ValueError(f"{self.name}: optimizer is not set, so the model cannot be trained")
        if need_optimizer and self.ml.loss is None:
            raise ValueError(f"{self.name}: loss is not set, so the model cannot be trained")

    def _make_scaler(self) -> torch.amp.GradScaler | None:
        if self._amp_dtype() is torch.float16:
            return torch.amp.GradScaler("cuda")
        return None

    def _amp_dtype(self) -> torch.dtype | None:
        if not self._amp or self._torch_device is None or self._torch_device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self._amp_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _step_scheduler(self, valid_loss: float | None) -> None:
        scheduler = self.ml.scheduler
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if valid_loss is None:
                raise ValueError(f"{self.name}: ReduceLROnPlateau needs a 'valid' phase")
            scheduler.step(valid_loss)
        else:
            scheduler.step()

    # ----------------------------------------------------------------- data
    def _source(self, phase: str, data: Any = None) -> Any:
        """Where batches of ``phase`` come from: arrays in memory or a streaming loader."""
        if data is not None:
            inputs, targets = data
            return BatchSource(inputs, targets, pin_memory=self._pin())
        if self._storegate is None:
            raise ValueError(f"{self.name}: no storegate attached and no data given")
        if self._dataloader_args is not None:
            return _StoreBatches(self, phase)
        inputs, targets = self.get_input_true_data(phase)
        return BatchSource(inputs, targets, pin_memory=self._pin())

    def _pin(self) -> bool:
        return self.torch_device.type == "cuda"

    def _batches(self, source: Any, phase: str, shuffle: bool) -> Iterable[Any]:
        """Yield ``(inputs, targets)`` batches of a source."""
        size = batching.resolve_batch_size(self._batch_size, phase, len(source))
        if shuffle and self._batch_sampler is not None:
            indices: Iterable[Any] = self._batch_sampler(len(source), size, phase)
        else:
            count = batching.equal_length_batches(self._batch_size)
            indices = batching.index_batches(len(source), size, shuffle, num_batches=count)
        if isinstance(source, _StoreBatches):
            # A generator of its own keeps the loader from drawing on torch's global RNG, so
            # streaming shuffles exactly like the in-memory path for the same seed.
            args = {
                "num_workers": self._num_workers,
                "generator": torch.Generator(),
                **self._dataloader_args,
            }
            return torch.utils.data.DataLoader(
                source, batch_size=None, sampler=list(indices), **args
            )
        return (source.gather(index) for index in indices)

    def _num_batches(self, source: Any, phase: str) -> int:
        size = batching.resolve_batch_size(self._batch_size, phase, len(source))
        count = batching.equal_length_batches(self._batch_size)
        return min(count, len(source)) if count is not None else -(-len(source) // size)

    # ---------------------------------------------------------------- epochs
    def _run_epoch(self, epoch: int, phase: str, source: Any) -> tuple[dict[str, Any], float]:
        """Run one epoch of ``phase``; return its metrics and its mean loss."""
        training = phase == const.TRAIN
        model = self.ml.model
        model.train(training)
        meter = _EpochMeter(self._metrics, self)
        device = self.torch_device
        on_cpu = device.type == "cpu"
        batches = self._batches(source, phase, shuffle=training)
        bar = self._progress(epoch, phase, self._num_batches(source, phase))
        with torch.set_grad_enabled(training), bar:
            for inputs, targets in batches:
                if not on_cpu:
                    inputs = batching.move(inputs, device, non_blocking=True)
                    targets = batching.move(targets, device, non_blocking=True)
                outputs, loss, sublosses = self.step_batch(inputs, targets, training)
                meter.update(outputs, targets, loss, sublosses, batching.num_rows(inputs))
                if not bar.disable:
                    bar.update(1)
        result, loss = meter.compute()
        if "lr" in self._metrics and self.ml.optimizer is not None:
            result["lr"] = float(self.ml.optimizer.param_groups[0]["lr"])
        text = " ".join(f"{k}={v:.4g}" for k, v in result.items() if isinstance(v, float))
        logger.debug("%s epoch %d/%d %s: %s", self.name, epoch, self._num_epochs, phase, text)
        return result, loss

    def _progress(self, epoch: int, phase: str, total: int) -> tqdm:
        verbose = self._verbose
        show = bool(verbose) if verbose is not None else logger.isEnabledFor(logging.DEBUG)
        trial = f",{self._trial_id}" if self._trial_id is not None else ""
        desc = f"{self.name} epoch [{epoch:>3}/{self._num_epochs}{trial}] {phase:<5}"
        return tqdm(total=total, desc=desc, disable=not show, leave=False)

    def step_batch(self, inputs: Any, targets: Any, training: bool) -> tuple[Any, Any, list[Any]]:
        """Forward one batch, compute the loss, and update the weights when training.

        Returns:
            ``(outputs, loss, sublosses)`` with ``loss`` a 0-d tensor.
        """
        if self._amp_dtype() is None:
            outputs = self.step_model(inputs)
            loss, sublosses = self.step_loss(outputs, targets)
        else:
            with self._autocast():
                outputs = self.step_model(inputs)
                loss, sublosses = self.step_loss(outputs, targets)
        if training:
            self.step_optimizer(loss)
        return outputs, loss, sublosses

    def step_model(self, inputs: Any) -> Any:
        """Run the model on one batch of inputs."""
        return self.ml.model(inputs)

    def step_loss(self, outputs: Any, targets: Any) -> tuple[Any, list[Any]]:
        """Loss of one batch and, with several losses, the weighted term of each."""
        loss_fn, weights = self.ml.loss, self.ml.loss_weights
        if isinstance(loss_fn, list):
            if not isinstance(outputs, list | tuple) or not isinstance(targets, list | tuple):
                raise ValueError(
                    f"{self.name}: a list of {len(loss_fn)} losses needs the model to return a "
                    "list of outputs and true_var_names to be a list"
                )
            weights = weights if weights is not None else [1.0] * len(loss_fn)
            sublosses = []
            total = None
            for fn, weight, output, target in zip(loss_fn, weights, outputs, targets, strict=True):
                if fn is None or not weight:
                    sublosses.append(None)
                    continue
                term = fn(output, target) * weight
                sublosses.append(term)
                total = term if total is None else total + term
            if total is None:
                raise ValueError(f"{self.name}: every loss weight is zero; nothing to train")
            return total, sublosses
        outputs = self.select_pred(outputs)
        loss = loss_fn(outputs, targets)
        if isinstance(weights, int | float) and not isinstance(weights, bool):
            loss = loss * weights
        return loss, []

    def select_pred(self, outputs: Any) -> Any:
        """The outputs named by ``pred_var_names`` out of all model outputs."""
        names, preds = self._output_var_names, self.pred_var_names
        if not isinstance(names, list) or preds == names:
            return outputs
        if isinstance(preds, list):
            return [outputs[names.index(name)] for name in preds]
        return outputs[names.index(preds)]

    def step_optimizer(self, loss: torch.Tensor) -> None:
        """Backward pass and optimizer step (with gradient scaling under float16 AMP)."""
        optimizer = self.ml.optimizer
        optimizer.zero_grad(set_to_none=True)
        if self._scaler is not None:
            self._scaler.scale(loss).backward()
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            loss.backward()
            optimizer.step()

    # --------------------------------------------------------------- predict
    def predict(self, phase: str = const.TEST, data: Any = None) -> Any:
        """Predict a phase (or given input arrays), rows in their stored order.

        Returns:
            a numpy array, or a list of arrays when the model returns several outputs.
        """
        self._require_compiled()
        if data is not None:
            source = BatchSource(data)
        elif self._storegate is None:
            raise ValueError(f"{self.name}: no storegate attached and no data given")
        elif self._dataloader_args is not None:
            source = _StoreBatches(self, phase, with_targets=False)
        else:
            source = BatchSource(self.read_vars(self._input_var_names, phase))
        model = self.ml.model
        model.eval()
        device = self.torch_device
        chunks: list[Any] = []
        with torch.no_grad(), self._progress(0, phase, self._num_batches(source, phase)) as bar:
            for inputs, _ in self._batches(source, phase, shuffle=False):
                with self._autocast():
                    outputs = self.step_model(batching.move(inputs, device, device.type == "cuda"))
                chunks.append(_detach(self.postprocess(outputs)))
                bar.update(1)
        return _concat(chunks)

    def postprocess(self, outputs: Any) -> Any:
        """Turn raw model outputs into stored predictions (identity here)."""
        return outputs

    # --------------------------------------------------------------- weights
    def dump_model(self, extra_args: dict[str, Any] | None = None) -> None:
        """Dump the (unwrapped) model weights to the Saver."""
        if self._saver is None:
            raise ValueError(f"{self.name}: save_weights is set but no saver is attached")
        key = self._weights_key(self._save_weights)
        self._saver.dump_ml(
            key, ml_type=self.ml_type, model=self.unwrapped_model, **(extra_args or {})
        )

    def load_model(self) -> None:
        """Load weights dumped under ``load_weights`` (or this task's unique id)."""
        if self._saver is None:
            raise ValueError(f"{self.name}: load_weights is set but no saver is attached")
        key = self._weights_key(self._load_weights)
        state = self._saver.load_ml(key)["state_dict"]
        if state is None:
            raise ValueError(f"{self.name}: Saver key {key!r} holds no model weights to load")
        self.unwrapped_model.load_state_dict(state)


class _StoreBatches(torch.utils.data.Dataset):
    """Batches read straight from the StoreGate (one fancy-index read per variable)."""

    def __init__(self, task: PytorchBaseTask, phase: str, with_targets: bool = True) -> None:
        self._storegate = task.storegate
        self._phase = phase
        self._inputs = task.input_var_names
        self._targets = task.true_var_names if with_targets else None
        self._length = (task.storegate.get_metadata().get("sizes") or {}).get(phase, 0)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> tuple[Any, Any]:
        if isinstance(index, slice):
            index = (index.start, index.stop)
        else:
            index = np.sort(np.asarray(index))
        inputs = read_vars(self._storegate, self._inputs, self._phase, index=index)
        targets = None
        if self._targets is not None:
            targets = read_vars(self._storegate, self._targets, self._phase, index=index)
        return batching.to_tensor(inputs), (
            batching.to_tensor(targets, targets=True) if targets is not None else None
        )


class _EarlyStopping:
    """Track the best validation loss and the weights that reached it."""

    def __init__(self, patience: int) -> None:
        self.patience = patience  # validated when max_patience is set (MLBaseTask)
        self.best = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.waited = 0

    def update(self, loss: float | None, model: nn.Module) -> bool:
        """Record an epoch; True when training should stop."""
        if loss is None:
            return False
        if loss < self.best:
            self.best = loss
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.waited = 0
            return False
        self.waited += 1
        return self.waited > self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights back into the model."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


class _EpochMeter:
    """Accumulate per-batch metrics on the device; synchronise once per epoch."""

    def __init__(self, metrics: list[str | Callable[..., Any]], task: PytorchBaseTask) -> None:
        known = {"loss", "acc", "lr", "subloss"}
        for metric in metrics:
            if not callable(metric) and metric not in known:
                raise ValueError(
                    f"{task.name}: unknown metric {metric!r}; allowed: {sorted(known)} or a "
                    "callable fn(outputs, targets)"
                )
        self._metrics = metrics
        self._report_loss = "loss" in metrics
        self._others = [m for m in metrics if m not in ("loss", "lr")]
        self._losses: list[torch.Tensor] = []
        self._sizes: list[int] = []
        self._task = task
        self._count = 0
        self._sums: dict[str, Any] = {}
        self._sublosses: list[Any] | None = None

    def _add(self, key: str, value: Any) -> None:
        self._sums[key] = self._sums[key] + value if key in self._sums else value

    def update(self, outputs: Any, targets: Any, loss: Any, sublosses: list[Any], n: int) -> None:
        self._count += n
        self._losses.append(loss.detach())  # always: early stopping and schedulers need it
        self._sizes.append(n)
        for metric in self._others:
            if metric == "acc":
                self._add("acc", _correct(self._task, outputs, targets))
            elif metric == "subloss" and sublosses:
                terms = [s.detach() * n if s is not None else None for s in sublosses]
                if self._sublosses is None:
                    self._sublosses = terms
                else:
                    self._sublosses = [
                        a + b if a is not None else None
                        for a, b in zip(self._sublosses, terms, strict=True)
                    ]
            elif callable(metric):
                value = metric(outputs, targets)
                value = value.detach() if isinstance(value, torch.Tensor) else value
                self._add(_metric_name(metric), value * n)

    def compute(self) -> tuple[dict[str, Any], float]:
        """The epoch's metrics (those asked for) and its sample-weighted mean loss."""
        count = max(self._count, 1)
        result = {}
        loss = float("nan")
        if self._losses:
            sizes = torch.tensor(self._sizes, dtype=torch.float32, device=self._losses[0].device)
            loss = float(torch.stack(self._losses).float() @ sizes) / count
        if self._report_loss:
            result["loss"] = loss
        result.update({key: float(value) / count for key, value in self._sums.items()})
        if self._sublosses is not None:
            result["subloss"] = [
                float(s) / count if s is not None else None for s in self._sublosses
            ]
        return result, loss


def _metric_name(metric: Callable[..., Any]) -> str:
    return getattr(metric, "__name__", type(metric).__name__)


def _correct(task: PytorchBaseTask, outputs: Any, targets: Any) -> torch.Tensor:
    """Number of correct class predictions in a batch (last output when there are several)."""
    loss = task.ml.loss
    if isinstance(outputs, list | tuple):
        outputs, targets = outputs[-1], targets[-1]
        loss = loss[-1] if isinstance(loss, list) else loss
    outputs = outputs.detach()
    if outputs.ndim >= 2 and outputs.shape[1] > 1:
        predicted = outputs.argmax(dim=1)
    else:
        threshold = 0.0 if isinstance(loss, nn.BCEWithLogitsLoss) else 0.5
        predicted = (outputs.reshape(len(outputs)) > threshold).long()
    if targets.ndim >= 2 and targets.shape[1] > 1:
        targets = targets.argmax(dim=1)
    return (predicted == targets.reshape(len(targets)).long()).sum()


def _detach(outputs: Any) -> Any:
    if isinstance(outputs, list | tuple):
        return [_detach(o) for o in outputs]
    return outputs.detach().float().cpu() if outputs.dtype.is_floating_point else outputs.cpu()


def _concat(chunks: list[Any]) -> Any:
    if not chunks:
        raise ValueError("nothing to predict: the phase has no rows")
    if isinstance(chunks[0], list):
        return [_concat([c[i] for c in chunks]) for i in range(len(chunks[0]))]
    return torch.cat(chunks).numpy()
