"""TensorBoard event files: written by a training run and read back."""

import glob
import json
import os
import shutil
import struct
import tempfile

from absl.testing import absltest

from cgmvae_jax import train, writers
from tests import helpers


def read_scalars(logdir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every event file under `logdir` (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            content = f.read()
        offset = 0
        while offset < len(content):
            (length,) = struct.unpack("<Q", content[offset : offset + 8])
            event = event_pb2.Event()
            event.ParseFromString(content[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4  # length, its CRC, the record, its CRC
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


class EventFileTest(absltest.TestCase):
    def test_training_writes_the_expected_tags_per_epoch(self):
        root = tempfile.mkdtemp(prefix="writers_test_")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        config = helpers.smoke_config(num_seeds=2, tensorboard=True)
        train.train_and_evaluate(config, root)
        scalars = read_scalars(os.path.join(root, "tensorboard"))
        expected = {
            "lr",
            "samples_per_sec",
            "train/loss",
            "train/kl",
            "train/contrastive",
            "train/grad_norm",
            "val/macro_f1",
            "val/example_f1",
            "val/tuned_macro_f1",
            "val/tuned_macro_f1_per_seed/seed_1",
            "val/tuned_macro_f1_per_seed/seed_2",
        }
        self.assertEmpty(expected - set(scalars))
        epochs = set(range(config.num_epochs))
        for tag in expected:
            self.assertEqual(set(scalars[tag]), epochs, tag)
        with open(os.path.join(root, "metrics.jsonl")) as f:
            last = [json.loads(line) for line in f][-1]
        self.assertAlmostEqual(scalars["train/loss"][last["epoch"]], last["train_loss"], places=5)
        self.assertAlmostEqual(scalars["lr"][0], config.learning_rate, places=7)

    def test_off_switch_and_tag_names(self):
        root = tempfile.mkdtemp(prefix="writers_test_")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        train.train_and_evaluate(helpers.smoke_config(tensorboard=False), root)
        self.assertFalse(os.path.exists(os.path.join(root, "tensorboard")))
        self.assertEqual(writers.tag_of("train_bce_feat"), "train/bce_feat")
        self.assertEqual(writers.tag_of("val_tuned_threshold"), "val/tuned_threshold")
        self.assertEqual(writers.tag_of("lr"), "lr")


if __name__ == "__main__":
    absltest.main()
