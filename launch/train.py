r"""Trains C-GMVAE (or an MLP baseline), selects the best epoch on validation, reports test metrics.

  python launch/train.py --config=configs/yeast.py --workdir=runs/yeast \
      --config.num_epochs=50 --config.data_dir=../shared/datasets

Running again with the same --workdir resumes from its latest checkpoint. Outputs in the
workdir: config.json, metrics.jsonl (one line per epoch), checkpoints/, model/ (the trained
model, `cgmvae_jax.load(workdir)`), tensorboard/, results.json (docs/training.md).
"""

import datetime
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cgmvae_jax import checkpoint, config_lib, data, metrics, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, e.g. configs/yeast.py.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>-<timestamp>).")
flags.mark_flags_as_required(["config"])


def default_workdir(config_path: str) -> str:
    name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{name}-{stamp}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    workdir = FLAGS.workdir or default_workdir(FLAGS["config"].config_filename)
    logging.info("workdir: %s", os.path.abspath(workdir))
    try:
        with checkpoint.quiet_orbax():
            results = train.train_and_evaluate(FLAGS.config, workdir)
    except train.TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print(
            "Stopped by a second interrupt: the current epoch was abandoned. Run the same "
            "command again to resume from the latest checkpoint.",
            file=sys.stderr,
        )
        return 130
    except (
        data.DatasetNotFoundError,  # also an OSError; listed for the reader
        ValueError,
        FloatingPointError,  # train.NonFiniteError, checkpoint.NonFiniteCheckpointError
        OSError,  # train.OutputWriteError (full disk, permissions), unreadable files
        train.WorkdirLockedError,
        checkpoint.UnreadableCheckpointError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    test = results["test"]
    print(f"Results of {results['dataset']} (best epoch {results['best_epoch']}), test split:")
    keys = ("example_f1", "micro_f1", "macro_f1", "hamming_accuracy", "precision_at_1")
    print(f"  {'protocol':<15}" + "".join(f"{k:>18}" for k in keys))
    for protocol in metrics.PROTOCOLS:
        print(f"  {protocol:<15}" + "".join(f"{test[protocol][k]:>18.4f}" for k in keys))
    print("  ('official' = best threshold per metric on the test split: optimistic)")
    constant = results["constant_baseline"]["test"]
    print(
        "Constant predictor (training label frequencies), test macro-F1: "
        + ", ".join(f"{p} {constant[p]['macro_f1']:.4f}" for p in metrics.PROTOCOLS)
    )
    print(f"Written to {os.path.join(os.path.abspath(workdir), 'results.json')}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=config_lib.parse_flags)
