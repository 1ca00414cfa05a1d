"""Tests of benchmarks/reproduction (grids, cells, rows, Markdown, plot) and benchmarks/baselines.py
(BR)."""

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

from benchmarks import baselines
from benchmarks.reproduction import cells, grids, plots, rows, runner, summary
from cgmvae_jax import data, metrics
from tests import helpers

_HAS_MPL = importlib.util.find_spec("matplotlib") is not None
_HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
_ROW_KEYS = {"dataset", "variant", "protocol", "metric", "mean", "std", "seeds", "split"}
# The protocols of results.json files written before val_per_metric existed, and all four.
_OLD_PROTOCOLS = ("fixed", "val_tuned", "official")
_ALL_PROTOCOLS = ("official", "val_per_metric", "val_tuned", "fixed")


def _metric_block(value, protocols=_OLD_PROTOCOLS):
    return {p: {m: value + 0.01 * i for i, m in enumerate(metrics.METRIC_NAMES)} for p in protocols}


def _fake_results(
    values,
    split="predefined train/test; train 1350 / val 150 / test 917",
    protocols=_OLD_PROTOCOLS,
    **cfg,
):
    """A results.json of a run whose seeds score `values` (+0.01 per metric index) under
    `protocols` (default: those of runs before val_per_metric)."""
    results = {
        "dataset": "fake",
        "config": {"num_epochs": 100, "num_seeds": len(values), **cfg},
        "best_epoch": 3,
        "val": _metric_block(values[0], protocols),
        "test": _metric_block(values[0], protocols),
        "split": split,
    }
    if len(values) > 1:
        results["per_seed"] = [
            {"val": _metric_block(v, protocols), "test": _metric_block(v, protocols)}
            for v in values
        ]
        results["test"] = _metric_block(float(np.mean(values)), protocols)
    return results


def _write_cell(
    workdir,
    dataset,
    variant,
    fraction,
    results,
    seeds=3,
    num_epochs=None,
    split_seed=None,
    tuned=False,
    configs_dir=None,
):
    cell = grids.Cell(dataset, variant, fraction, split_seed, tuned)
    config = cells.cell_config(cell, seeds=seeds, num_epochs=num_epochs, configs_dir=configs_dir)
    path = cells.cell_workdir(workdir, cell, config)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f)
    return path


def _record_rows(out, rows, name="reproduce.json"):
    """A reproduce.json (or `name`) in `out` holding `rows`, as left by runs made elsewhere."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        json.dump(rows, f)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _saved_rows(path):
    """The rows of a reproduce JSON file, keyed by (dataset, variant, protocol, metric)."""
    return {rows.row_key(r): r for r in json.loads(_read(path))}


class GridTest(parameterized.TestCase):
    def test_variant_names(self):
        self.assertEqual(grids.variant_name("cgmvae", 0.1), "cgmvae@0.1")
        self.assertEqual(grids.variant_name("br", 0.5), "br@0.5")
        self.assertEqual(grids.variant_name("unimodal", 1.0), "unimodal")
        self.assertEqual(grids.parse_variant("unimodal@0.5"), ("unimodal", 0.5))
        self.assertEqual(grids.parse_variant("br"), ("br", 1.0))
        self.assertEqual(grids.variant_name("cgmvae", 1.0, 4), "cgmvae-split4")
        self.assertEqual(grids.variant_name("br", 0.5, 7), "br@0.5-split7")
        self.assertEqual(grids.splits_mean_name("cgmvae"), "cgmvae-splits")
        self.assertEqual(grids.parse_variant("br@0.5-split7"), ("br", 0.5))
        self.assertEqual(grids.parse_variant("cgmvae-splits"), ("cgmvae", 1.0))

    def test_grids(self):
        main = grids.grid_cells(grids.GRIDS["main"])
        self.assertLen(main, 18)
        self.assertEqual({c.variant for c in main}, {"cgmvae", "br"})
        fraction = grids.grid_cells(grids.GRIDS["fraction"])
        self.assertEqual(
            sorted({c.name for c in fraction}),
            sorted(f"{v}{s}" for v in ("cgmvae", "unimodal", "br") for s in ("@0.1", "@0.5", "")),
        )
        subset = grids.grid_cells(grids.GRIDS["ablation"], ["sider"])
        self.assertEqual({c.dataset for c in subset}, {"sider"})
        self.assertLen(subset, 4)
        with self.assertRaisesRegex(ValueError, "nus_vec"):
            grids.grid_cells(grids.GRIDS["main"], ["nus_vec"])
        losses = grids.grid_cells(grids.GRIDS["losses"], ["yeast"], ["mlp_bce", "mlp_asl"])
        self.assertEqual([c.name for c in losses], ["mlp_bce", "mlp_asl"])
        with self.assertRaisesRegex(ValueError, "--variants mlp_focal not in this grid"):
            grids.grid_cells(grids.GRIDS["losses"], variants=["mlp_focal"])
        small = grids.grid_cells(grids.GRIDS["fraction"], ["scene"], ["cgmvae"], ["0.1"])
        self.assertEqual([c.name for c in small], ["cgmvae@0.1"])
        with self.assertRaisesRegex(
            ValueError, r"--fractions 0.3 not in this grid \(0.1, 0.5, 1\)"
        ):
            grids.grid_cells(grids.GRIDS["fraction"], fractions=[0.3])
        split = grids.grid_cells(grids.GRIDS["paper_split"], ["sider"])
        self.assertEqual(
            [c.name for c in split],
            [f"{v}-split{k}" for v in ("cgmvae", "br") for k in (1, 4, 7)],
        )
        one = grids.grid_cells(grids.GRIDS["paper_split"], ["sider"], ["br"], None, ["4"])
        self.assertEqual([c.name for c in one], ["br-split4"])
        with self.assertRaisesRegex(ValueError, r"--split_seeds 2 not in this grid \(1, 4, 7\)"):
            grids.grid_cells(grids.GRIDS["paper_split"], split_seeds=[2])
        with self.assertRaisesRegex(ValueError, r"--split_seeds 1 not in this grid \(none\)"):
            grids.grid_cells(grids.GRIDS["main"], split_seeds=[1])
        with self.assertRaisesRegex(ValueError, "--split_seeds takes integers"):
            grids.grid_cells(grids.GRIDS["paper_split"], split_seeds=["four"])
        self.assertEqual(grids.json_name("paper_split"), "reproduce_paper_split.json")
        self.assertEqual(grids.json_name("main"), "reproduce.json")

    def test_split_cell_draws_its_own_random_split(self):
        # A `-split<k>` cell ignores the data set's predefined split: the rows of its test
        # split are drawn with seed k from all rows, and the models are seeded with k.
        rng = np.random.default_rng(0)
        n = 200
        x = rng.normal(size=(n, 5)).astype(np.float32)
        y = (rng.random((n, 4)) < 0.4).astype(np.uint8)
        y[:, 0] = 1  # no row without a label
        predefined = np.where(np.arange(n) < 150, 0, 1)  # train: rows 0-149, test: 150-199
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "toy.npz")
            np.savez(path, X=x, Y=y, split=predefined)
            base = cells.load_config("smoke")
            base.dataset = path

            def toy_config(*_):
                return base.copy_and_resolve_references()

            with mock.patch.object(cells, "load_config", side_effect=toy_config):
                configs = {
                    k: cells.cell_config(grids.Cell("toy", "cgmvae", 1.0, k), seeds=3)
                    for k in (None, 1, 4)
                }
            self.assertEqual(
                (configs[4].split, configs[4].split_seed, configs[4].seed, configs[4].num_seeds),
                ("random", 4, 4, 3),
            )
            self.assertEqual(
                (configs[None].split, configs[None].split_seed, configs[None].seed),
                ("predefined", 1, 1),
            )
            tests = {k: data.load_from_config(c)[1].test_index for k, c in configs.items()}
        np.testing.assert_array_equal(np.sort(tests[None]), np.arange(150, 200))
        for k in (1, 4):
            self.assertLen(tests[k], 20)  # 10 % of all 200 rows
            self.assertLess(np.sum(tests[k] >= 150), 20)  # not the predefined test rows
        self.assertNotEqual(set(tests[1]), set(tests[4]))
        dirs = {
            cells.cell_workdir("/r", grids.Cell("toy", "cgmvae", 1.0, k), configs[k])
            for k in (1, 4)
        }
        self.assertEqual(dirs, {"/r/toy/cgmvae-split1-s3-e3", "/r/toy/cgmvae-split4-s3-e3"})

    def test_paper_split_cells_set_split_seed_and_seed(self):
        # split_seed draws the split; seed = k keeps the model seeds of the runs on record.
        for cell in grids.grid_cells(grids.GRIDS["paper_split"]):
            config = cells.cell_config(cell, seeds=3)
            self.assertEqual(
                (config.split, config.split_seed, config.seed),
                ("random", cell.split_seed, cell.split_seed),
                cell.label,
            )
        main = cells.cell_config(grids.Cell("yeast", "cgmvae", 1.0), seeds=3)
        self.assertEqual((main.split, main.split_seed), ("predefined", 1))

    @parameterized.named_parameters(
        ("cgmvae", "cgmvae", {"prior": "mixture", "kl_weight": 6.0, "contrastive_weight": 1.0}),
        ("unimodal", "unimodal", {"prior": "unimodal"}),
        ("mixture_only", "mixture_only", {"contrastive_weight": 0.0, "kl_weight": 6.0}),
        ("contrastive_only", "contrastive_only", {"kl_weight": 0.0, "contrastive_weight": 1.0}),
    )
    def test_variant_overrides(self, variant, expected):
        config = cells.cell_config(
            grids.Cell("yeast", variant, 0.5), seeds=3, num_epochs=7, data_dir="/data"
        )
        for field, value in expected.items():
            self.assertEqual(config[field], value, field)
        self.assertEqual(config.train_fraction, 0.5)
        self.assertEqual(config.num_seeds, 3)
        self.assertEqual(config.num_epochs, 7)
        self.assertEqual(config.data_dir, "/data")
        self.assertEqual(config.learning_rate, 0.002)  # from configs/yeast.py

    def test_br_has_one_seed_and_workdirs_are_distinct(self):
        fraction_cells = grids.grid_cells(grids.GRIDS["fraction"])
        dirs = set()
        for cell in fraction_cells:
            config = cells.cell_config(cell, seeds=3)
            self.assertEqual(config.num_seeds, 1 if cell.variant == "br" else 3)
            dirs.add(cells.cell_workdir("/runs", cell, config))
        self.assertLen(dirs, len(fraction_cells))
        cell = grids.Cell("yeast", "cgmvae", 1.0)
        short = cells.cell_workdir("/r", cell, cells.cell_config(cell, seeds=3, num_epochs=5))
        full = cells.cell_workdir("/r", cell, cells.cell_config(cell, seeds=3))
        self.assertNotEqual(short, full)  # another epoch count never resumes a finished run


class RowsTest(absltest.TestCase):
    def test_multi_seed_rows(self):
        result_rows = rows.rows_from_results("yeast", "cgmvae", _fake_results([0.5, 0.6, 0.7]))
        self.assertLen(result_rows, len(_OLD_PROTOCOLS) * len(metrics.METRIC_NAMES))
        for row in result_rows:
            self.assertEqual(set(row), _ROW_KEYS)
        row = next(
            r for r in result_rows if r["protocol"] == "official" and r["metric"] == "example_f1"
        )
        i = metrics.METRIC_NAMES.index("example_f1")
        self.assertAlmostEqual(row["mean"], 0.6 + 0.01 * i)
        self.assertAlmostEqual(row["std"], np.std([0.5, 0.6, 0.7]))
        self.assertEqual(row["seeds"], 3)
        self.assertIn("train 1350", row["split"])

    def test_single_run_rows(self):
        result_rows = rows.rows_from_results("scene", "br", _fake_results([0.4]))
        self.assertTrue(all(r["seeds"] == 1 and r["std"] == 0.0 for r in result_rows))
        self.assertEqual({r["protocol"] for r in result_rows}, set(_OLD_PROTOCOLS))
        self.assertEqual({r["metric"] for r in result_rows}, set(metrics.METRIC_NAMES))

    def test_val_per_metric_rows_only_when_recorded(self):
        new = rows.rows_from_results(
            "yeast", "cgmvae", _fake_results([0.5, 0.7], protocols=_ALL_PROTOCOLS)
        )
        self.assertEqual({r["protocol"] for r in new}, set(_ALL_PROTOCOLS))
        row = next(
            r for r in new if r["protocol"] == "val_per_metric" and r["metric"] == "macro_f1"
        )
        self.assertAlmostEqual(row["mean"], 0.6 + 0.01 * metrics.METRIC_NAMES.index("macro_f1"))
        self.assertEqual(row["seeds"], 2)
        old = rows.rows_from_results("yeast", "cgmvae", _fake_results([0.5, 0.7]))
        self.assertNotIn("val_per_metric", {r["protocol"] for r in old})

    def test_merge_replaces_same_key_and_keeps_others(self):
        old = rows.rows_from_results("yeast", "cgmvae", _fake_results([0.1]))
        other = rows.rows_from_results("scene", "br", _fake_results([0.2]))
        new = rows.rows_from_results("yeast", "cgmvae", _fake_results([0.9]))
        merged = rows.merge_rows(old + other, new)
        self.assertLen(merged, len(old) + len(other))
        yeast = [r for r in merged if r["dataset"] == "yeast"]
        self.assertTrue(all(r["mean"] >= 0.9 for r in yeast))


class CollectTest(absltest.TestCase):
    def test_main_tables_from_fake_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            _write_cell(runs, "yeast", "cgmvae", 1.0, _fake_results([0.60, 0.62, 0.64]))
            _write_cell(runs, "yeast", "br", 1.0, _fake_results([0.50]))
            _write_cell(runs, "emotions", "cgmvae", 1.0, _fake_results([0.55, 0.56, 0.57]))
            os.makedirs(out)
            earlier = rows.rows_from_results("yeast", "unimodal", _fake_results([0.3]))
            _record_rows(out, earlier)

            summary = runner.run_grid(
                "main", workdir=runs, out=out, collect_only=True, command="python x --grid=main"
            )
            self.assertEqual(summary["ran"], [])
            saved = json.loads(_read(summary["json"]))
            per_cell = len(_OLD_PROTOCOLS) * len(metrics.METRIC_NAMES)
            self.assertLen(saved, 4 * per_cell)  # 3 collected cells + the earlier ablation rows
            for r in saved:  # rows of runs name their config file; the earlier rows do not
                if r["variant"] == "unimodal":
                    self.assertEqual(set(r), _ROW_KEYS)
                else:
                    self.assertEqual(set(r), _ROW_KEYS | {"config"})
                    self.assertEqual(r["config"], f"configs/{r['dataset']}.py")
            self.assertEqual(
                {(r["dataset"], r["variant"]) for r in saved},
                {
                    ("yeast", "cgmvae"),
                    ("yeast", "br"),
                    ("emotions", "cgmvae"),
                    ("yeast", "unimodal"),
                },
            )

            text = _read(summary["markdown"])
            self.assertEqual(os.path.basename(summary["markdown"]), "reproduce_main.md")
            for protocol in _OLD_PROTOCOLS:
                self.assertIn(f"## Protocol `{protocol}`", text)
            self.assertIn("| data set | variant | seeds | ex-F1 | mi-F1 | ma-F1 | HA | P@1 |", text)
            self.assertIn("| yeast | cgmvae | 3 | 0.630 ± 0.016 |", text)  # ex-F1 = 0.62 + 0.01
            self.assertIn("| yeast | br | 1 | 0.510 |", text)
            self.assertIn(
                "| yeast | paper: C-GMVAE | 3 | 0.656 | 0.665 | 0.487 | 0.796 | 0.751 |", text
            )
            self.assertIn("| yeast | paper: BR | – | 0.630 | – | 0.373 | – | – |", text)
            self.assertNotIn("paper: C-GMVAE | 3 | 0.777", text)  # no scene runs, no scene rows
            self.assertIn("## Macro-F1 gain over BR", text)
            self.assertIn("| yeast | cgmvae | +0.120 | +0.120 | +0.120 |", text)
            self.assertIn("- yeast: predefined train/test; train 1350", text)
            self.assertIn("`python x --grid=main`", text)
            self.assertIn("Packages: python", text)
            self.assertIn("Epochs: 100", text)
            # The fake runs' configs predate the selection fields: the official rule.
            self.assertIn("cells run here: the epoch with the best validation macro_f1", text)
            self.assertNotIn("unimodal", text.split("## Variants")[0])  # other grids' rows

    def test_run_of_a_changed_config_is_stale_not_collected(self):
        # The cell's directory name (variant, seeds, epochs) does not show a changed
        # learning rate; the config recorded in results.json does.
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            cell = grids.Cell("yeast", "cgmvae", 1.0, None, False)
            recorded = cells.cell_config(cell, seeds=3).to_dict()
            recorded["feature_hidden"] = list(recorded["feature_hidden"])
            recorded.update(learning_rate=0.123, data_dir="/elsewhere")  # data_dir: runtime
            _write_cell(runs, "yeast", "cgmvae", 1.0, _fake_results([0.6, 0.6, 0.6], **recorded))
            _write_cell(runs, "yeast", "br", 1.0, _fake_results([0.5], data_dir="/elsewhere"))
            summary = runner.run_grid("main", workdir=runs, out=out, collect_only=True)
        stale = dict(summary["failures"])
        self.assertIn("yeast/cgmvae", stale)
        self.assertIn("learning_rate=0.123", stale["yeast/cgmvae"])
        self.assertIn("delete that directory or use another --workdir", stale["yeast/cgmvae"])
        self.assertNotIn("yeast/br", stale)  # only a runtime field differs
        self.assertEqual({r["variant"] for r in summary["rows"]}, {"br"})

    def test_selection_rule_is_read_from_the_run_config(self):
        self.assertEqual(
            runner._selection_rule({"selection_window": 10, "selection_metrics": "a,b"}),
            "the epoch ending the best 10-epoch mean of validation a + b",
        )
        self.assertEqual(
            runner._selection_rule({"selection_window": 1, "selection_metrics": "macro_f1"}),
            "the epoch with the best validation macro_f1",
        )

    def test_val_per_metric_table_and_columns_beside_older_rows(self):
        # yeast/cgmvae ran with val_per_metric; its BR and emotions ran before it existed.
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            new = _fake_results([0.60, 0.62, 0.64], protocols=_ALL_PROTOCOLS)
            new["test"]["val_per_metric"]["macro_f1"] = 0.9  # per seed as well:
            for seed in new["per_seed"]:
                seed["test"]["val_per_metric"]["macro_f1"] = 0.9
            _write_cell(runs, "yeast", "cgmvae", 1.0, new)
            _write_cell(runs, "yeast", "br", 1.0, _fake_results([0.50]))
            _write_cell(runs, "emotions", "br", 1.0, _fake_results([0.40]))
            summary = runner.run_grid("main", workdir=runs, out=out, collect_only=True)
            text = _read(summary["markdown"])
        sections = [line for line in text.splitlines() if line.startswith("## Protocol")]
        self.assertEqual(sections, [f"## Protocol `{p}`" for p in _ALL_PROTOCOLS])
        per_metric = text.split("## Protocol `val_per_metric`")[1].split("## Protocol")[0]
        self.assertIn(
            "For each metric, the threshold from 0.05…0.95 that maximises it on validation, "
            "applied unchanged to test: the honest counterpart of official.",
            per_metric,
        )
        self.assertIn(
            "| yeast | cgmvae | 3 | 0.630 ± 0.016 | 0.640 ± 0.016 | 0.900 ± 0.000 |", per_metric
        )
        self.assertNotIn("| yeast | br |", per_metric)
        self.assertIn(
            "No `val_per_metric` rows (recorded before it existed): yeast/br, emotions/br.",
            per_metric,
        )
        gain = text.split("## Macro-F1 gain over BR")[1].split("##")[0]
        self.assertIn(
            "| data set | variant | official | val_per_metric | val_tuned | fixed |", gain
        )
        self.assertIn("| yeast | cgmvae | +0.120 | – | +0.120 | +0.120 |", gain)

    def test_tables_of_older_rows_have_no_val_per_metric(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            _write_cell(runs, "yeast", "cgmvae", 1.0, _fake_results([0.60, 0.62, 0.64]))
            _write_cell(runs, "yeast", "br", 1.0, _fake_results([0.50]))
            summary = runner.run_grid("main", workdir=runs, out=out, collect_only=True)
            text = _read(summary["markdown"])
        self.assertNotIn("val_per_metric", text)
        self.assertIn("| data set | variant | official | val_tuned | fixed |", text)
        self.assertIn("| yeast | cgmvae | +0.120 | +0.120 | +0.120 |", text)

    def test_paper_split_tables_from_fake_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            for k, values in ((1, [0.60, 0.62]), (4, [0.70, 0.72]), (7, [0.80, 0.82])):
                split = f"random split of 2417 rows (seed {k})"
                _write_cell(runs, "yeast", "cgmvae", 1.0, _fake_results(values, split), 2, None, k)
            for k, value in ((1, 0.50), (4, 0.55)):  # BR of split 7 never ran
                _write_cell(runs, "yeast", "br", 1.0, _fake_results([value]), 2, None, k)
            main_rows = rows.rows_from_results("yeast", "cgmvae", _fake_results([0.3]))
            _record_rows(out, main_rows)

            summary = runner.run_grid(
                "paper_split", workdir=runs, out=out, seeds=2, collect_only=True, datasets=["yeast"]
            )
            self.assertEqual(os.path.basename(summary["json"]), "reproduce_paper_split.json")
            # The main table's rows are untouched.
            main_after = json.loads(_read(os.path.join(out, "reproduce.json")))
            self.assertEqual(main_after, main_rows)
            saved = _saved_rows(summary["json"])
            self.assertTrue(all(set(r) == _ROW_KEYS | {"config"} for r in saved.values()))
            self.assertEqual(
                {r["config"] for r in saved.values()}, {"configs/yeast.py"}
            )  # the means too
            mean = saved[("yeast", "cgmvae-splits", "official", "example_f1")]
            # Per-split means 0.62, 0.72, 0.82 (+0.01 for ex-F1): mean 0.72, std over splits.
            self.assertAlmostEqual(mean["mean"], 0.72)
            self.assertAlmostEqual(mean["std"], float(np.std([0.62, 0.72, 0.82])))
            self.assertEqual(mean["seeds"], 3)
            self.assertIn("seeds 1, 4, 7", mean["split"])
            br_mean = saved[("yeast", "br-splits", "fixed", "macro_f1")]
            offset = 0.01 * metrics.METRIC_NAMES.index("macro_f1")
            self.assertAlmostEqual(br_mean["mean"], 0.525 + offset)  # two splits only
            self.assertEqual(br_mean["seeds"], 2)

            text = _read(summary["markdown"])
            self.assertIn("| yeast | cgmvae-split4 | 2 | 0.720 ± 0.010 |", text)
            self.assertIn("80/10/10 splits (split seeds 1, 4, 7)", text)  # the description
            self.assertIn("splits of all rows, split seeds 1, 4, 7 (", text)  # the header
            self.assertIn("`config.split_seed=k` and `config.seed=k`", text)
            official = text.split("## Protocol `official`")[1].split("## Protocol")[0]
            self.assertIn("Random splits with split seeds 1, 4, 7:", official)
            self.assertIn("| yeast | cgmvae-splits | 3 | 0.720 ± 0.082 |", text)
            self.assertIn("| yeast | paper: C-GMVAE | 3 | 0.656 |", text)
            self.assertIn("| yeast | cgmvae-split1 | +0.110 | +0.110 | +0.110 |", text)
            self.assertIn("| yeast | cgmvae-splits | +0.135 | +0.135 | +0.135 |", text)
            self.assertIn("- yeast: random split of 2417 rows (seed 7)", text)
            self.assertNotIn("- yeast: mean ± std over", text)  # the header explains the means
            self.assertNotIn("Cells carried over", text)  # the means are not carried cells
            self.assertEqual(
                [(c, m.split(":")[0]) for c, m in summary["failures"]],
                [("yeast/br-split7", "not run")],
            )

    def test_paper_split_rows_from_earlier_runs_and_stale_means(self):
        # Split rows run elsewhere fill the table, named after the grid's JSON; a mean row
        # on record is recomputed from the split rows, or dropped when < 2 splits are left.
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            earlier = []
            for k, value in ((1, 0.60), (7, 0.70)):
                earlier += rows.rows_from_results(
                    "sider", f"cgmvae-split{k}", _fake_results([value])
                )
            stale = rows.rows_from_results("sider", "cgmvae-splits", _fake_results([0.1]))
            stale += rows.rows_from_results("sider", "br-splits", _fake_results([0.2]))
            earlier += rows.rows_from_results("sider", "br-split1", _fake_results([0.5]))
            _record_rows(out, earlier + stale, "reproduce_paper_split.json")
            summary = runner.run_grid(
                "paper_split", workdir=runs, out=out, seeds=1, collect_only=True
            )
            saved = _saved_rows(summary["json"])
            mean = saved[("sider", "cgmvae-splits", "fixed", "example_f1")]
            self.assertAlmostEqual(mean["mean"], 0.66)  # (0.61 + 0.71) / 2, not the stale 0.11
            self.assertNotIn(("sider", "br-splits", "fixed", "example_f1"), saved)  # one split
            text = _read(summary["markdown"])
            carried = text.split("Cells carried over from `reproduce_paper_split.json`")[1]
            carried = carried.splitlines()[0]
            for name in ("sider/cgmvae-split1", "sider/cgmvae-split7", "sider/br-split1"):
                self.assertIn(name, carried)
            self.assertNotIn("splits", carried)  # means are derived, not carried
            self.assertIn("| sider | cgmvae-splits | 2 | 0.660 ± 0.050 |", text)
            self.assertIn("| sider | cgmvae-splits | +0.100 | +0.100 | +0.100 |", text)

    @absltest.skipUnless(_HAS_MPL, 'matplotlib is not installed (pip install -e ".[plot]")')
    def test_fraction_grid_plot(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            for variant in ("cgmvae", "unimodal", "br"):
                for k, fraction in enumerate((0.1, 0.5, 1.0)):
                    values = [0.3 + 0.1 * k] if variant == "br" else [0.3 + 0.1 * k, 0.32 + 0.1 * k]
                    _write_cell(runs, "yeast", variant, fraction, _fake_results(values), seeds=2)
            summary = runner.run_grid("fraction", workdir=runs, out=out, seeds=2, collect_only=True)
            self.assertEqual(
                summary["figure"], os.path.join(out, "figures", "fraction_macro_f1.png")
            )
            with open(summary["figure"], "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            self.assertGreater(os.path.getsize(summary["figure"]), 5000)
            text = _read(summary["markdown"])
            self.assertIn("| yeast | cgmvae@0.1 | 2 |", text)
            self.assertIn("| yeast | br@0.5 | 1 |", text)
            self.assertIn("| yeast | unimodal@0.5 |", text)
            self.assertNotIn("paper: C-GMVAE", text)


_TUNED_YEAST = '''"""A tuned yeast config (test)."""
from cgmvae_jax import config_lib


def get_config():
    config = config_lib.base_config()
    config.dataset = "yeast"
    config.learning_rate = 0.0123
    return config
'''


class TunedConfigTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        # A configs directory with yeast.py, scene.py (the repository's) and yeast_tuned.py.
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.configs = os.path.join(self.tmp, "configs")
        os.makedirs(self.configs)
        for name in ("yeast", "scene"):
            shutil.copy(os.path.join(helpers.REPO, "configs", f"{name}.py"), self.configs)
        with open(os.path.join(self.configs, "yeast_tuned.py"), "w", encoding="utf-8") as f:
            f.write(_TUNED_YEAST)

    def test_tuned_cells_load_the_tuned_file_where_it_exists(self):
        chosen = grids.grid_cells(grids.GRIDS["main"], ["yeast", "scene"])
        tuned = cells.use_tuned(chosen, self.configs)
        self.assertEqual(
            [(c.label, c.tuned) for c in tuned],
            [
                ("yeast/cgmvae", True),
                ("yeast/br", True),
                ("scene/cgmvae", False),
                ("scene/br", False),
            ],
        )
        repo_configs = os.path.join(helpers.REPO, "configs")  # the default directory
        self.assertEqual(cells.use_tuned(chosen), cells.use_tuned(chosen, repo_configs))
        yeast, yeast_br, scene, _ = tuned
        config = cells.cell_config(yeast, seeds=3, configs_dir=self.configs)
        self.assertEqual(config.learning_rate, 0.0123)
        self.assertEqual(cells.cell_config(scene, seeds=3).learning_rate, 0.003)
        self.assertEqual(cells.config_file(yeast, self.configs), "configs/yeast_tuned.py")
        self.assertEqual(cells.config_file(scene, self.configs), "configs/scene.py")
        self.assertEqual(cells.cell_workdir("/r", yeast, config), "/r/yeast/cgmvae-tuned-s3-e100")
        self.assertEqual(cells.cell_workdir("/r", yeast_br, config), "/r/yeast/br-tuned")
        with self.assertRaisesRegex(ValueError, "No config file .*scene_tuned.py"):
            cells.cell_config(
                dataclasses.replace(scene, tuned=True), seeds=3, configs_dir=self.configs
            )

    def test_tables_name_the_config_file_of_each_data_set(self):
        runs, out = os.path.join(self.tmp, "runs"), os.path.join(self.tmp, "out")
        kwargs = dict(tuned=True, configs_dir=self.configs)
        _write_cell(runs, "yeast", "cgmvae", 1.0, _fake_results([0.7]), 1, **kwargs)
        _write_cell(runs, "yeast", "cgmvae", 1.0, _fake_results([0.2]), 1)  # untuned
        _write_cell(runs, "scene", "cgmvae", 1.0, _fake_results([0.6]), 1, configs_dir=self.configs)
        _record_rows(out, rows.rows_from_results("yeast", "br", _fake_results([0.5])))
        summary = runner.run_grid(
            "main", workdir=runs, out=out, seeds=1, collect_only=True, **kwargs
        )
        saved = _saved_rows(summary["json"])
        tuned_row = saved[("yeast", "cgmvae", "fixed", "example_f1")]
        self.assertEqual(tuned_row["config"], "configs/yeast_tuned.py")
        self.assertAlmostEqual(tuned_row["mean"], 0.71)  # the tuned run, not the other one
        self.assertEqual(
            saved[("scene", "cgmvae", "fixed", "example_f1")]["config"], "configs/scene.py"
        )
        self.assertNotIn("config", saved[("yeast", "br", "fixed", "example_f1")])  # older row
        text = _read(summary["markdown"]).split("## Config files")[1]
        self.assertIn("- yeast: `configs/yeast_tuned.py` (cgmvae); not recorded (br)", text)
        self.assertIn("- scene: `configs/scene.py`\n", text)
        # Without --tuned the same workdir gives the untuned run's rows.
        again = runner.run_grid(
            "main", workdir=runs, out=out, seeds=1, collect_only=True, configs_dir=self.configs
        )
        row = _saved_rows(again["json"])[("yeast", "cgmvae", "fixed", "example_f1")]
        self.assertEqual((row["config"], round(row["mean"], 3)), ("configs/yeast.py", 0.21))


def _summary_rows():
    """yeast with every protocol (3 seeds, a config file), delicious recorded before
    val_per_metric existed."""
    return (
        rows.rows_from_results(
            "yeast",
            "cgmvae",
            _fake_results([0.60, 0.62, 0.64], protocols=_ALL_PROTOCOLS),
            "configs/yeast.py",
        )
        + rows.rows_from_results("yeast", "br", _fake_results([0.50], protocols=_ALL_PROTOCOLS))
        + rows.rows_from_results("delicious", "cgmvae", _fake_results([0.30]))
        + rows.rows_from_results("delicious", "br", _fake_results([0.20]))
    )


class SummaryTest(absltest.TestCase):
    def test_honest_and_official_tables(self):
        text = summary.summary_tables(_summary_rows())
        honest, official = text.split("The paper's protocol")
        # Columns ex-F1, mi-F1, ma-F1, HA, P@1 (= value + 0.01, 0.02, 0.03, 0, 0.05).
        self.assertIn(
            "| yeast | `yeast.py` | C-GMVAE | 0.630 ± 0.016 | 0.640 ± 0.016 | 0.650 ± 0.016 "
            "| 0.620 ± 0.016 | 0.670 ± 0.016 |",
            honest,
        )
        self.assertIn("| yeast |  | BR | 0.510 | 0.520 | 0.530 | 0.500 | 0.550 |", honest)
        self.assertNotIn("delicious", honest)  # no val_per_metric rows
        self.assertIn(
            "| delicious | C-GMVAE | 0.310 | 0.320 | 0.330 | 0.300 | 0.350 | 0.330 | 0.330 |",
            official,
        )
        self.assertIn(
            "| delicious | paper C-GMVAE | 0.381 | 0.403 | 0.197 | 0.983 | 0.707 | – | – |",
            official,
        )
        self.assertLess(official.index("| yeast |"), official.index("| delicious |"))

    def test_update_doc_rewrites_only_between_the_markers(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "results.md")
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"# Results\n\n{summary.BEGIN}\nstale table\n{summary.END}\nprose\n")
            summary.update_doc(path, _summary_rows())
            summary.update_doc(path, _summary_rows())  # idempotent
            text = _read(path)
            self.assertEqual(
                text,
                f"# Results\n\n{summary.BEGIN}\n{summary.summary_tables(_summary_rows())}"
                f"{summary.END}\nprose\n",
            )
            with open(path, "w", encoding="utf-8") as f:
                f.write("# Results without markers\n")
            with self.assertRaisesRegex(ValueError, "needs the marker lines"):
                summary.update_doc(path, _summary_rows())
            with self.assertRaisesRegex(ValueError, "does not exist"):
                summary.update_doc(os.path.join(tmp, "missing.md"), _summary_rows())


class LaunchScriptTest(absltest.TestCase):
    def test_collect_only_from_the_command_line(self):
        # The script imports benchmarks as an installed package (no sys.path edits).
        with tempfile.TemporaryDirectory() as tmp:
            out, doc = os.path.join(tmp, "out"), os.path.join(tmp, "results.md")
            _record_rows(out, rows.rows_from_results("yeast", "cgmvae", _fake_results([0.55])))
            with open(doc, "w", encoding="utf-8") as f:
                f.write(f"{summary.BEGIN}\n{summary.END}\n")
            proc = subprocess.run(
                [
                    sys.executable,
                    os.path.join(helpers.REPO, "launch", "reproduce.py"),
                    "--grid=main",
                    "--collect_only",
                    "--tuned",
                    "--datasets=yeast",
                    "--variants=cgmvae",
                    f"--workdir={os.path.join(tmp, 'runs')}",
                    f"--out={out}",
                    f"--doc={doc}",
                ],
                capture_output=True,
                text=True,
                cwd=tmp,
                timeout=120,
            )
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            self.assertIn("Ran 0 cell(s); 0 rows.", proc.stdout)
            text = _read(os.path.join(out, "reproduce_main.md"))
            self.assertIn("| yeast | C-GMVAE | 0.560 | 0.570 | 0.580 | 0.550 | 0.600 |", _read(doc))
        self.assertIn("| yeast | cgmvae | 1 | 0.560 |", text)
        self.assertIn("--tuned --datasets=yeast", text)  # the command in the header


@absltest.skipUnless(_HAS_SKLEARN, "scikit-learn is not installed (pip install -e '.[test]')")
class BinaryRelevanceTest(absltest.TestCase):
    def test_beats_constant_predictor_on_macro_f1(self):
        ds = data.synthetic_dataset(600, 20, 6, seed=3)
        splits = data.make_splits(ds, seed=1)
        results = baselines.binary_relevance_results(splits, cs=(0.1, 1.0))
        prior = splits.train_y.mean(axis=0)  # [L], the best constant probabilities
        constant = metrics.evaluate_protocols(
            np.tile(prior, (len(splits.val_y), 1)),
            splits.val_y,
            np.tile(prior, (len(splits.test_y), 1)),
            splits.test_y,
        )
        for protocol in ("val_tuned", "official"):
            self.assertGreater(
                results["test"][protocol]["macro_f1"],
                constant["test"][protocol]["macro_f1"] + 0.05,
                protocol,
            )
        self.assertIn(results["C"], (0.1, 1.0))
        self.assertEqual(set(results["test"]), set(metrics.PROTOCOLS))
        self.assertEqual(results["split"], splits.description)

    def test_constant_training_labels(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((80, 3))
        y = np.stack([x[:, 0] > 0, np.ones(80, bool), np.zeros(80, bool)], axis=1)
        (probs,) = baselines.binary_relevance_probs(x, y, [x[:10]])
        self.assertEqual(probs.shape, (10, 3))
        np.testing.assert_array_equal(probs[:, 1], 1.0)
        np.testing.assert_array_equal(probs[:, 2], 0.0)
        self.assertTrue(np.all((probs[:, 0] > 0) & (probs[:, 0] < 1)))
        agree = (probs[:, 0] > 0.5) == y[:10, 0]
        self.assertGreaterEqual(agree.mean(), 0.9)

    def test_br_cell_writes_results_and_is_skipped_after(self):
        cell = grids.Cell("smoke", "br", 0.5)
        config = cells.cell_config(cell, seeds=3)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = cells.cell_workdir(tmp, cell, config)
            results, ran = cells.run_cell(cell, config, workdir, br_cs=(1.0,))
            self.assertTrue(ran)
            self.assertTrue(os.path.exists(os.path.join(workdir, "results.json")))
            self.assertEqual(results["num_train"], 120)  # half of 240 training rows
            self.assertIn("train_fraction 0.5", results["split"])
            again, ran = cells.run_cell(cell, config, workdir)
            self.assertFalse(ran)
            self.assertEqual(again["test"], results["test"])


class SmokeGridTest(absltest.TestCase):
    def test_smoke_grid_end_to_end(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            summary = runner.run_grid("smoke", workdir=runs, out=out, seeds=2, br_cs=(1.0,))
            self.assertEqual(summary["failures"], [])
            self.assertEqual(sorted(summary["ran"]), ["smoke/br", "smoke/cgmvae"])
            by_key = {(r["variant"], r["protocol"], r["metric"]): r for r in summary["rows"]}
            self.assertEqual(by_key[("cgmvae", "fixed", "macro_f1")]["seeds"], 2)
            self.assertEqual(by_key[("br", "fixed", "macro_f1")]["seeds"], 1)
            for r in summary["rows"]:
                self.assertTrue(0.0 <= r["mean"] <= 1.0, r)
            self.assertTrue(os.path.exists(os.path.join(runs, "smoke", "cgmvae-s2-e2")))
            self.assertIn("| smoke | cgmvae | 2 |", _read(summary["markdown"]))
            again = runner.run_grid("smoke", workdir=runs, out=out, seeds=2)
            self.assertEqual(again["ran"], [])  # finished cells are not run again
            self.assertLen(again["rows"], len(summary["rows"]))

    def test_small_fraction_lowers_the_batch_size(self):
        cell = grids.Cell("smoke", "cgmvae", 0.2)
        config = cells.cell_config(cell, seeds=1, num_epochs=1)
        _, splits = data.load_from_config(config)
        n = splits.train_x.shape[0]
        self.assertLess(n, cells.MIN_BATCHES_PER_EPOCH * config.batch_size)  # 32 too big
        self.assertEqual(cells.fraction_batch_size(config), n // 4)
        with tempfile.TemporaryDirectory() as tmp:
            results, ran = cells.run_cell(cell, config, tmp)
            self.assertTrue(ran)
            self.assertEqual(results["config"]["batch_size"], n // 4)
            self.assertEqual(config.batch_size, 32)  # the caller's config is not changed
        full = cells.cell_config(grids.Cell("smoke", "cgmvae", 1.0), seeds=1)
        self.assertEqual(cells.fraction_batch_size(full), full.batch_size)

    def test_failing_cell_is_reported_and_grid_goes_on(self):
        with tempfile.TemporaryDirectory() as tmp:
            summary = runner.run_grid(
                "main",
                workdir=os.path.join(tmp, "runs"),
                out=os.path.join(tmp, "out"),
                datasets=["emotions"],
                data_dir=os.path.join(tmp, "no_data_here"),
            )
            self.assertEqual(
                sorted(cell for cell, _ in summary["failures"]), ["emotions/br", "emotions/cgmvae"]
            )
            self.assertTrue(all("DatasetNotFoundError" in m for _, m in summary["failures"]))
            self.assertIn("## Cells without results", _read(summary["markdown"]))


class LossesGridTest(parameterized.TestCase):
    @parameterized.parameters(
        ("mlp_bce", "bce"),
        ("mlp_asl", "asl"),
        ("mlp_asl_kmcl", "asl+kmcl"),
        ("mlp_bce_clml", "bce+clml"),
        ("mlp_asl_clml", "asl+clml"),
    )
    def test_mlp_variants(self, variant, loss):
        self.assertIn(variant, grids.GRIDS["losses"].variants)
        config = cells.cell_config(grids.Cell("scene", variant, 1.0), seeds=3)
        self.assertEqual((config.model, config.loss), ("mlp", loss))
        self.assertEqual(config.learning_rate, 0.003)  # the data set's settings (configs/scene.py)

    def test_gap_to_cgmvae_table(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            for dataset, base in (("yeast", 0.50), ("sider", 0.60)):
                _write_cell(runs, dataset, "cgmvae", 1.0, _fake_results([base]), seeds=1)
                _write_cell(runs, dataset, "mlp_asl", 1.0, _fake_results([base - 0.1]), seeds=1)
                _write_cell(runs, dataset, "mlp_bce", 1.0, _fake_results([base - 0.2]), seeds=1)
            summary = runner.run_grid("losses", workdir=runs, out=out, seeds=1, collect_only=True)
            text = _read(summary["markdown"])
            self.assertIn("## Macro-F1 relative to C-GMVAE", text)
            self.assertIn("| sider | mlp_bce | -0.200 | -0.200 | -0.200 |", text)
            ranking = text.split("## Macro-F1 relative to C-GMVAE")[1]
            self.assertLess(
                ranking.index("| mean | mlp_asl |"), ranking.index("| mean | mlp_bce |")
            )
            self.assertIn("`mlp_asl_kmcl` (MLP, ASL + KMCL): `model=mlp`, `loss=asl+kmcl`", text)

    def test_rows_of_earlier_runs_fill_the_tables(self):
        # C-GMVAE ran elsewhere (only its reproduce.json rows are here); the MLP cell ran in
        # this workdir: the losses table shows both and the gap between them.
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            _write_cell(runs, "yeast", "mlp_bce", 1.0, _fake_results([0.40]), seeds=1)
            _record_rows(out, rows.rows_from_results("yeast", "cgmvae", _fake_results([0.55])))
            summary = runner.run_grid(
                "losses",
                workdir=runs,
                out=out,
                seeds=1,
                collect_only=True,
                datasets=["yeast"],
                variants=["mlp_bce"],
            )
            text = _read(summary["markdown"])
            self.assertIn("| yeast | cgmvae | 1 | 0.560 |", text)
            self.assertIn("| yeast | mlp_bce | 1 | 0.410 |", text)
            self.assertIn("| yeast | mlp_bce | -0.150 | -0.150 | -0.150 |", text)
            self.assertIn("Cells carried over from `reproduce.json`", text)
            self.assertIn("yeast/cgmvae", text.split("Cells carried over")[1].splitlines()[0])
            self.assertNotIn("yeast/cgmvae: not run", text)
            self.assertEqual(summary["failures"], [])  # only yeast/mlp_bce was asked for

    def test_fraction_plot_and_failures_count_carried_cells(self):
        # cgmvae@0.1 ran here; BR ran elsewhere (rows in reproduce.json); unimodal never ran.
        with tempfile.TemporaryDirectory() as tmp:
            runs, out = os.path.join(tmp, "runs"), os.path.join(tmp, "out")
            _write_cell(runs, "yeast", "cgmvae", 0.1, _fake_results([0.40]), seeds=1)
            earlier = []
            for name in ("br@0.1", "br@0.5", "br"):
                earlier += rows.rows_from_results("yeast", name, _fake_results([0.45]))
            _record_rows(out, earlier)
            plotted = []
            with mock.patch.object(
                plots,
                "plot_fraction",
                side_effect=lambda found, path: plotted.extend(found),
            ):
                summary = runner.run_grid(
                    "fraction",
                    workdir=runs,
                    out=out,
                    seeds=1,
                    collect_only=True,
                    datasets=["yeast"],
                )
            self.assertEqual(
                {r["variant"] for r in plotted}, {"cgmvae@0.1", "br@0.1", "br@0.5", "br"}
            )
            failed = sorted(cell for cell, _ in summary["failures"])
            self.assertEqual(
                failed,
                sorted(
                    f"yeast/{v}"
                    for v in ("cgmvae@0.5", "cgmvae", "unimodal@0.1", "unimodal@0.5", "unimodal")
                ),
            )
            self.assertTrue(all(m.startswith("not run") for _, m in summary["failures"]))


if __name__ == "__main__":
    absltest.main()
