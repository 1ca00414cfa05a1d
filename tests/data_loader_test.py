"""Tests of finding and loading data sets (cgmvae_jax/data/loader.py) and of
launch/prepare_data.py, which converts any readable input to the project's npz."""

import os
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import config_lib, data
from tests import data_testing

toy, save_raw_npz = data_testing.toy, data_testing.save_raw_npz
write_libsvm = data_testing.write_libsvm


class LoaderTest(data_testing.TmpDirTest):
    def test_name_lookup_order_npz_then_directory(self):
        x, y = toy()
        write_libsvm(self.path("d", "d_train.txt"), x, y)
        write_libsvm(self.path("d", "d_test.txt"), x, y)
        self.assertEqual(self.load_quiet("d", self.tmp).source, self.path("d"))
        save_raw_npz(self.path("d.npz"), X=x, Y=y)
        self.assertEqual(self.load_quiet("d", self.tmp).source, self.path("d.npz"))

    @parameterized.named_parameters(
        ("label_location", dict(label_location="middle"), r"label_location='middle'; use 'end'"),
        ("num_labels", dict(num_labels=-1), r"num_labels=-1 must be >= 0"),
        ("meta_offset", dict(meta_offset=-2), r"meta_offset=-2 must be >= 0"),
        ("index_base", dict(index_base=2), r"index_base=2; use 0, 1 or None"),
    )
    def test_bad_reader_options(self, kwargs, pattern):
        x, y = toy()
        path = save_raw_npz(self.path("o.npz"), X=x, Y=y)
        with self.assertRaisesRegex(ValueError, pattern):
            data.load_dataset(path, **kwargs)

    def test_data_dir_defaults_to_environment(self):
        x, y = toy()
        save_raw_npz(self.path("envset.npz"), X=x, Y=y)
        with mock.patch.dict(os.environ, {"CGMVAE_DATA": self.tmp}):
            self.assertEqual(data.default_data_dir(), self.tmp)
            self.assertEqual(self.load_quiet("envset").num_examples, 20)
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(data.default_data_dir(), "./data")

    def test_not_found_message(self):
        with self.assertRaises(data.DatasetNotFoundError) as ctx:
            data.load_dataset("nus_vec", self.tmp)
        message = str(ctx.exception)
        self.assertIsInstance(ctx.exception, FileNotFoundError)
        self.assertIn(os.path.join(self.tmp, "nus_vec.npz"), message)
        self.assertIn(os.path.join(self.tmp, "nus_vec") + os.sep, message)
        self.assertIn("MPVAE_data.tar.gz", message)
        self.assertIn("python launch/train.py --config=configs/demo.py", message)
        self.assertIn(os.path.join(self.tmp, "nus_vec.npz"), ctx.exception.searched)

    def test_not_found_message_names_mulan_and_fetch(self):
        with self.assertRaisesRegex(
            data.DatasetNotFoundError,
            r"(?s)yeast.*shared collection.*"
            r"Mulan.*--config\.fetch=True",
        ):
            data.load_dataset("yeast", self.tmp)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"(?s)prepare_data\.py"):
            data.load_dataset("my_own_set", self.tmp)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Looked for:\n  .*nope\.npz"):
            data.load_dataset(self.path("nope.npz"))

    def test_did_you_mean_a_data_set_in_data_dir_or_a_known_name(self):
        x, y = toy()
        save_raw_npz(self.path("my_set.npz"), X=x, Y=y)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Did you mean 'my_set'\?"):
            data.load_dataset("my_sett", self.tmp)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Did you mean 'yeast'\?"):
            data.load_dataset("yaest", self.tmp)  # from the fetch registry
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Did you mean '.*my_set\.npz'\?"):
            data.load_dataset(self.path("my_sat.npz"))
        with self.assertRaises(data.DatasetNotFoundError) as ctx:
            data.load_dataset("qqqqqq", self.tmp)
        self.assertNotIn("Did you mean", str(ctx.exception))

    def test_missing_data_dir_is_reported_as_such(self):
        missing = self.path("no_such_dir")
        with self.assertRaisesRegex(
            data.DatasetNotFoundError,
            r"^data_dir .*no_such_dir does not exist; set --config\.data_dir or CGMVAE_DATA "
            r"to the directory that holds yeast\.npz",
        ):
            data.load_dataset("yeast", missing)
        config = config_lib.base_config()
        config.dataset, config.data_dir = "yeast", missing
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"^data_dir .* does not exist"):
            data.load_from_config(config)

    def test_empty_environment_variable_means_the_default_data_dir(self):
        cwd = os.getcwd()
        os.chdir(self.tmp)  # no ./data here
        self.addCleanup(os.chdir, cwd)
        with mock.patch.dict(os.environ, {"CGMVAE_DATA": ""}):
            self.assertEqual(data.default_data_dir(), "./data")
            with self.assertRaisesRegex(
                data.DatasetNotFoundError,
                r"^data_dir \./data \(the default: \$CGMVAE_DATA is not set\) does not exist",
            ):
                data.load_dataset("yeast")


class LoadFromConfigTest(data_testing.TmpDirTest):
    def test_load_from_config_synthetic(self):
        config = config_lib.base_config()
        config.synthetic_examples, config.synthetic_features, config.synthetic_labels = 300, 7, 5
        ds, s = data.load_from_config(config)
        self.assertEqual((ds.num_examples, ds.num_features, ds.num_labels), (300, 7, 5))
        self.assertEqual((len(s.train_index), len(s.val_index), len(s.test_index)), (240, 30, 30))
        np.testing.assert_array_equal(ds.x, data.synthetic_dataset(300, 7, 5, seed=1).x)

    def test_load_from_config_file_and_fractions(self):
        x, y = toy(n=100)
        save_raw_npz(self.path("c.npz"), X=x, Y=y)
        config = config_lib.base_config()
        config.dataset, config.data_dir = "c", self.tmp
        config.train_fraction, config.standardize = 0.5, False
        ds, s = data.load_from_config(config)
        self.assertEqual(ds.name, "c")
        self.assertLen(s.train_index, 40)
        self.assertIsNone(s.feature_mean)

    def test_load_from_config_random_split_ignores_predefined_split(self):
        x, y = toy(n=100)
        split = np.zeros(100, np.int8)
        split[70:] = 1
        save_raw_npz(self.path("p.npz"), X=x, Y=y, split=split)
        config = config_lib.base_config()
        config.dataset, config.data_dir = "p", self.tmp
        _, predefined = data.load_from_config(config)
        self.assertLen(predefined.test_index, 30)
        np.testing.assert_array_equal(np.sort(predefined.test_index), np.arange(70, 100))
        config.split = "random"
        _, random = data.load_from_config(config)
        self.assertEqual(
            (len(random.train_index), len(random.val_index), len(random.test_index)), (80, 10, 10)
        )
        self.assertFalse(set(random.test_index) <= set(range(70, 100)))

    def _config_for(self, name, **fields):
        config = config_lib.base_config()
        config.dataset, config.data_dir = name, self.tmp
        for key, value in fields.items():
            config[key] = value
        return config

    @parameterized.named_parameters(("random_split", None), ("carved_validation", 70))
    def test_split_seed_not_model_seed_decides_the_split(self, train_rows):
        x, y = toy(n=100)
        split = None if train_rows is None else np.r_[np.zeros(train_rows), np.ones(30)]
        arrays = {} if split is None else {"split": split.astype(np.int8)}
        save_raw_npz(self.path("s.npz"), X=x, Y=y, **arrays)
        runs = {
            (split_seed, seed): data.load_from_config(
                self._config_for("s", split_seed=split_seed, seed=seed, train_fraction=0.5)
            )[1]
            for split_seed, seed in ((1, 1), (1, 9), (2, 1))
        }
        for part in ("train_index", "val_index", "test_index"):
            np.testing.assert_array_equal(getattr(runs[1, 1], part), getattr(runs[1, 9], part))
        self.assertFalse(np.array_equal(runs[1, 1].val_index, runs[2, 1].val_index))
        self.assertFalse(np.array_equal(runs[1, 1].train_index, runs[2, 1].train_index))

    def test_synthetic_data_follow_split_seed(self):
        def synthetic_x(**seeds):
            config = config_lib.base_config()
            config.synthetic_examples, config.synthetic_features = 50, 4
            for key, value in seeds.items():
                config[key] = value
            return data.load_from_config(config)[0].x

        np.testing.assert_array_equal(synthetic_x(seed=1), synthetic_x(seed=5))
        self.assertFalse(np.array_equal(synthetic_x(split_seed=1), synthetic_x(split_seed=2)))

    def test_load_from_config_not_found_without_fetch(self):
        config = config_lib.base_config()
        config.dataset, config.data_dir = "nus_vec", self.tmp
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"configs/demo\.py"):
            data.load_from_config(config)


class PrepareDataTest(data_testing.TmpDirTest):
    def test_converts_libsvm_to_npz(self):
        x, y = toy()
        y[3] = 0
        write_libsvm(self.path("in.txt"), x, y)
        result = data_testing.run_prepare_data(
            f"--input={self.path('in.txt')}", f"--output={self.path('o.npz')}"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("| in | 20 | 5 | 3 |", result.stdout)
        self.assertIn("rows without labels", result.stdout)
        self.assertIn("1 of 20 rows have no positive label", result.stderr)
        back = self.load_quiet(self.path("o.npz"))
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)

    def test_converts_csv_to_npz(self):
        x, y = toy()
        split = np.array([0] * 15 + [1] * 5)
        data_testing.write_csv(
            self.path("t.csv"), x, y, list("abcde"), ["y1", "y2", "y3"], split=split
        )
        out = self.path("t.npz")
        result = data_testing.run_prepare_data(
            f"--input={self.path('t.csv')}", "--label_prefix=y", f"--output={out}"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("| t | 20 | 5 | 3 |", result.stdout)
        back = self.load_quiet(out)
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)
        np.testing.assert_array_equal(back.split, split)
        self.assertEqual(back.label_names, ("y1", "y2", "y3"))

    @parameterized.named_parameters(
        ("missing_file", "missing.arff", None, r"error: Data set '.*missing\.arff' not found"),
        (
            "bad_csv_cell",
            "bad.csv",
            "a,L\n1,1\nx,0\n",
            r"error: .*bad\.csv: line 3, column 1 \('a'\)",
        ),
    )
    def test_bad_input_exits_with_message(self, filename, text, pattern):
        path = self.path(filename) if text is None else self.write(filename, text)
        result = data_testing.run_prepare_data(f"--input={path}", "--num_labels=1")
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, pattern)
        self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
    absltest.main()
