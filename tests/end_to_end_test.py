"""benchmarks/end_to_end.py: the MPVAE-layout writer, the official flags, the summary and its
markdown, the error for a wrong --official_dir, and one real run of ours (smoke config)."""

import json
import os
import subprocess
import sys

import numpy as np
from absl import flags
from absl.testing import absltest

from benchmarks import end_to_end
from cgmvae_jax import data
from tests import helpers


class _TestCase(absltest.TestCase):
    def setUp(self):
        super().setUp()
        if not flags.FLAGS.is_parsed():  # create_tempdir reads --test_tmpdir (under pytest)
            flags.FLAGS(["end_to_end_test"])


def _flag_values(argv: list[str]) -> dict[str, str]:
    assert all(a.startswith("--") for a in argv[::2]), argv
    return {k[2:]: v for k, v in zip(argv[::2], argv[1::2], strict=True)}


def _run(rnd, program, wall, compile_s=None, train_s=None):
    record = {"round": rnd, "program": program, "wall_seconds": wall, "seed": rnd}
    record.update(load_before=0.5, load_after=1.5, waited_seconds=0.0)
    if compile_s is not None:
        record.update(compile_seconds=compile_s, train_seconds=train_s)
    return record


# Two made-up rounds: ours cold / official = 0.1 and 0.2, ours warm / official = 0.05 twice.
RUNS = [
    _run(1, "official", 100.0),
    _run(1, "ours_cold", 10.0, 6.0, 3.0),
    _run(1, "ours_warm", 5.0, 1.0, 2.0),
    _run(2, "official", 200.0),
    _run(2, "ours_cold", 40.0, 8.0, 5.0),
    _run(2, "ours_warm", 10.0, 2.0, 4.0),
]


class MpvaeLayoutTest(_TestCase):
    def test_indices_point_at_our_standardised_rows(self):
        _, splits = data.load_from_config(helpers.smoke_config())
        directory = self.create_tempdir().full_path
        paths = end_to_end.write_mpvae(splits, directory, "smoke")
        self.assertEqual(
            sorted(os.path.basename(p) for p in paths.values()),
            ["smoke_data.npy", "smoke_test_idx.npy", "smoke_train_idx.npy", "smoke_val_idx.npy"],
        )
        table = np.load(paths["data_dir"])
        num_labels = splits.train_y.shape[1]
        self.assertEqual(table.dtype, np.float32)
        self.assertEqual(table.shape[1], num_labels + splits.train_x.shape[1])
        for flag, part in (("train_idx", "train"), ("valid_idx", "val"), ("test_idx", "test")):
            idx = np.load(paths[flag])
            self.assertEqual(idx.dtype, np.int64)
            np.testing.assert_array_equal(table[idx, num_labels:], getattr(splits, f"{part}_x"))
            np.testing.assert_array_equal(table[idx, :num_labels], getattr(splits, f"{part}_y"))
        all_idx = np.concatenate(
            [np.load(paths[f]) for f in ("train_idx", "valid_idx", "test_idx")]
        )
        np.testing.assert_array_equal(np.sort(all_idx), np.arange(len(table)))  # each row once


class OfficialFlagsTest(_TestCase):
    def test_flags_follow_the_config(self):
        config = helpers.load_config("scene", num_epochs=7)  # dropout 0.3, lr 0.003
        paths = {"data_dir": "d.npy", "train_idx": "a", "valid_idx": "b", "test_idx": "c"}
        values = _flag_values(end_to_end.official_flags(config, paths, "scene", 6, 294, seed=3))
        self.assertEqual(values["mode"], "train")
        self.assertEqual(values["data_dir"], "d.npy")
        self.assertEqual(float(values["learning_rate"]), config.learning_rate)
        self.assertEqual(int(values["batch_size"]), config.batch_size)
        self.assertEqual(int(values["emb_size"]), config.embedding_dim)
        self.assertEqual(int(values["latent_dim"]), config.latent_dim)
        # The official code builds nn.Dropout(p=args.keep_prob): keep_prob is the drop rate.
        self.assertEqual(float(values["keep_prob"]), config.dropout_rate)
        self.assertEqual(float(values["nll_coeff"]), config.bce_weight)
        self.assertEqual(int(values["max_epoch"]), 7)
        self.assertEqual(int(values["T0"]), config.restart_period)
        self.assertEqual(int(values["T_mult"]), config.restart_mult)
        self.assertEqual(float(values["eta_min"]), config.eta_min)
        self.assertEqual((values["label_dim"], values["feature_dim"]), ("6", "294"))
        self.assertEqual((values["meta_offset"], values["seed"]), ("0", "3"))

    def test_mismatched_fields_name_what_the_official_code_fixes(self):
        self.assertEqual(end_to_end.mismatched_fields(helpers.load_config("yeast")), [])
        # reuters: two decoder layers and alpha = 2; the official code has one and alpha = 1.
        mismatched = end_to_end.mismatched_fields(helpers.load_config("reuters"))
        self.assertCountEqual(
            mismatched,
            [
                "decoder_hidden=(512, 512) (official: (512,))",
                "contrastive_weight=2.0 (official: 1.0)",
            ],
        )

    def test_official_dir_without_main_py_is_a_one_line_error(self):
        empty = self.create_tempdir().full_path
        with self.assertRaises(SystemExit) as cm:
            end_to_end.check_official(empty, sys.executable)
        message = str(cm.exception.code)
        self.assertNotIn("\n", message)
        self.assertIn(f"--official_dir={empty}", message)
        self.assertIn("git clone https://github.com/JunwenBai/C-GMVAE", message)


class SummaryTest(_TestCase):
    def test_medians_and_per_round_ratios(self):
        summary = end_to_end.summarize(RUNS)
        self.assertEqual(summary["official_wall_seconds"], 150.0)
        self.assertEqual(summary["ours_cold_wall_seconds"], 25.0)
        self.assertEqual(summary["ours_cold_compile_seconds"], 7.0)
        self.assertEqual(summary["ours_warm_train_seconds"], 3.0)
        self.assertNotIn("official_compile_seconds", summary)
        self.assertAlmostEqual(summary["ours_cold_over_official"], 0.15)
        self.assertAlmostEqual(summary["ours_warm_over_official"], 0.05)

    def test_without_the_official_side_there_is_no_ratio(self):
        summary = end_to_end.summarize([r for r in RUNS if r["program"] != "official"])
        self.assertNotIn("ours_cold_over_official", summary)
        self.assertEqual(summary["ours_warm_wall_seconds"], 7.5)

    def test_markdown(self):
        result = {
            "command": "python benchmarks/end_to_end.py --repeats=2",
            "config": "configs/yeast.py",
            "num_epochs": 100,
            "official_torch_version": "9.9.9",
            "machine": {"date_utc": "2000-01-02T00:00:00+00:00", "cpu_model": "Test CPU"},
            "runs": RUNS,
            "summary": end_to_end.summarize(RUNS),
        }
        text = end_to_end.markdown(result)
        for expected in (
            "`python benchmarks/end_to_end.py --repeats=2`",
            "2000-01-02",
            "Test CPU",
            "torch 9.9.9",
            "| 2 | ours_cold | 40.0 | 8.0 | 5.0 | 0.50 → 1.50 |",
            "| 1 | official | 100.0 |  |  | 0.50 → 1.50 |",
            "| median | official | 150.0 |  |  | |",
            "| median | ours_warm | 7.5 | 1.5 | 3.0 | |",
            "ours cold ÷ official wall time (median of per-round ratios; below 1: ours is "
            "faster): 0.150",
        ):
            self.assertIn(expected, text)
        self.assertLen([line for line in text.splitlines() if line.startswith("| ")], 10)


class SmokeTest(_TestCase):
    def test_ours_only_run_writes_the_results(self):
        out = self.create_tempdir().full_path
        cmd = [sys.executable, os.path.join(helpers.REPO, "benchmarks", "end_to_end.py")]
        cmd += ["--config=configs/smoke.py", "--num_epochs=1", "--repeats=1", f"--out={out}"]
        proc = subprocess.run(
            cmd, cwd=helpers.REPO, capture_output=True, text=True, timeout=300, check=False
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        line = json.loads(proc.stdout.strip().splitlines()[-1])
        for key in ("ours_cold_wall_seconds", "ours_warm_wall_seconds", "date_utc"):
            self.assertIn(key, line)
        self.assertGreater(line["ours_cold_wall_seconds"], 0)
        self.assertGreater(line["ours_warm_wall_seconds"], 0)
        with open(os.path.join(out, "end_to_end.json"), encoding="utf-8") as f:
            result = json.load(f)
        self.assertEqual([r["program"] for r in result["runs"]], ["ours_cold", "ours_warm"])
        self.assertIn("compile_seconds", result["runs"][0])
        self.assertIn("cpu_model", result["machine"])
        self.assertTrue(os.path.isfile(os.path.join(out, "end_to_end.md")))


if __name__ == "__main__":
    absltest.main()
