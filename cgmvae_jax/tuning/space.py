"""The search space: one table of config fields and their ranges, and a trial's config.

`SPACE` is the paper's Appendix B.1 search space plus the batch size and the number of epochs
(docs/tuning.md says why each range is what it is). Every entry is a top-level config field, so
a trial's parameters are `--config.NAME=value` overrides of the base config; extending the search
is one more row. Nothing here imports optuna: `suggest` only calls the methods of the trial it
is given.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from cgmvae_jax import config_lib

# A trial's batch size leaves at least this many batches per epoch (small data sets).
MIN_BATCHES_PER_EPOCH = 4

# Fields that do not change what a run computes: left out of a study's identity and of a
# tuned config file.
RUNTIME_FIELDS = config_lib.RUNTIME_FIELDS


@dataclasses.dataclass(frozen=True)
class Param:
    """How one config field is searched: a log-uniform range [low, high], or a set of choices.

    Attributes:
      low, high: Bounds of a log-uniform float (when `choices` is empty).
      choices: The values of a categorical parameter.
      default: Searched when `--space` is not given.
    """

    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()
    default: bool = True

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(f"{v:g}" for v in self.choices) + "}"
        return f"log-uniform {self.low:g} ... {self.high:g}"


_WEIGHTS = (0.1, 0.5, 1.0, 1.5, 2.0)

SPACE = {
    # Paper Appendix B.1.
    "learning_rate": Param(low=1e-4, high=4e-3),
    "contrastive_weight": Param(choices=_WEIGHTS),  # alpha
    "bce_weight": Param(choices=_WEIGHTS),  # beta
    "embedding_dim": Param(choices=(512, 1024, 2048, 3072)),  # E
    "dropout_rate": Param(choices=(0.3, 0.5, 0.7)),
    # Table 7 uses 128 and 256; 32 and 64 suit the small data sets. Capped so that an epoch has
    # at least MIN_BATCHES_PER_EPOCH batches (`fit_to_data`).
    "batch_size": Param(choices=(32, 64, 128, 256)),
    # The ends of the cosine cycles of the default schedule (restart_period 50, restart_mult 2:
    # restarts at epochs 50, 150, 350), where the learning rate has decayed to eta_min, plus
    # the paper's 100.
    "num_epochs": Param(choices=(50, 100, 150, 350)),
    # In Appendix B.1 too, but off unless named in --space: Table 7 gives no per-data-set value
    # (the official script's coupled L2 of 1e-5 is the base config's).
    "weight_decay": Param(choices=(0.0, 1e-4, 1e-2), default=False),
}


def select(names: list[str] | tuple[str, ...] | None = None) -> dict[str, Param]:
    """The entries of `SPACE` named in `names` (in table order); the default ones for None."""
    if not names:
        return {k: p for k, p in SPACE.items() if p.default}
    unknown = [n for n in names if n not in SPACE]
    if unknown:
        raise ValueError(
            f"--space: unknown parameter(s) {', '.join(unknown)}; the searchable fields are "
            f"{', '.join(SPACE)} (cgmvae_jax/tuning/space.py, SPACE)."
        )
    return {k: p for k, p in SPACE.items() if k in names}


def fit_to_data(space: dict[str, Param], num_train: int) -> dict[str, Param]:
    """`space` with the batch sizes capped to leave MIN_BATCHES_PER_EPOCH batches per epoch.

    When no listed size fits (fewer than 4 * 32 training rows), the one choice left is
    num_train // MIN_BATCHES_PER_EPOCH.
    """
    if "batch_size" not in space:
        return space
    cap = max(1, num_train // MIN_BATCHES_PER_EPOCH)
    sizes = tuple(b for b in space["batch_size"].choices if b <= cap) or (cap,)
    return {**space, "batch_size": dataclasses.replace(space["batch_size"], choices=sizes)}


def suggest(trial, space: dict[str, Param]) -> dict:
    """Draws the trial's value of every parameter of `space` (an `optuna.Trial`)."""
    params = {}
    for name, p in space.items():
        if p.choices:
            params[name] = trial.suggest_categorical(name, list(p.choices))
        else:
            params[name] = trial.suggest_float(name, p.low, p.high, log=True)
    return params


def trial_config(base: ml_collections.ConfigDict, params: dict) -> ml_collections.ConfigDict:
    """The base config with a trial's parameters.

    The schedule's floor `eta_min` (2e-4 by default) is lowered to the learning rate when the
    trial's is smaller, so that the cosine still decays (to a constant learning rate).
    """
    config = base.copy_and_resolve_references()
    for name, value in params.items():
        config[name] = value
    if float(config.eta_min) > float(config.learning_rate):
        config.eta_min = float(config.learning_rate)
    config_lib.validate(config)
    return config
