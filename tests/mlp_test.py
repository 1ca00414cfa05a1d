"""Tests for the MLP baselines: baselines.KMCLHead, baselines.MLPClassifier, objective.mlp_loss,
the mlp_* configs and training them end to end."""

import functools
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import test_util as jtu

from cgmvae_jax import baselines, config_lib, losses, metrics, models, objective
from tests import helpers

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B, F, L, D = 6, 5, 4, 3  # batch, input features, labels, feature (penultimate) size
LOSSES = objective.MLP_LOSSES
CONFIGS = {
    "bce": "mlp_bce",
    "asl": "mlp_asl",
    "asl+kmcl": "mlp_asl_kmcl",
    "bce+clml": "mlp_bce_clml",
    "asl+clml": "mlp_asl_clml",
}
LABELS = np.array(
    [[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 1, 1], [0, 1, 1, 0]],
    dtype=np.float32,
)  # [B, L]; row 1 has no positive label


load_config = helpers.load_config


def fake_outputs(seed=0, batch=B, isotropic=False, logit_scale=2.0):
    """MLPClassifier-shaped outputs with random values (float32)."""
    rng = np.random.default_rng(seed)
    shape = (batch, L) if isotropic else (batch, L, D)
    out = {
        "feat_logits": rng.normal(size=(batch, L)) * logit_scale,
        "features": np.abs(rng.normal(size=(batch, D))),
        "kmcl_means": rng.normal(size=shape),
        "kmcl_variances": 1.0 + rng.uniform(size=shape),
    }
    return {k: jnp.asarray(v, jnp.float32) for k, v in out.items()}


def np_bce(logits, labels):
    """float64 binary cross-entropy summed over labels: [B, L] -> [B]."""
    logits = np.float64(logits)
    return np.sum(labels * np.logaddexp(0, -logits) + (1 - labels) * np.logaddexp(0, logits), -1)


def all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


# ------------------------------------------------------------------------------------------------
# Modules.


class KMCLHeadTest(parameterized.TestCase):
    @parameterized.named_parameters(("isotropic", True, (B, L)), ("anisotropic", False, (B, L, D)))
    def test_shapes_dtype_and_variance_floor(self, isotropic, shape):
        head = baselines.KMCLHead(L, isotropic=isotropic, min_variance=0.5)
        h = jax.random.normal(jax.random.key(0), (B, D)) * 100.0  # large features
        params = head.init(jax.random.key(1), h)
        means, variances = head.apply(params, h)
        self.assertEqual((means.shape, variances.shape), (shape, shape))
        self.assertEqual((means.dtype, variances.dtype), (jnp.float32, jnp.float32))
        self.assertTrue(bool(jnp.all(variances >= 0.5)))
        self.assertTrue(all_finite((means, variances)))
        kernel = params["params"]["mean"]["kernel"]
        self.assertEqual(kernel.shape, (D, L if isotropic else L * D))

    def test_anisotropic_layout_is_class_major(self):
        head = baselines.KMCLHead(L, isotropic=False)
        h = jax.random.normal(jax.random.key(0), (B, D))
        params = head.init(jax.random.key(1), h)
        means, _ = head.apply(params, h)
        kernel = params["params"]["mean"]["kernel"]  # [D, L * D]
        bias = params["params"]["mean"]["bias"]
        flat = np.float64(h) @ np.float64(kernel) + np.float64(bias)  # [B, L * D]
        np.testing.assert_allclose(means[:, 2, 1], flat[:, 2 * D + 1], rtol=1e-5, atol=1e-5)

    def test_bfloat16_compute_gives_float32(self):
        head = baselines.KMCLHead(L, dtype=jnp.bfloat16)
        h = jnp.ones((B, D))
        means, variances = head.apply(head.init(jax.random.key(0), h), h)
        self.assertEqual((means.dtype, variances.dtype), (jnp.float32, jnp.float32))

    def test_bad_min_variance_raises(self):
        head = baselines.KMCLHead(L, min_variance=0.0)
        with self.assertRaisesRegex(ValueError, "min_variance"):
            head.init(jax.random.key(0), jnp.ones((B, D)))


class MLPClassifierTest(parameterized.TestCase):
    def init(self, model, x):
        rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        return model.init(rngs, x, jnp.asarray(LABELS), train=True)

    @parameterized.named_parameters(
        ("plain", False, False, None),
        ("kmcl_isotropic", True, True, (B, L)),
        ("kmcl_anisotropic", True, False, (B, L, D)),
    )
    def test_outputs(self, kmcl, isotropic, kmcl_shape):
        model = baselines.MLPClassifier(L, hidden=(7, D), kmcl=kmcl, kmcl_isotropic=isotropic)
        x = jax.random.normal(jax.random.key(2), (B, F))
        variables = self.init(model, x)
        out = model.apply(variables, x, LABELS, train=True, rngs={"dropout": jax.random.key(3)})
        expected = {"feat_logits": (B, L), "features": (B, D)}
        if kmcl:
            expected |= {"kmcl_means": kmcl_shape, "kmcl_variances": kmcl_shape}
        self.assertEqual({k: v.shape for k, v in out.items()}, expected)
        self.assertTrue(all(v.dtype == jnp.float32 for v in out.values()))
        self.assertEqual("kmcl_head" in variables["params"], kmcl)
        # The logits are a linear function of the features.
        dense = variables["params"]["classifier"]
        np.testing.assert_allclose(
            out["feat_logits"], out["features"] @ dense["kernel"] + dense["bias"], atol=1e-5
        )

    def test_predict_is_deterministic_call(self):
        model = baselines.MLPClassifier(L, hidden=(8, D), dropout_rate=0.5, kmcl=True)
        x = jax.random.normal(jax.random.key(2), (B, F))
        variables = self.init(model, x)
        logits = jax.jit(lambda v, x: model.apply(v, x, method="predict"))(variables, x)
        eval_out = model.apply(variables, x, LABELS, train=False)
        np.testing.assert_allclose(logits, eval_out["feat_logits"], rtol=1e-6)
        train_out = model.apply(
            variables, x, LABELS, train=True, rngs={"dropout": jax.random.key(4)}
        )
        self.assertFalse(np.allclose(train_out["feat_logits"], logits))  # dropout is on

    def test_labels_are_not_an_input(self):
        model = baselines.MLPClassifier(L, hidden=(8,))
        x = jax.random.normal(jax.random.key(2), (B, F))
        variables = self.init(model, x)
        a = model.apply(variables, x, LABELS, train=False)
        b = model.apply(variables, x, 1.0 - LABELS, train=False)
        np.testing.assert_array_equal(a["feat_logits"], b["feat_logits"])

    @parameterized.parameters(*LOSSES)
    def test_make_model_from_config(self, loss):
        config = config_lib.base_config()
        config.update(
            dict(model="mlp", loss=loss, feature_hidden=(9, 5), init="flax", dropout_rate=0.2)
        )
        config.kmcl_isotropic, config.kmcl_min_variance = True, 0.3
        model = models.make_model(config, F, L)
        self.assertEqual(
            model,
            baselines.MLPClassifier(
                num_labels=L,
                hidden=(9, 5),
                dropout_rate=0.2,
                param_init="flax",
                kmcl="kmcl" in loss,
                kmcl_isotropic=True,
                kmcl_min_variance=0.3,
            ),
        )

    def test_empty_hidden_raises(self):
        model = baselines.MLPClassifier(L, hidden=())
        with self.assertRaisesRegex(ValueError, "hidden"):
            self.init(model, jnp.ones((B, F)))


# ------------------------------------------------------------------------------------------------
# The objective.


@functools.cache
def _jitted_loss(loss, settings):
    return jax.jit(functools.partial(objective.mlp_loss, loss=loss, **dict(settings)))


@functools.cache
def _jitted_value_and_grad(loss):
    def total(outputs, labels, weights, epoch):
        return objective.mlp_loss(outputs, labels, weights, loss=loss, epoch=epoch)[0]

    return jax.jit(jax.value_and_grad(total))


def mlp_loss(outputs, labels, weights, loss, epoch=2, **kwargs):
    """`objective.mlp_loss` under jit (one compilation per loss, settings and shapes)."""
    fn = _jitted_loss(loss, tuple(sorted(kwargs.items())))
    return fn(outputs, labels, weights, epoch=jnp.int32(epoch))


def value_and_grad(outputs, labels, weights, loss, epoch=2):
    """The total and its gradient with respect to every output, under jit."""
    return _jitted_value_and_grad(loss)(outputs, labels, weights, jnp.int32(epoch))


class MLPLossTest(parameterized.TestCase):
    @parameterized.parameters(*LOSSES)
    def test_terms_and_total(self, loss):
        outputs = fake_outputs()
        weights = np.ones(B, np.float32)
        total, terms = mlp_loss(outputs, LABELS, weights, loss, kmcl_weight=0.3, clml_weight=0.7)
        base, _, extra = loss.partition("+")
        expected_keys = {"loss", base} | (
            {"kmcl_rec", "kmcl_con"} if extra == "kmcl" else {extra} if extra else set()
        )
        self.assertEqual(set(terms), expected_keys)
        self.assertLessEqual(set(terms), set(objective.MLP_TERMS))
        logits = outputs["feat_logits"]
        if base == "bce":
            np.testing.assert_allclose(terms["bce"], np_bce(logits, LABELS).mean(), rtol=1e-5)
        else:
            want = losses.asymmetric_loss(logits, LABELS).mean()  # mean of per-row sums
            np.testing.assert_allclose(terms["asl"], want, rtol=1e-5)
        want_total = terms[base]
        if extra == "kmcl":
            means, variances = outputs["kmcl_means"], outputs["kmcl_variances"]
            rec = losses.kmcl_reconstruction_loss(
                outputs["features"], logits, means, variances, LABELS
            )
            # Rows with a positive label only (row 1 has none).
            np.testing.assert_allclose(terms["kmcl_rec"], np.delete(rec, 1).mean(), rtol=1e-5)
            con = losses.kmcl_contrastive_loss(means, variances, LABELS, distance_scale=1.0)
            np.testing.assert_allclose(terms["kmcl_con"], np.delete(con, 1).mean(), rtol=1e-5)
            want_total = want_total + 0.3 * (terms["kmcl_rec"] + terms["kmcl_con"])
        if extra == "clml":
            want = losses.clml_loss(outputs["features"], logits, LABELS, epoch=2)
            np.testing.assert_allclose(terms["clml"], want, rtol=1e-5)
            want_total = want_total + 0.7 * terms["clml"]
        np.testing.assert_allclose(total, want_total, rtol=1e-6)
        np.testing.assert_allclose(terms["loss"], total)

    def test_asl_with_zero_gammas_and_clip_is_bce(self):
        outputs = fake_outputs()
        weights = np.ones(B, np.float32)
        _, asl = mlp_loss(
            outputs, LABELS, weights, "asl", asl_gamma_neg=0.0, asl_gamma_pos=0.0, asl_clip=0.0
        )
        _, bce = mlp_loss(outputs, LABELS, weights, "bce")
        np.testing.assert_allclose(asl["asl"], bce["bce"], rtol=1e-5)

    def test_clml_spec_oracle(self):
        # X = I_2, both rows carry label 0 only, label 1 empty: (2 + 1 - 2) / 2 = 0.5.
        outputs = {"feat_logits": jnp.full((2, 2), -5.0), "features": jnp.eye(2)}
        _, terms = mlp_loss(outputs, np.array([[1, 0], [1, 0]]), np.ones(2), "bce+clml")
        np.testing.assert_allclose(terms["clml"], 0.5, rtol=1e-6)

    def test_clml_label_correction_starts_at_epoch(self):
        outputs = fake_outputs()
        logits = -jnp.abs(outputs["feat_logits"])  # nothing above the threshold ...
        outputs["feat_logits"] = logits.at[1, 3].set(8.0)  # ... but one unlabeled entry
        weights = np.ones(B, np.float32)
        values = [
            mlp_loss(outputs, LABELS, weights, "bce+clml", epoch=e, clml_start_epoch=1)[1]["clml"]
            for e in (0, 1)
        ]
        corrected = LABELS.copy()
        corrected[1, 3] = 1.0
        want = [
            losses.clml_loss(outputs["features"], outputs["feat_logits"], y, epoch=0)
            for y in (LABELS, corrected)
        ]
        np.testing.assert_allclose(values, want, rtol=1e-5)
        self.assertNotAlmostEqual(float(values[0]), float(values[1]), places=4)

    @parameterized.named_parameters(("isotropic", True), ("anisotropic", False))
    def test_kmcl_distance_scale_default_is_exact(self, isotropic):
        outputs = fake_outputs(isotropic=isotropic)
        weights = np.ones(B, np.float32)
        _, terms = mlp_loss(outputs, LABELS, weights, "asl+kmcl")
        scale = float(D) if isotropic else 1.0
        con = losses.kmcl_contrastive_loss(
            outputs["kmcl_means"], outputs["kmcl_variances"], LABELS, distance_scale=scale
        )
        np.testing.assert_allclose(terms["kmcl_con"], np.delete(con, 1).mean(), rtol=1e-5)
        _, released = mlp_loss(outputs, LABELS, weights, "asl+kmcl", kmcl_distance_scale=D)
        if not isotropic:  # M = D on top of the sum over D: a different value
            self.assertNotAlmostEqual(float(terms["kmcl_con"]), float(released["kmcl_con"]), 4)

    @parameterized.product(loss=LOSSES, isotropic=(True, False))
    def test_padding_rows_do_not_change_the_loss(self, loss, isotropic):
        outputs = fake_outputs(isotropic=isotropic)
        weights = np.ones(B, np.float32)
        want_total, want = mlp_loss(outputs, LABELS, weights, loss)
        # Two padding rows with garbage (huge and NaN values) and labels.
        junk = fake_outputs(seed=5, batch=2, isotropic=isotropic, logit_scale=1e4)
        junk = {k: v.at[0].set(jnp.nan) for k, v in junk.items()}
        padded = {k: jnp.concatenate([outputs[k], junk[k]]) for k in outputs}
        labels = np.concatenate([LABELS, np.ones((2, L), np.float32)])
        pad_weights = np.concatenate([weights, np.zeros(2, np.float32)])
        got_total, got = mlp_loss(padded, labels, pad_weights, loss)
        np.testing.assert_allclose(got_total, want_total, rtol=1e-5)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)
        # No gradient reaches the padding rows, and every gradient is finite.
        _, grads = value_and_grad(padded, labels, pad_weights, loss)
        self.assertTrue(all_finite(grads))
        for name, g in grads.items():
            np.testing.assert_array_equal(g[B:], 0.0, err_msg=name)

    @parameterized.product(loss=LOSSES, isotropic=(True, False))
    def test_finite_at_extreme_logits_and_label_free_rows(self, loss, isotropic):
        labels = LABELS.copy()
        labels[3] = 0.0  # two rows without a positive label
        weights = np.array([1, 1, 1, 1, 1, 0], np.float32)
        for sign in (1.0, -1.0):  # right and wrong with full confidence
            outputs = fake_outputs(isotropic=isotropic)
            outputs["feat_logits"] = sign * 1e4 * jnp.sign(outputs["feat_logits"])
            outputs["features"] = outputs["features"] * 1e3
            value, grads = value_and_grad(outputs, labels, weights, loss, epoch=3)
            self.assertTrue(np.isfinite(value), sign)
            self.assertTrue(all_finite(grads), sign)

    @parameterized.named_parameters(
        ("bce", "bce", {}),
        ("asl_as_bce_kmcl", "asl+kmcl", dict(asl_gamma_neg=0.0, asl_clip=0.0)),
    )
    def test_gradients_match_finite_differences(self, loss, kwargs):
        outputs = fake_outputs(isotropic=True)
        names = ("feat_logits", "features", "kmcl_means", "kmcl_variances")
        weights = np.array([1, 1, 1, 1, 1, 0], np.float64)
        with jax.enable_x64(True):
            args = tuple(jnp.asarray(np.float64(outputs[k])) for k in names)

            def fn(*values):
                out = dict(zip(names, values, strict=True))
                return objective.mlp_loss(out, LABELS, weights, loss=loss, epoch=0, **kwargs)[0]

            jtu.check_grads(jax.jit(fn), args, order=1, modes=["rev"])

    def test_errors(self):
        outputs = fake_outputs()
        weights = np.ones(B, np.float32)
        with self.assertRaisesRegex(ValueError, "loss"):
            objective.mlp_loss(outputs, LABELS, weights, loss="focal", epoch=0)
        with self.assertRaisesRegex(ValueError, "epoch"):
            objective.mlp_loss(outputs, LABELS, weights, loss="asl+clml", epoch=None)
        plain = {k: outputs[k] for k in ("feat_logits", "features")}
        with self.assertRaisesRegex(KeyError, "kmcl_means"):
            objective.mlp_loss(plain, LABELS, weights, loss="asl+kmcl", epoch=0)
        with self.assertRaisesRegex(ValueError, "weights"):
            objective.mlp_loss(outputs, LABELS, weights[:3], loss="bce", epoch=0)
        with self.assertRaisesRegex(ValueError, "labels"):
            objective.mlp_loss(outputs, LABELS[:, :2], weights, loss="bce", epoch=0)


# ------------------------------------------------------------------------------------------------
# Configs and the loss function the trainer uses.


class ConfigTest(parameterized.TestCase):
    @parameterized.parameters(*CONFIGS.items())
    def test_config_files(self, loss, name):
        config = load_config(name)
        self.assertEqual((config.model, config.loss, config.dataset), ("mlp", loss, "yeast"))
        config_lib.validate(config)
        module_doc = open(os.path.join(_REPO, "configs", f"{name}.py")).read()
        self.assertIn(f"--config=configs/{name}.py", module_doc)

    @parameterized.parameters(*LOSSES)
    def test_make_loss_fn_uses_config_fields(self, loss):
        settings = dict(
            asl_gamma_neg=2.0,
            asl_clip=0.1,
            kmcl_weight=0.4,
            kmcl_temperature=0.5,
            kmcl_distance_scale=2.0,
            clml_weight=0.2,
            clml_threshold=0.6,
            clml_start_epoch=3,
        )
        config = load_config(CONFIGS[loss], **settings)
        outputs = fake_outputs()
        weights = np.array([1, 1, 1, 1, 1, 0], np.float32)
        got = jax.jit(objective.make_loss_fn(config))(outputs, LABELS, weights, epoch=jnp.int32(3))
        want = objective.mlp_loss(outputs, LABELS, weights, loss=loss, epoch=3, **settings)
        jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6), got, want)

    @parameterized.parameters(
        ("asl_gamma_neg", -1.0),
        ("asl_clip", 1.0),
        ("kmcl_weight", -0.1),
        ("kmcl_temperature", 0.0),
        ("kmcl_min_variance", 0.0),
        ("kmcl_distance_scale", -1.0),
        ("clml_weight", -1.0),
        ("clml_threshold", 1.0),
        ("clml_start_epoch", -1),
        ("loss", "focal"),
        ("feature_hidden", ()),
    )
    def test_validate_rejects(self, field, value):
        config = load_config("mlp_asl")
        config[field] = value
        with self.assertRaisesRegex(ValueError, field):
            config_lib.validate(config)


# ------------------------------------------------------------------------------------------------
# End to end: every loss through the trainer.


class TrainTest(absltest.TestCase):
    def test_train_and_evaluate_every_loss(self):
        from cgmvae_jax import train  # the trainer (optax, orbax) only for this test

        tmp = tempfile.TemporaryDirectory(prefix="mlp_test_")
        self.addCleanup(tmp.cleanup)
        root = tmp.name
        for loss, name in CONFIGS.items():
            config = load_config(name)
            config.update(
                dict(
                    dataset="synthetic",
                    synthetic_examples=150,
                    synthetic_features=8,
                    synthetic_labels=5,
                    feature_hidden=(16,),
                    batch_size=32,  # 120 training rows: the last batch is padded
                    num_epochs=2,
                    restart_period=2,
                    eval_batch_size=64,
                    progress=False,
                    clml_start_epoch=1,
                )
            )
            workdir = os.path.join(root, name)
            with self.subTest(loss=loss):
                results = train.train_and_evaluate(config, workdir)
                with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
                    on_disk = json.load(f)
                self.assertEqual(on_disk["config"]["loss"], loss)
                self.assertEqual(on_disk["config"]["model"], "mlp")
                self.assertEqual(set(on_disk["test"]), set(metrics.PROTOCOLS))
                for protocol in on_disk["test"].values():
                    self.assertTrue(all(np.isfinite(v) for v in protocol.values()))
                self.assertEqual(results["best_epoch"], on_disk["best_epoch"])
                with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
                    records = [json.loads(line) for line in f]
                self.assertLen(records, 2)
                term = "train_" + loss.partition("+")[0]
                self.assertTrue(all(np.isfinite(r[term]) for r in records))


if __name__ == "__main__":
    absltest.main()
