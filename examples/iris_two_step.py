"""Two-step iris classification: feature selection, then an MLP, searched on a grid.

Run it with::

    python examples/iris_two_step.py              # in-memory results
    python examples/iris_two_step.py --save-dir results/iris --seed 3

The problem is split into two steps that exchange data through a StoreGate:

- ``step0`` — :class:`~multiml.task.SklearnPipelineTask` with scikit-learn's
  ``SelectKBest`` keeps the ``k`` most informative of the four iris measurements
  (``k`` in 1..4, an ANOVA F-test fitted on the train phase) and writes them to the
  variable ``features`` for every phase.
- ``step1`` — :class:`~multiml.task.pytorch.PytorchClassificationTask` trains an
  ``MLPBlock`` classifier on ``features`` with 4 learning rates. The MLP's input width must
  equal step 0's ``k``; the hyperparameter ``model__input_shape`` takes it from the Saver
  with the reference ``'saver__step0__model__k'``, resolved when each combination runs.

``GridSearchAgent`` runs all 4 x 4 = 16 combinations (step 0 is run once per ``k`` and
reused by the following combinations), scores each with the accuracy on the test phase,
and logs a table of results. The data ship with scikit-learn (no download); the whole
search takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from multiml import Saver, StoreGate, TaskScheduler
from multiml.agent import GridSearchAgent
from multiml.task import SklearnPipelineTask
from multiml.task.pytorch import PytorchClassificationTask

logger = logging.getLogger("iris_two_step")

K_VALUES = [1, 2, 3, 4]
LEARNING_RATES = [1e-3, 3e-3, 1e-2, 3e-2]
SPLIT = (0.6, 0.2, 0.2)


def build_storegate(seed: int) -> StoreGate:
    """Iris measurements ``x`` (150, 4) and labels ``label`` (150,), split 90/30/30."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    storegate = StoreGate(data_id="iris")
    # The same shuffle seed permutes both variables identically, so rows stay aligned.
    storegate.add_data("x", iris.data.astype("float32"), phase=SPLIT, shuffle=seed)
    storegate.add_data("label", iris.target, phase=SPLIT, shuffle=seed)
    storegate.compile(show_info=True)
    return storegate


def build_task_scheduler(num_epochs: int = 50) -> TaskScheduler:
    """``step0`` (SelectKBest, 4 values of k) → ``step1`` (MLP, 4 learning rates)."""
    select = SklearnPipelineTask(
        model="SelectKBest",
        input_var_names="x",
        output_var_names="features",
        true_var_names="label",
    )
    classify = PytorchClassificationTask(
        model="MLPBlock",
        model_args={"layers": [32, 32], "output_shape": 3},
        optimizer="Adam",
        input_var_names="features",
        output_var_names="pred",
        true_var_names="label",
        num_epochs=num_epochs,
        batch_size=32,
        max_patience=20,
        device="cpu",
    )
    scheduler = TaskScheduler()
    scheduler.add_task("step0")
    scheduler.add_subtask("step0", "select_k_best", env=select, hps={"model__k": K_VALUES})
    scheduler.add_task("step1", parents="step0")
    scheduler.add_subtask(
        "step1",
        "mlp",
        env=classify,
        hps={
            # step 0 recorded its hyperparameters as saver['step0']; read its k from there
            "model__input_shape": ["saver__step0__model__k"],
            "optimizer__lr": LEARNING_RATES,
        },
    )
    return scheduler


def main(argv: Sequence[str] | None = None) -> GridSearchAgent:
    """Run the 16-combination search; return the finished agent (``agent.result`` is the
    best combination, ``agent.history`` all 16)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="data split and training seed")
    parser.add_argument("--epochs", type=int, default=50, help="MLP training epochs")
    parser.add_argument("--save-dir", default=None, help="keep results on disk here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    saver = Saver(save_dir=args.save_dir) if args.save_dir else Saver(mode="dict")
    agent = GridSearchAgent(
        storegate=build_storegate(args.seed),
        saver=saver,
        task_scheduler=build_task_scheduler(args.epochs),
        metric="ACC",
        metric_args={"var_names": "pred label"},
        seed=args.seed,
    )
    agent.execute()
    agent.finalize()
    best = agent.result
    select_hps, mlp_hps = best["subtask_hps"]
    logger.info(
        "best: SelectKBest k=%d, MLP lr=%g -> test accuracy %.3f (job %d of %d)",
        select_hps["model__k"],
        mlp_hps["optimizer__lr"],
        best["metric_value"],
        best["job_id"],
        len(agent.history),
    )
    return agent


if __name__ == "__main__":
    main()
