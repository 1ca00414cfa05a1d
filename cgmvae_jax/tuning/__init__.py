"""Hyper-parameter search on validation with optuna (`launch/tune.py`, docs/tuning.md).

* `space`: the searched config fields and their ranges, one table (`SPACE`).
* `study`: `run_study` (trials as ordinary training runs, pruning, resuming) and `Objective`.
* `report`: trials.csv, trials.md and the winner's config file.

optuna is imported only when a study runs; without it `run_study` raises an ImportError that
says how to install it (`pip install -e ".[tune]"`).
"""

from cgmvae_jax.tuning import report, space, study
from cgmvae_jax.tuning.space import SPACE, Param
from cgmvae_jax.tuning.study import Objective, run_study

__all__ = ["SPACE", "Objective", "Param", "report", "run_study", "space", "study"]
