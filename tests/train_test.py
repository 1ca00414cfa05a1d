"""Tests of the training system: schedule, optimizer, steps, epoch loop, outputs and resume."""

import csv
import functools
import json
import math
import os
import shutil
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

from cgmvae_jax import api, config_lib, metrics, optimizer, train
from cgmvae_jax import trainer as trainer_lib
from tests import helpers

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_METRIC_KEYS = helpers.METRIC_KEYS


smoke_config = helpers.smoke_config


def params_of(workdir, config):
    trainer = train.Trainer(
        config, config.synthetic_features, config.synthetic_labels, _num_train(config)
    )
    from cgmvae_jax import checkpoint

    template = trainer.init_state()
    with checkpoint.Checkpointer(workdir) as ckpt:
        state, best, progress = ckpt.restore_latest(template, template.params)
    return state, best, progress


def _num_train(config):
    from cgmvae_jax import data

    _, splits = data.load_from_config(config)
    return splits.train_x.shape[0]


class ScheduleTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("start", 0, 2e-3),
        ("quarter", 25, 2e-4 + (2e-3 - 2e-4) * (1 + math.cos(math.pi * 25 / 50)) / 2),
        ("restart", 50, 2e-3),
        ("second_cycle_mid", 100, 2e-4 + (2e-3 - 2e-4) / 2),
        ("third_cycle", 150, 2e-3),
    )
    def test_warm_restarts(self, epoch, expected):
        config = config_lib.base_config()
        config.num_epochs = 200
        lrs = optimizer.learning_rates(config)
        self.assertAlmostEqual(lrs[epoch], expected, places=12)

    def test_constant_period_without_growth(self):
        config = config_lib.base_config()
        config.num_epochs, config.restart_period, config.restart_mult = 10, 3, 1
        lrs = optimizer.learning_rates(config)
        np.testing.assert_allclose(lrs[[0, 3, 6, 9]], config.learning_rate)
        np.testing.assert_allclose(lrs[1], lrs[4])

    def test_optimizer_is_coupled_l2_adam(self):
        config = config_lib.base_config()
        config.weight_decay = 0.1
        tx = optimizer.make_optimizer(config, steps_per_epoch=3)
        params = {"w": jnp.array([1.0, -2.0])}
        grads = {"w": jnp.array([0.5, 0.25])}
        updates, _ = tx.update(grads, tx.init(params), params)
        # Coupled L2: Adam sees g + wd * p; first Adam step is lr * sign-like m/sqrt(v).
        g = np.array([0.5, 0.25]) + 0.1 * np.array([1.0, -2.0])
        expected = -config.learning_rate * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)


class ParamsEmaTest(absltest.TestCase):
    def test_the_average_equals_a_manual_bias_corrected_average(self):
        decay = 0.8
        tx = optax.chain(optax.sgd(0.1), optimizer.track_params_ema(decay))
        params = {"w": jnp.array([1.0, -2.0])}
        state = trainer_lib.TrainState.create(apply_fn=None, params=params, tx=tx)
        history = []
        for step in range(5):
            state = state.apply_gradients(grads={"w": jnp.array([step, 1.0 - step])})
            history.append(np.asarray(state.params["w"]))
        weights = np.array([(1 - decay) * decay ** (4 - i) for i in range(5)])
        want = (weights[:, None] * np.stack(history)).sum(0) / (1 - decay**5)
        got = optimizer.params_ema(state, decay)["w"]
        np.testing.assert_allclose(got, want, rtol=1e-6)

    def test_a_run_with_an_average_resumes_to_the_same_parameters(self):
        root = tempfile.mkdtemp(prefix="ema_test_")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        config = smoke_config(ema_epochs=2.0)
        full = os.path.join(root, "full")
        train.train_and_evaluate(config, full)
        resumed = os.path.join(root, "resumed")
        train.train_and_evaluate(smoke_config(ema_epochs=2.0, num_epochs=1), resumed)
        train.train_and_evaluate(config, resumed)
        a, b = api.load(full), api.load(resumed)
        chex.assert_trees_all_close(a.params, b.params, atol=0, rtol=0)
        # The kept parameters are the average's, not the last state's.
        state, _, _ = params_of(full, config)
        self.assertFalse(
            np.allclose(
                a.params["decoder"]["input_kernel"], state.params["decoder"]["input_kernel"]
            )
        )


class StepTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.config = smoke_config()
        self.trainer = train.Trainer(self.config, 16, 6, 64)

    def _batch(self, empty_rows=0):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 16)).astype(np.float32)
        y = (rng.random((32, 6)) < 0.3).astype(np.uint8)
        y[:, 0] = 1
        y[:empty_rows] = 0
        return jnp.asarray(x), jnp.asarray(y), jnp.ones((32,), jnp.float32)

    @parameterized.named_parameters(("labelled", 0), ("some_rows_without_labels", 5))
    def test_one_step_changes_params_and_is_finite(self, empty_rows):
        state = jax.tree.map(lambda a: a[0], self.trainer.init_state())
        x, y, w = self._batch(empty_rows)
        key = jax.random.key(0)
        step = jax.jit(
            lambda s: trainer_lib.train_step(s, x, y, w, key, loss_fn=self.trainer.loss_fn)
        )
        new_state, m = step(state)
        self.assertEqual(int(new_state.step), 1)
        for name, value in m.items():
            self.assertTrue(np.isfinite(np.asarray(value)).all(), name)
        self.assertTrue(bool(m["finite"]))
        diffs = jax.tree.leaves(
            jax.tree.map(
                lambda a, b: float(jnp.max(jnp.abs(a - b))), new_state.params, state.params
            )
        )
        self.assertGreater(max(diffs), 0.0)
        chex.assert_tree_all_finite(new_state.params)

    def test_nonfinite_update_is_not_applied(self):
        state = jax.tree.map(lambda a: a[0], self.trainer.init_state())
        x, y, w = self._batch()

        def nan_loss(outputs, labels, weights, epoch=None):
            loss, terms = self.trainer.loss_fn(outputs, labels, weights, epoch=epoch)
            return loss * jnp.nan, terms

        new_state, m = trainer_lib.train_step(state, x, y, w, jax.random.key(0), loss_fn=nan_loss)
        self.assertFalse(bool(m["finite"]))
        chex.assert_trees_all_equal(new_state.params, state.params)
        chex.assert_trees_all_equal(new_state.opt_state, state.opt_state)

    @parameterized.named_parameters(
        ("finite", None, 0),
        ("inf_in_first_tree", np.inf, 0),
        ("minus_inf_in_second_tree", -np.inf, 1),
        ("nan_in_second_tree", np.nan, 1),
        ("huge_but_finite", 3e38, 0),  # a sum of squares would overflow; x - x does not
    )
    def test_all_finite_equals_per_leaf_check(self, bad, tree):
        rng = np.random.default_rng(0)
        trees = [
            {"a": rng.normal(size=(64, 33)).astype(np.float32), "n": np.int32(7)},
            (rng.normal(size=(5,)).astype(np.float32), np.float32(2.0)),
        ]
        if bad is not None and tree == 0:
            trees[0]["a"][3, 4] = bad
        elif bad is not None:
            trees[1][0][3] = bad
        want = all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(trees))
        self.assertEqual(bool(jax.jit(trainer_lib.all_finite)(*trees)), want)
        self.assertEqual(want, bad is None or np.isfinite(bad))

    def test_finite_step_equals_the_plain_update(self):
        # The guard selects the new state when everything is finite: the plain
        # `apply_gradients` of the same gradients.
        state = jax.tree.map(lambda a: a[0], self.trainer.init_state())
        x, y, w = self._batch()
        key = jax.random.key(2)
        new_state, m = jax.jit(
            lambda s: trainer_lib.train_step(s, x, y, w, key, loss_fn=self.trainer.loss_fn)
        )(state)

        @jax.jit
        def plain(s):
            dropout_key, sample_key = jax.random.split(jax.random.fold_in(key, s.step))
            yf = y.astype(jnp.float32)

            def compute_loss(params):
                outputs = s.apply_fn(
                    {"params": params},
                    x,
                    yf,
                    train=True,
                    rngs={"dropout": dropout_key, "sample": sample_key},
                )
                return self.trainer.loss_fn(outputs, yf, w, epoch=0)

            (loss, _), grads = jax.value_and_grad(compute_loss, has_aux=True)(s.params)
            return s.apply_gradients(grads=grads), loss

        want_state, want_loss = plain(state)
        self.assertTrue(bool(m["finite"]))
        # Two separately compiled programs: equal up to XLA's fusion choices (float rounding).
        np.testing.assert_allclose(m["loss"], want_loss, rtol=1e-6)
        chex.assert_trees_all_close(new_state.params, want_state.params, rtol=1e-5, atol=1e-7)
        chex.assert_trees_all_close(new_state.opt_state, want_state.opt_state, rtol=1e-5, atol=1e-9)
        self.assertEqual(int(new_state.step), 1)

    @parameterized.named_parameters(
        ("finite", None, 1e-3),
        ("nan_loss_at_step_2", 2, 1e-3),
        ("updates_overflow", None, 1e38),  # parameters overflow after the first update
    )
    def test_state_checked_per_call_equals_per_step(self, nan_step, learning_rate):
        config = smoke_config(learning_rate=learning_rate)
        trainer = train.Trainer(config, 16, 6, 64)
        state = jax.tree.map(lambda a: a[0], trainer.init_state())
        rng = np.random.default_rng(3)
        data_x = jnp.asarray(rng.normal(size=(64, 16)).astype(np.float32))
        data_y = jnp.asarray((rng.random((64, 6)) < 0.3).astype(np.uint8))
        indices = jnp.asarray(rng.integers(0, 64, size=(4, 32)), jnp.int32)
        weights = jnp.ones((4, 32), jnp.float32)

        def loss_fn(outputs, labels, w, *, epoch=None):
            loss, terms = trainer.loss_fn(outputs, labels, w, epoch=epoch)
            if nan_step is not None:  # the step number is the loss's `epoch` (1 step/epoch)
                loss = jnp.where(epoch == nan_step, jnp.nan, loss)
            return loss, terms

        def run(check_each_step):
            fn = functools.partial(
                trainer_lib.train_steps,
                loss_fn=loss_fn,
                steps_per_epoch=1,
                check_each_step=check_each_step,
            )
            return jax.jit(fn)(state, jax.random.key(0), data_x, data_y, indices, weights)

        (want_state, want), (got_state, got) = run(True), run(False)
        chex.assert_trees_all_equal(got_state.params, want_state.params)
        chex.assert_trees_all_equal(got_state.opt_state, want_state.opt_state)
        chex.assert_trees_all_equal(got, want)
        expected = np.ones(4, bool)
        if nan_step is not None:
            expected[nan_step] = False
        if learning_rate > 1:
            expected[1:] = False  # the first update (about 1e38) still fits in float32
        np.testing.assert_array_equal(got["finite"], expected)
        chex.assert_tree_all_finite(got_state.params)

    def test_epoch_indices_cover_each_row_once(self):
        idx, w = trainer_lib.epoch_indices(jax.random.key(3), 2, num_examples=70, batch_size=32)
        self.assertEqual(idx.shape, (3, 32))
        real = np.asarray(idx)[np.asarray(w) > 0]
        np.testing.assert_array_equal(np.sort(real), np.arange(70))
        self.assertEqual(float(w.sum()), 70.0)
        other, _ = trainer_lib.epoch_indices(jax.random.key(3), 3, num_examples=70, batch_size=32)
        self.assertFalse(np.array_equal(np.asarray(idx), np.asarray(other)))

    def test_padding_rows_do_not_change_the_update(self):
        state = jax.tree.map(lambda a: a[0], self.trainer.init_state())
        x, y, w = self._batch()
        key = jax.random.key(1)
        # The same 24 real rows, with and without 8 padding rows of garbage.
        x_pad = x.at[24:].set(100.0)
        w_pad = w.at[24:].set(0.0)

        def loss_only(xx, yy, ww):
            outputs = state.apply_fn(
                {"params": state.params}, xx, yy.astype(jnp.float32), train=False
            )
            return self.trainer.loss_fn(outputs, yy.astype(jnp.float32), ww)[0]

        full = loss_only(x[:24], y[:24], w[:24])
        padded = loss_only(x_pad, y, w_pad)
        # Evaluation mode still draws the KL sample from the mean: deterministic, comparable.
        np.testing.assert_allclose(full, padded, rtol=1e-5)
        del key


class TrainAndEvaluateTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp()
        cls.config = smoke_config()
        cls.workdir = os.path.join(cls.root, "full")
        cls.results = train.train_and_evaluate(cls.config, cls.workdir)

    def test_results_json_has_the_contract_keys(self):
        with open(os.path.join(self.workdir, "results.json")) as f:
            results = json.load(f)
        for key in (
            "dataset",
            "config",
            "best_epoch",
            "val",
            "test",
            "train_seconds",
            "steps_per_sec",
        ):
            self.assertIn(key, results)
        self.assertEqual(results["dataset"], "synthetic")
        for split in ("val", "test"):
            self.assertEqual(
                set(results[split]), {"fixed", "val_tuned", "val_per_metric", "official"}
            )
            for protocol in results[split].values():
                self.assertTrue(_METRIC_KEYS <= set(protocol))
                for v in protocol.values():
                    self.assertTrue(0.0 <= v <= 1.0)
        self.assertIn(results["best_epoch"], range(self.config.num_epochs))
        self.assertEqual(results["best_epochs"], [results["best_epoch"]])
        (thresholds,) = results["thresholds_per_seed"]
        self.assertEqual(thresholds["val_tuned"], results["val_tuned_threshold"])
        self.assertEqual(thresholds["val_per_metric"], results["val_per_metric_thresholds"])
        self.assertEqual(set(thresholds["val_per_metric"]), _METRIC_KEYS)
        self.assertEqual(thresholds["val_per_metric"]["macro_f1"], thresholds["val_tuned"])
        self.assertGreater(results["steps_per_sec"], 0.0)
        # The optimistic protocol is never below the fixed threshold on the same split.
        for metric in ("example_f1", "micro_f1", "macro_f1"):
            self.assertGreaterEqual(
                results["test"]["official"][metric] + 1e-9, results["test"]["fixed"][metric]
            )

    def test_metrics_jsonl_has_one_line_per_epoch(self):
        with open(os.path.join(self.workdir, "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([r["epoch"] for r in lines], list(range(self.config.num_epochs)))
        for r in lines:
            for key in ("step", "lr", "train_loss", "val_macro_f1", "samples_per_sec"):
                self.assertIn(key, r)
                self.assertTrue(np.isfinite(r[key]), key)
        with open(os.path.join(self.workdir, "config.json")) as f:
            self.assertEqual(json.load(f)["dataset"], "synthetic")

    def test_second_run_on_finished_workdir_returns_same_results(self):
        again = train.train_and_evaluate(self.config, self.workdir)
        self.assertEqual(again["test"], self.results["test"])

    def test_resume_equals_uninterrupted(self):
        workdir = os.path.join(self.root, "resumed")
        first = smoke_config(num_epochs=1)
        train.train_and_evaluate(first, workdir)
        train.train_and_evaluate(self.config, workdir)  # continues with epochs 1 and 2
        full_state, full_best, _ = params_of(self.workdir, self.config)
        resumed_state, resumed_best, progress = params_of(workdir, self.config)
        self.assertEqual(progress["epoch"], self.config.num_epochs - 1)
        chex.assert_trees_all_close(resumed_state.params, full_state.params, atol=0, rtol=0)
        chex.assert_trees_all_close(resumed_best, full_best, atol=0, rtol=0)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            self.assertEqual([json.loads(x)["epoch"] for x in f], [0, 1, 2])

    def test_no_retrace_across_epochs(self):
        config = smoke_config(num_epochs=3)
        trainer = train.Trainer(config, 16, 6, 96)
        state = trainer.init_state()
        data_x = jnp.zeros((96, 16))
        data_y = jnp.ones((96, 6), jnp.uint8)
        for epoch in range(3):
            idx, w = trainer.epoch_batches(epoch)
            state, _ = trainer.run_steps(state, data_x, data_y, idx, w)
        self.assertEqual(trainer._steps_gather._cache_size(), 1)
        self.assertEqual(trainer._epoch_indices._cache_size(), 1)

    def test_load_best_scores_and_writes_predictions_csv(self):
        trainer, params, splits, dataset, info = train.load_best(self.workdir)
        self.assertEqual(info["best_epoch"], [self.results["best_epoch"]])
        probs = trainer.predict(params, splits.test_x)[0]
        self.assertEqual(probs.shape, splits.test_y.shape)
        # The best checkpoint reproduces the test metrics of results.json.
        fixed = metrics.fixed_protocol(probs, splits.test_y)
        self.assertAlmostEqual(fixed["macro_f1"], self.results["test"]["fixed"]["macro_f1"])
        path = os.path.join(self.root, "pred.csv")
        api.write_predictions(path, probs, list(dataset.label_names), 0.5, 3)
        with open(path) as f:
            rows = list(csv.reader(f))
        self.assertEqual(len(rows), len(probs) + 1)
        self.assertEqual(rows[0][:3], ["row", "predicted_labels", "top_3"])
        self.assertLen(rows[1][2].split(), 3)

    def test_incompatible_workdir_is_refused(self):
        other = smoke_config(embedding_dim=16)
        with self.assertRaisesRegex(ValueError, "embedding_dim"):
            train.train_and_evaluate(other, self.workdir)

    def test_streaming_equals_on_device(self):
        workdir = os.path.join(self.root, "streamed")
        config = smoke_config(device_data_limit_mb=0.0, steps_per_call=3)
        train.train_and_evaluate(config, workdir)
        on_device = os.path.join(self.root, "chunked")
        train.train_and_evaluate(smoke_config(steps_per_call=3), on_device)
        streamed, _, _ = params_of(workdir, config)
        reference, _, _ = params_of(on_device, config)
        chex.assert_trees_all_close(streamed.params, reference.params, atol=1e-6, rtol=1e-6)


class SeedsTest(absltest.TestCase):
    def test_vmapped_seeds_equal_single_runs(self):
        # Seed i of a num_seeds run is the single run with seed + i: same init, same batches,
        # same updates (to float tolerance; over many Adam steps rounding differences grow, so
        # the comparison covers the first steps).
        both_config = smoke_config(num_seeds=2)
        both = train.Trainer(both_config, 16, 6, 96)
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(96, 16)).astype(np.float32))
        y = jnp.asarray((rng.random((96, 6)) < 0.4).astype(np.uint8))
        state = both.init_state()
        idx, w = both.epoch_batches(0)
        state, metrics = both.run_steps(state, x, y, idx[:, :2], w[:, :2])
        for i in range(2):
            single = train.Trainer(smoke_config(seed=both_config.seed + i), 16, 6, 96)
            s_state = single.init_state()
            s_idx, s_w = single.epoch_batches(0)
            np.testing.assert_array_equal(s_idx[0], idx[i])
            s_state, s_metrics = single.run_steps(s_state, x, y, s_idx[:, :2], s_w[:, :2])
            np.testing.assert_allclose(s_metrics["loss"][0], metrics["loss"][i], rtol=1e-5)
            chex.assert_trees_all_close(
                jax.tree.map(lambda a, i=i: a[i], state.params),
                jax.tree.map(lambda a: a[0], s_state.params),
                atol=1e-5,
                rtol=1e-5,
            )

    def test_num_seeds_results_have_per_seed_rows_and_ensemble(self):
        results = train.train_and_evaluate(
            smoke_config(num_epochs=2, num_seeds=2), tempfile.mkdtemp()
        )
        self.assertEqual(len(results["per_seed"]), 2)
        self.assertEqual(results["seeds"], [1, 2])
        for split in ("val", "test"):
            for protocol in ("fixed", "val_tuned", "official"):
                values = [p[split][protocol]["macro_f1"] for p in results["per_seed"]]
                self.assertAlmostEqual(results[split][protocol]["macro_f1"], np.mean(values))
                self.assertAlmostEqual(
                    results[f"{split}_std"][protocol]["macro_f1"], np.std(values)
                )
        self.assertTrue(_METRIC_KEYS <= set(results["ensemble"]["test"]["fixed"]))


if __name__ == "__main__":
    absltest.main()
