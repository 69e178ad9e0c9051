"""Training throughput: one PytorchBaseTask ``fit()`` vs a hand-written PyTorch loop.

Both train the same MLP (32 → 64 → 64 → 2, SGD, cross-entropy) on the same 80 % train
split with the same batch size, one torch thread each, alternating runs in one process.
The figure is train samples per second; ``ratio`` = framework / plain (target >= 0.90).

    python benchmarks/fit_throughput.py --events 100000 --epochs 2 --batch 256 --repeats 5
"""

from __future__ import annotations

import argparse
import itertools
import logging

import numpy as np
import torch
from _common import best_of, report, timed
from torch import nn

LAYERS = [32, 64, 64, 2]


def make_data(events: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(events, LAYERS[0])).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.int64)
    return x, y


def plain(x: np.ndarray, y: np.ndarray, epochs: int, batch: int) -> float:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(LAYERS):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    n_train = int(len(x) * 0.8)
    inputs, targets = torch.from_numpy(x[:n_train]), torch.from_numpy(y[:n_train])

    def train() -> None:
        for _ in range(epochs):
            order = torch.randperm(n_train)
            for start in range(0, n_train, batch):
                index = order[start : start + batch]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(inputs[index]), targets[index]).backward()
                optimizer.step()

    seconds, _ = timed(train)
    return n_train * epochs / seconds


def framework(x: np.ndarray, y: np.ndarray, epochs: int, batch: int) -> float:
    from multiml import StoreGate
    from multiml.task.pytorch import PytorchBaseTask

    storegate = StoreGate(data_id="bench")
    storegate.add_data("x", x, phase=(0.8, 0.1, 0.1))
    storegate.add_data("label", y, phase=(0.8, 0.1, 0.1))
    storegate.compile()
    task = PytorchBaseTask(
        storegate=storegate,
        input_var_names="x",
        output_var_names="pred",
        true_var_names="label",
        model="MLPBlock",
        model_args={"layers": LAYERS},
        optimizer="SGD",
        optimizer_args={"lr": 0.01},
        loss="CrossEntropyLoss",
        num_epochs=epochs,
        batch_size=batch,
        phases=["train"],
    )
    task.compile()
    seconds, _ = timed(task.fit)
    return int(len(x) * 0.8) * epochs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("multiml").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = make_data(args.events)
    ratios: list[float] = []
    plains: list[float] = []
    frames: list[float] = []

    def one_round() -> float:
        p = plain(x, y, args.epochs, args.batch)
        f = framework(x, y, args.epochs, args.batch)
        plains.append(p)
        frames.append(f)
        ratios.append(f / p)
        return f / p

    median, _ = best_of(args.repeats, one_round)
    report(
        {
            "benchmark": "fit_throughput",
            "events": args.events,
            "epochs": args.epochs,
            "batch": args.batch,
            "plain_samples_per_s": round(float(np.median(plains))),
            "framework_samples_per_s": round(float(np.median(frames))),
            "ratio_median": round(median, 3),
            "ratios": [round(r, 3) for r in ratios],
        }
    )


if __name__ == "__main__":
    main()
