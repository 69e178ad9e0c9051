"""Per-job overhead of a multirun: a 12-job sweep of trivial jobs on the joblib launcher.

Runs ``python -m multiml -m`` on the default task shrunk to trivial jobs (200 events,
1 epoch) with 4 x 3 = 12 combinations, ``hydra/launcher=joblib hydra.launcher.n_jobs=2
devices=[cpu,cpu]``, in a temporary directory. ``jobs_work_s`` is the jobs' own wall time
(their ``wall_s``) divided by the 2 parallel slots; ``overhead_per_job_s`` =
(sweep wall time - jobs_work_s) / 12 (target: about 1 s or less).

    python benchmarks/multirun_overhead.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import report, timed

ARGS = [
    "-m",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    "devices=[cpu,cpu]",
    "tensorboard=false",
    "task.data.num_events=200",
    "task.steps.regression.subtasks.mlp.hps.optimizer__lr=[0.1,0.03,0.01,0.003]",
    "task.steps.regression.subtasks.mlp.task.num_epochs=1",
    "task.steps.classification.subtasks.mlp.task.num_epochs=1",
    "task.steps.classification.subtasks.linear.task.num_epochs=1",
]


def one_sweep() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        sweep_dir = Path(tmp) / "sweep"
        command = [sys.executable, "-m", "multiml", *ARGS, f"hydra.sweep.dir={sweep_dir}"]
        seconds, proc = timed(
            lambda: subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        records = [json.loads(p.read_text()) for p in sweep_dir.glob("c*/result.json")]
    work = sum(r["wall_s"] for r in records) / 2
    return {
        "jobs": len(records),
        "sweep_s": seconds,
        "jobs_work_s": work,
        "overhead_per_job_s": (seconds - work) / len(records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rounds = [one_sweep() for _ in range(args.repeats)]
    report(
        {
            "benchmark": "multirun_overhead",
            "jobs": rounds[0]["jobs"],
            "sweep_s": [round(r["sweep_s"], 2) for r in rounds],
            "jobs_work_s": [round(r["jobs_work_s"], 2) for r in rounds],
            "overhead_per_job_s": [round(r["overhead_per_job_s"], 2) for r in rounds],
        }
    )


if __name__ == "__main__":
    main()
