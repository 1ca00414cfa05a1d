r"""Trains C-GMVAE (or an MLP baseline), selects the best epoch on validation, reports test metrics.

  python launch/train.py --config=configs/yeast.py --workdir=runs/yeast \
      --config.num_epochs=50 --config.data_dir=../shared/datasets

Running again with the same --workdir resumes from its latest checkpoint. Outputs in the
workdir: config.json, metrics.jsonl (one line per epoch), checkpoints/, model/ (the trained
model, `cgmvae_jax.load(workdir)`), tensorboard/, results.json (docs/training.md).

Several processes (hosts) train one model together when given a coordinator (docs/multihost.md):

  python launch/train.py --config=configs/yeast.py --workdir=runs/yeast \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0   # and =1 elsewhere
"""

import datetime
import os
import sys
import traceback

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from cgmvae_jax import checkpoint, config_lib, metrics, processes, sharding, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, e.g. configs/yeast.py.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>-<timestamp>).")
flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0 for a run of several processes (default $JAX_COORDINATOR_ADDRESS).",
)
flags.DEFINE_integer(
    "num_processes", None, "Processes of a multi-process run (default $JAX_NUM_PROCESSES)."
)
flags.DEFINE_integer(
    "process_id", None, "This process's index, 0 .. num_processes-1 (default $JAX_PROCESS_ID)."
)
flags.DEFINE_enum(
    "distributed",
    None,
    ["auto", "off"],
    "auto: join a multi-process run with the settings JAX detects (SLURM, Open MPI, Cloud TPU) "
    "for those not given; off: one process whatever the environment says. Default: several "
    "processes when a coordinator address is given.",
)
flags.mark_flags_as_required(["config"])


def default_workdir(config_path: str) -> str:
    name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{name}-{stamp}")


def join_processes() -> bool:
    """`sharding.initialize_distributed` from the flags; True on a run of several processes."""
    if FLAGS.distributed == "off":
        return False
    return sharding.initialize_distributed(
        FLAGS.coordinator_address,
        FLAGS.num_processes,
        FLAGS.process_id,
        auto=FLAGS.distributed == "auto",
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        join_processes()  # before any other JAX call
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    who = f"error ({processes.label()})" if processes.count() > 1 else "error"
    if processes.count() > 1 and not FLAGS.workdir:
        print(f"{who}: a run of several processes needs --workdir (one for all).", file=sys.stderr)
        return 1
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
        ValueError,
        FloatingPointError,  # train.NonFiniteError, checkpoint.NonFiniteCheckpointError
        OSError,  # train.OutputWriteError (full disk, permissions), unreadable files
        train.WorkdirLockedError,
        checkpoint.UnreadableCheckpointError,
        processes.OtherProcessFailedError,
        jax.errors.JaxRuntimeError,  # a collective whose peer process went away
    ) as e:
        print(f"{who}: {e}", file=sys.stderr)
        if hint := processes.peer_failure_hint(e):
            print(hint, file=sys.stderr)
        return 1
    if not processes.is_primary():
        return 0  # process 0 reports the results
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


def run(argv) -> int:
    """`main`, and on a failed process of a multi-process run an immediate exit.

    A failed process that exited normally would wait at JAX's shutdown barrier for the others
    while they wait for it in their next collective; exiting at once fails those collectives.
    """
    try:
        code = main(argv)
    except KeyboardInterrupt:
        code = 130
    except Exception:
        if not jax.distributed.is_initialized():
            raise
        traceback.print_exc()
        code = 1
    if code and jax.distributed.is_initialized():
        processes.exit_now(code)
    return code


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(run(argv)), flags_parser=config_lib.parse_flags)
