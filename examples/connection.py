"""Two PyTorch steps, pre-trained separately, then connected and re-trained end to end.

Run it with::

    python examples/connection.py
    python examples/connection.py --seed 3 --samples 4000

A synthetic measurement problem (generated with ``numpy.random.default_rng(seed)``):
each event has a hidden quantity ``h ~ N(0, 1)`` seen only through 8 noisy sensors
(``sensor_i = gain_i * h + 0.2 * gain_i * h**2 + noise``), and its class is ``h > 0.5``.

- ``step0`` (regression, :class:`~multiml.task.pytorch.PytorchBaseTask`): an MLP estimates
  ``h`` from the sensors and writes the estimate ``h_pred``; it is trained on the true
  ``h`` (the known intermediate target of the multi-step problem).
- ``step1`` (classification, :class:`~multiml.task.pytorch.PytorchClassificationTask`):
  an MLP classifies each event from ``h_pred`` alone and writes class probabilities
  ``prob``.

``ConnectionGridSearchAgent`` runs a 2 x 2 grid (step 0's hidden layers x step 1's
learning rate). For each combination it pre-trains both steps, connects them into one
``ModelConnectionTask`` (step 0's output feeds step 1's input, because step 1 reads the
variable step 0 writes), trains the connected model on both losses, and measures the test
accuracy of ``prob``. It takes a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np

from multiml import Saver, StoreGate, TaskScheduler
from multiml.agent import ConnectionGridSearchAgent
from multiml.task.pytorch import PytorchBaseTask, PytorchClassificationTask

logger = logging.getLogger("connection")

NUM_SENSORS = 8
SPLIT = (0.6, 0.2, 0.2)


def make_data(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Sensors ``(N, 8)``, hidden ``h`` ``(N, 1)`` and class ``label`` ``(N,)``."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(num_samples, 1))
    gains = rng.uniform(0.5, 1.5, size=NUM_SENSORS)
    noise = rng.normal(scale=0.8, size=(num_samples, NUM_SENSORS))
    sensors = gains * hidden + 0.2 * gains * hidden**2 + noise
    return {
        "sensors": sensors.astype(np.float32),
        "h": hidden.astype(np.float32),
        "label": (hidden[:, 0] > 0.5).astype(np.int64),
    }


def build_storegate(num_samples: int, seed: int) -> StoreGate:
    """The synthetic data, split (0.6, 0.2, 0.2) into train, valid and test."""
    storegate = StoreGate(data_id="sensors")
    for name, array in make_data(num_samples, seed).items():
        storegate.add_data(name, array, phase=SPLIT)
    storegate.compile(show_info=True)
    return storegate


def build_task_scheduler(num_epochs: int = 15) -> TaskScheduler:
    """``step0`` (regress ``h``, 2 architectures) → ``step1`` (classify, 2 learning rates)."""
    common = {"optimizer": "Adam", "num_epochs": num_epochs, "batch_size": 64, "device": "cpu"}
    regress = PytorchBaseTask(
        model="MLPBlock",
        model_args={"input_shape": NUM_SENSORS, "output_shape": 1, "layers": [16]},
        optimizer_args={"lr": 1e-2},
        loss="MSELoss",
        input_var_names="sensors",
        output_var_names="h_pred",
        true_var_names="h",
        **common,
    )
    classify = PytorchClassificationTask(
        model="MLPBlock",
        model_args={"input_shape": 1, "output_shape": 2, "layers": [16]},
        input_var_names="h_pred",
        output_var_names="prob",
        true_var_names="label",
        **common,
    )
    scheduler = TaskScheduler()
    scheduler.add_task("step0")
    scheduler.add_subtask(
        "step0", "regress_h", env=regress, hps={"model__layers": [[16], [32, 32]]}
    )
    scheduler.add_task("step1", parents="step0")
    scheduler.add_subtask("step1", "classify", env=classify, hps={"optimizer__lr": [3e-3, 1e-2]})
    return scheduler


def main(argv: Sequence[str] | None = None) -> ConnectionGridSearchAgent:
    """Run the connected 2 x 2 search; return the finished agent
    (``agent.get_best_result()`` is the best combination)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--samples", type=int, default=2000, help="number of events")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of every training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    agent = ConnectionGridSearchAgent(
        storegate=build_storegate(args.samples, args.seed),
        saver=Saver(mode="dict"),
        task_scheduler=build_task_scheduler(args.epochs),
        metric="ACC",
        metric_args={"var_names": "prob label"},
        seed=args.seed,
        connectiontask_args={
            "optimizer": "Adam",
            "optimizer_args": {"lr": 3e-3},
            "num_epochs": args.epochs,
            "batch_size": 64,
            "loss_weights": [0.5, 1.0],  # keep step 0 a good estimator of h
            "device": "cpu",
        },
    )
    agent.execute()
    agent.finalize()
    best = agent.get_best_result()
    regress_hps, classify_hps = best["subtask_hps"]
    logger.info(
        "best: step0 layers=%s, step1 lr=%g -> connected test accuracy %.3f",
        regress_hps["model__layers"],
        classify_hps["optimizer__lr"],
        best["metric_value"],
    )
    return agent


if __name__ == "__main__":
    main()
