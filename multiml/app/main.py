"""``python -m multiml``: the Hydra application.

>>> # python -m multiml                                       the default experiment
>>> # python -m multiml agent=random agent.samplings=3 seed=1
>>> # python -m multiml task=iris metric=acc storegate=zarr
>>> # python -m multiml --help                                groups and options

Importing this module does not import torch (``--help`` and ``--cfg job`` stay fast);
torch is imported once something trains.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from multiml.app import config as _config  # noqa: F401  (registers the schemas)
from multiml.app.build import ConfigError

logger = logging.getLogger("multiml.app")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Compose the config, run the experiment, leave results in the run directory."""
    from multiml.app.job import run_combination_job
    from multiml.app.run import run_experiment

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        if cfg.combination.index is not None:
            return run_combination_job(cfg, output_dir, Path(hydra_cfg.sweep.dir))
        return run_experiment(cfg, output_dir)
    except ConfigError as exc:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        logger.error("configuration error: %s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
