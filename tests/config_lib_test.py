"""Tests of config_lib: defaults, the Table 7 rows, validation, paths and round trips."""

import glob
import os
import re

import ml_collections
from absl.testing import absltest, parameterized

from cgmvae_jax import config_lib
from tests import helpers

CONFIG_FILES = sorted(
    os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(helpers.REPO, "configs", "*.py"))
)


class DefaultsTest(absltest.TestCase):
    def test_base_config_validates_and_has_the_contract_fields(self):
        config = config_lib.base_config()
        config_lib.validate(config)
        for field in (
            "dataset", "data_dir", "seed", "split_seed", "batch_size", "num_epochs",
            "learning_rate", "eta_min", "restart_period", "restart_mult", "weight_decay",
            "latent_dim", "embedding_dim", "feature_hidden", "label_hidden", "decoder_hidden",
            "dropout_rate", "bce_weight", "kl_weight", "contrastive_weight", "temperature",
            "prior", "train_fraction", "val_fraction", "test_fraction", "standardize",
            "threshold", "steps_per_call", "dtype", "tensorboard",
        ):  # fmt: skip
            self.assertIn(field, config)
        self.assertEqual((config.latent_dim, config.weight_decay), (64, 1e-5))

    def test_docs_list_every_field_once(self):
        with open(os.path.join(helpers.REPO, "docs", "training.md"), encoding="utf-8") as f:
            rows = re.findall(r"^\| `([a-z_0-9]+)` \|", f.read(), re.M)
        fields = set(config_lib.base_config())
        documented = [r for r in rows if r in fields]
        self.assertEqual(set(documented), fields)
        self.assertLen(documented, len(fields))

    def test_every_choice_default_is_a_choice(self):
        config = config_lib.base_config()
        for field, choices in config_lib.CHOICES.items():
            self.assertIn(config[field], choices, field)


class Table7Test(parameterized.TestCase):
    @parameterized.parameters(*config_lib.TABLE7, *config_lib.TABLE7_BORROWED)
    def test_dataset_config_applies_its_row(self, name):
        config = config_lib.dataset_config(name)
        row = config_lib.TABLE7[config_lib.TABLE7_BORROWED.get(name, name)]
        self.assertEqual(config.dataset, name)
        for field, value in row.items():
            self.assertEqual(config[field], value, field)
        config_lib.validate(config)

    def test_paper_values(self):  # spot checks against spec/PAPER_RESULTS.md Table 7
        nus = config_lib.dataset_config("nus_vec")
        self.assertEqual((nus.learning_rate, nus.embedding_dim, nus.batch_size), (0.004, 1024, 256))
        scene = config_lib.dataset_config("scene")
        self.assertEqual((scene.learning_rate, scene.dropout_rate), (0.003, 0.3))
        self.assertEqual(config_lib.dataset_config("reuters").decoder_hidden, (512, 512))

    @parameterized.parameters(*[n for n in CONFIG_FILES if n in config_lib.TABLE7])
    def test_config_files_are_their_table_row(self, name):
        self.assertEqual(
            helpers.load_config(name).to_dict(), config_lib.dataset_config(name).to_dict()
        )

    @parameterized.parameters(*CONFIG_FILES)
    def test_every_config_file_validates(self, name):
        config_lib.validate(helpers.load_config(name))

    def test_overrides(self):
        config = config_lib.dataset_config("yeast", num_epochs=7, model="mlp")
        self.assertEqual((config.num_epochs, config.model), (7, "mlp"))


class ValidateTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("temperature", {"temperature": 0.0}, r"--config.temperature=0.0: must be > 0"),
        ("fraction", {"train_fraction": 1.5}, r"train_fraction=1.5: must be in \(0, 1\]"),
        ("hidden", {"feature_hidden": (4, 0)}, r"every hidden size must be positive"),
        ("choice", {"prior": "gaussian"}, r"prior='gaussian': must be one of mixture, unimodal"),
        ("eta_min", {"eta_min": 1.0}, r"eta_min=1.0: must be in \[0, learning_rate\]"),
        ("fractions", {"val_fraction": 0.5, "test_fraction": 0.5}, r"must leave rows"),
        ("window", {"selection_window": 0}, r"selection_window=0: must be a positive"),
        ("checkpoint", {"checkpoint_every_secs": -1.0}, r"checkpoint_every_secs=-1.0"),
    )
    def test_bad_values_are_reported(self, overrides, pattern):
        config = config_lib.base_config()
        for field, value in overrides.items():
            config[field] = value
        with self.assertRaisesRegex(ValueError, pattern):
            config_lib.validate(config)

    def test_every_problem_is_listed_and_unknown_fields_get_a_suggestion(self):
        config = ml_collections.ConfigDict(config_lib.base_config().to_dict())
        config.temperature = -1.0
        config.dropout_rate = 1.0
        config.num_epoch = 3
        with self.assertRaises(ValueError) as cm:
            config_lib.validate(config)
        text = str(cm.exception)
        self.assertIn("--config.temperature=-1.0", text)
        self.assertIn("--config.dropout_rate=1.0", text)
        self.assertIn("--config.num_epoch: unknown field; did you mean --config.num_epochs?", text)

    def test_check_choice_names_the_argument(self):
        config_lib.check_choice("prior", "mixture")
        with self.assertRaisesRegex(ValueError, r"^param_init must be one of torch, flax"):
            config_lib.check_choice("init", "xavier", "param_init")


class PathsTest(absltest.TestCase):
    def test_with_absolute_paths_resolves_data_dir_and_a_dataset_path(self):
        config = config_lib.base_config()
        config.data_dir = "data"
        config.dataset = "sub/mine.npz"
        resolved = config_lib.with_absolute_paths(config)
        self.assertEqual(resolved.data_dir, os.path.abspath("data"))
        self.assertEqual(resolved.dataset, os.path.abspath("sub/mine.npz"))
        self.assertEqual(config.data_dir, "data")  # the argument is not modified
        named = config_lib.base_config()
        named.dataset = "yeast"
        self.assertEqual(config_lib.with_absolute_paths(named).dataset, "yeast")

    def test_from_dict_round_trip_keeps_tuples_and_ignores_unknown_keys(self):
        config = config_lib.dataset_config("reuters")
        values = {**config.to_dict(), "feature_hidden": [8, 8], "not_a_field": 1}
        again = config_lib.from_dict(values)
        self.assertEqual(again.feature_hidden, (8, 8))
        self.assertEqual(again.decoder_hidden, (512, 512))
        self.assertNotIn("not_a_field", again)


if __name__ == "__main__":
    absltest.main()
