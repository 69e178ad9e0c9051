"""A two-step grid search vs the plain-loop time of its unique work.

Step 0 regresses 4 hidden quantities from 16 measurements (3 learning rates), step 1
classifies from step 0's output (4 learning rates): 12 combinations. Only 3 + 12
trainings are unique — a search that re-ran step 0 for every combination would do 12 + 12.
``limit_s`` is a hand-written PyTorch loop doing exactly the unique work (train, then
predict every row), measured in the same process; ``ratio = wall_s / limit_s`` (target
<= 1.3). Also reports the prefix-cache hits.

    python benchmarks/grid_two_step.py --events 40000 --epochs 3 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import logging

import numpy as np
import torch
from _common import best_of, report, timed
from torch import nn

BATCH = 256
LR0 = [0.1, 0.03, 0.01]
LR1 = [0.3, 0.1, 0.03, 0.01]


def make_data(events: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(events, 4)).astype(np.float32)
    mixing = rng.normal(size=(4, 16))
    x = (truth @ mixing + 0.3 * rng.normal(size=(events, 16))).astype(np.float32)
    label = (truth[:, 0] * truth[:, 1] > 0).astype(np.int64)
    return {"x": x, "truth": truth, "label": label}


def mlp(sizes: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def plain_unique_work(data: dict[str, np.ndarray], epochs: int) -> float:
    x, truth, label = (torch.from_numpy(data[k]) for k in ("x", "truth", "label"))
    n_train = int(len(x) * 0.8)

    def train_predict(
        sizes: list[int], inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module, lr: float
    ) -> torch.Tensor:
        model = mlp(sizes)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(epochs):
            order = torch.randperm(n_train)
            for start in range(0, n_train, BATCH):
                index = order[start : start + BATCH]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(inputs[index]), targets[index]).backward()
                optimizer.step()
        with torch.no_grad():
            return model(inputs)

    def work() -> None:
        for lr0 in LR0:
            mid = train_predict([16, 64, 64, 4], x, truth, nn.MSELoss(), lr0)
            for lr1 in LR1:
                train_predict([4, 32, 2], mid, label, nn.CrossEntropyLoss(), lr1)

    seconds, _ = timed(work)
    return seconds


def framework(data: dict[str, np.ndarray], epochs: int) -> tuple[float, float, int]:
    from multiml import StoreGate
    from multiml.agent.basic import GridSearchAgent
    from multiml.task.pytorch import PytorchBaseTask

    storegate = StoreGate(data_id="bench")
    for name, array in data.items():
        storegate.add_data(name, array, phase=(0.8, 0.1, 0.1))
    storegate.compile()
    common = {"optimizer": "SGD", "num_epochs": epochs, "batch_size": BATCH}
    step0 = PytorchBaseTask(
        input_var_names="x",
        output_var_names="mid",
        true_var_names="truth",
        model="MLPBlock",
        model_args={"layers": [16, 64, 64, 4]},
        loss="MSELoss",
        **common,
    )
    step1 = PytorchBaseTask(
        input_var_names="mid",
        output_var_names="pred",
        true_var_names="label",
        model="MLPBlock",
        model_args={"layers": [4, 32, 2]},
        loss="CrossEntropyLoss",
        **common,
    )
    agent = GridSearchAgent(
        storegate=storegate,
        task_scheduler=[[(step0, {"optimizer__lr": LR0})], [(step1, {"optimizer__lr": LR1})]],
        metric="ACC",
        metric_args={"pred_var_name": "pred", "true_var_name": "label"},
        saver=None,
    )
    seconds, _ = timed(lambda: (agent.execute(), agent.finalize()))
    return seconds, float(agent.result["metric_value"]), agent.runner.cache.hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("multiml").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = make_data(args.events)
    rounds: list[dict[str, float]] = []

    def one_round() -> float:
        limit = plain_unique_work(data, args.epochs)
        wall, best, hits = framework(data, args.epochs)
        rounds.append({"wall_s": wall, "limit_s": limit, "best": best, "hits": hits})
        return wall / limit

    median, _ratios = best_of(args.repeats, one_round)
    report(
        {
            "benchmark": "grid_two_step",
            "events": args.events,
            "epochs": args.epochs,
            "combinations": len(LR0) * len(LR1),
            "wall_s": [round(r["wall_s"], 2) for r in rounds],
            "limit_s": [round(r["limit_s"], 2) for r in rounds],
            "ratio_median": round(median, 2),
            "best_metric": rounds[-1]["best"],
            "prefix_cache_hits": rounds[-1]["hits"],
        }
    )


if __name__ == "__main__":
    main()
