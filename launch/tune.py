r"""Searches hyper-parameters on validation with optuna (TPE sampler, median pruning).

  python launch/tune.py --config=configs/yeast.py --workdir=runs/tune/yeast --trials=40 \
      --config.data_dir=../shared/datasets

Every trial is an ordinary training run in WORKDIR/trials/NNNN/ (`--config.FIELD=value` sets the
base of every trial); its score is a validation number of its best epoch. Running the same
command again continues the study (an interrupted trial resumes from its checkpoint); --trials
counts the finished trials of all runs. Outputs in WORKDIR: optuna.db, trials.csv, trials.md and
the winner's config file <config name>_tuned.py. See docs/tuning.md.
"""

import os
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from cgmvae_jax import checkpoint, config_lib, metrics, train, tuning

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Base config of every trial, e.g. configs/yeast.py.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Study directory (run again with it to continue).")
flags.DEFINE_integer("trials", 30, "Finished trials in total (complete, pruned or failed).")
flags.DEFINE_float("timeout", None, "Stop after this many seconds (the trial resumes later).")
flags.DEFINE_list(
    "space",
    None,
    f"Fields to search, from: {', '.join(tuning.SPACE)} (default: all but weight_decay).",
)
flags.DEFINE_enum("protocol", "val_per_metric", metrics.PROTOCOLS, "Objective's protocol.")
flags.DEFINE_list(
    "metrics", ["macro_f1", "example_f1"], "Objective: mean of these validation metrics."
)
flags.DEFINE_enum("pruner", "median", ["median", "none"], "Pruning of unpromising trials.")
flags.DEFINE_integer("prune_warmup", None, "Epochs before pruning (default restart_period).")
flags.DEFINE_integer("prune_startup", 5, "Complete trials before any trial is pruned.")
flags.DEFINE_integer("startup_trials", 10, "Random trials before TPE models the results.")
flags.DEFINE_integer("seed", 0, "Seed of the sampler (the models use --config.seed).")
flags.DEFINE_string("write_config", None, "Copy the winner's config here too.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    name = os.path.splitext(os.path.basename(FLAGS["config"].config_filename.split(":")[0]))[0]
    try:
        optuna = tuning.study.import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines are ours
        with checkpoint.quiet_orbax():
            summary = tuning.run_study(
                FLAGS.config,
                FLAGS.workdir,
                trials=FLAGS.trials,
                timeout=FLAGS.timeout,
                space=FLAGS.space,
                objective=tuning.Objective(FLAGS.protocol, tuple(FLAGS.metrics)),
                pruner=FLAGS.pruner,
                prune_warmup=FLAGS.prune_warmup,
                prune_startup=FLAGS.prune_startup,
                seed=FLAGS.seed,
                startup_trials=FLAGS.startup_trials,
                study_name=name,
                command=shlex.join(["python", *sys.argv]),
                write_config=FLAGS.write_config,
            )
    except train.TrainingInterrupted as e:
        print(f"{e} The study continues with that trial.", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print("Stopped: run the same command again to continue the study.", file=sys.stderr)
        return 130
    except (
        ImportError,  # optuna missing
        ValueError,  # flags, config, data, a study made with other settings
        OSError,
        train.WorkdirLockedError,
        checkpoint.UnreadableCheckpointError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["counts"].items()))
    finished = f"{summary['finished']} finished trial{'' if summary['finished'] == 1 else 's'}"
    print(f"Study {summary['study']}: {finished} ({counts}).")
    if summary["stopped"] == "timeout":
        print("Stopped at --timeout: run the same command again to continue.")
    best = summary["best"]
    if best is not None:
        params = " ".join(f"{k}={v}" for k, v in best["params"].items())
        print(
            f"Best: trial {best['number']}, {best['value']:.4f} (best epoch {best['best_epoch']})"
        )
        print(f"  {params}\n  run: {best['workdir']}")
    for kind, path in summary["files"].items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=config_lib.parse_flags)
