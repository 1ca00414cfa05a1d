"""Tests for cgmvae_jax.objective."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import test_util as jtu
from scipy import special

from cgmvae_jax import config_lib, models, objective

B, L, E, D = 5, 4, 6, 3  # batch, labels, embedding, latent

LABELS = np.array(
    [[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32
)  # [B, L]; row 1 has no positive label
WEIGHTS = np.array([1, 1, 1, 1, 0], dtype=np.float32)  # [B]; row 4 is padding

OFFICIAL = dict(bce_weight=0.5, kl_weight=6.0, contrastive_weight=1.0)


def unit_rows(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def fake_outputs(seed=0, prior="mixture", batch=B):
    """Model-shaped outputs with random values (float32)."""
    rng = np.random.default_rng(seed)
    rows = L if prior == "mixture" else batch
    out = {
        "label_logits": rng.normal(size=(batch, L)) * 2,
        "feat_logits": rng.normal(size=(batch, L)) * 2,
        "feat_logits2": rng.normal(size=(batch, L)) * 2,
        "label_emb": unit_rows(rng.normal(size=(batch, E))),
        "feat_emb": unit_rows(rng.normal(size=(batch, E))),
        "feat_emb2": unit_rows(rng.normal(size=(batch, E))),
        "label_embeddings": rng.normal(size=(L, E)),
        "mean_x": rng.normal(size=(batch, D)),
        "log_var_x": rng.normal(size=(batch, D)) * 0.5,
        "z_kl": rng.normal(size=(batch, D)),
        "label_means": rng.normal(size=(rows, D)),
        "label_log_vars": rng.normal(size=(rows, D)) * 0.5,
        "label_z": rng.normal(size=(batch, D)),
    }
    return {k: jnp.asarray(v, jnp.float32) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------
# float64 numpy references, one example at a time.


def np_bce(logits, labels):
    logits = np.float64(logits)
    # -[y log sigmoid(s) + (1 - y) log sigmoid(-s)], summed over labels.
    return np.sum(labels * np.logaddexp(0, -logits) + (1 - labels) * np.logaddexp(0, logits))


def np_log_normal(z, mean, log_var):
    z, mean, log_var = np.float64(z), np.float64(mean), np.float64(log_var)
    return np.sum(-0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var)))


def np_mixture_kl(z, mean, log_var, prior_means, prior_log_vars, labels):
    active = [k for k in range(len(labels)) if labels[k] > 0]
    comps = [np_log_normal(z, prior_means[k], prior_log_vars[k]) for k in active]
    log_p = special.logsumexp(comps) - np.log(len(active))
    return np_log_normal(z, mean, log_var) - log_p


def np_gaussian_kl(mean_q, log_var_q, mean_p, log_var_p):
    mean_q, log_var_q = np.float64(mean_q), np.float64(log_var_q)
    mean_p, log_var_p = np.float64(mean_p), np.float64(log_var_p)
    return 0.5 * np.sum(
        log_var_p
        - log_var_q
        - 1
        + np.exp(log_var_q - log_var_p)
        + (mean_q - mean_p) ** 2 / np.exp(log_var_p)
    )


def np_contrastive(anchor, keys, labels, temperature):
    scores = np.float64(keys) @ np.float64(anchor) / temperature
    log_probs = scores - special.logsumexp(scores)
    return -np.sum(labels * log_probs) / np.sum(labels)


def np_objective(
    outputs,
    labels,
    weights,
    *,
    bce_weight,
    kl_weight,
    contrastive_weight,
    temperature=1.0,
    prior="mixture",
    kl_direction="label_to_feature",
):
    """The objective written as loops over examples."""
    o = {k: np.float64(v) for k, v in outputs.items()}
    sums = dict(bce_label=0.0, bce_feat=0.0, bce_feat2=0.0, kl=0.0, contrastive=0.0)
    num_valid = num_defined = 0.0
    for b in range(len(labels)):
        if weights[b] == 0:
            continue
        num_valid += weights[b]
        sums["bce_feat"] += weights[b] * np_bce(o["feat_logits"][b], labels[b])
        sums["bce_feat2"] += weights[b] * np_bce(o["feat_logits2"][b], labels[b])
        if labels[b].sum() == 0:
            continue
        num_defined += weights[b]
        sums["bce_label"] += weights[b] * np_bce(o["label_logits"][b], labels[b])
        if prior == "mixture":
            kl = np_mixture_kl(
                o["z_kl"][b],
                o["mean_x"][b],
                o["log_var_x"][b],
                o["label_means"],
                o["label_log_vars"],
                labels[b],
            )
        elif kl_direction == "label_to_feature":
            kl = np_gaussian_kl(
                o["label_means"][b], o["label_log_vars"][b], o["mean_x"][b], o["log_var_x"][b]
            )
        else:
            kl = np_gaussian_kl(
                o["mean_x"][b], o["log_var_x"][b], o["label_means"][b], o["label_log_vars"][b]
            )
        sums["kl"] += weights[b] * kl
        keys = o["label_embeddings"]
        con = [
            np_contrastive(o[a][b], keys, labels[b], temperature) for a in ("label_emb", "feat_emb")
        ]
        sums["contrastive"] += weights[b] * np.mean(con)
    terms = {
        k: v / (num_defined if k in ("bce_label", "kl", "contrastive") else num_valid)
        for k, v in sums.items()
    }
    terms["loss"] = (
        bce_weight * (terms["bce_label"] + terms["bce_feat"] + terms["bce_feat2"])
        + kl_weight * terms["kl"]
        + contrastive_weight * terms["contrastive"]
    )
    return terms


def _objective(outputs, labels, weights, scalars, prior, kl_direction):
    """`cgmvae_loss` with the weights and temperature traced (one compilation serves all)."""
    names = ("bce_weight", "kl_weight", "contrastive_weight", "temperature")
    settings = dict(zip(names, scalars, strict=True))
    return objective.cgmvae_loss(
        outputs, labels, weights, prior=prior, kl_direction=kl_direction, **settings
    )


_jit_objective = jax.jit(_objective, static_argnums=(4, 5))
_jit_grad = jax.jit(jax.grad(lambda *args: _objective(*args)[0]), static_argnums=(4, 5))


def _args(outputs, labels, weights, settings):
    settings = (
        OFFICIAL
        | dict(temperature=1.0, prior="mixture", kl_direction="label_to_feature")
        | settings
    )
    scalars = tuple(
        jnp.float32(settings[n])
        for n in ("bce_weight", "kl_weight", "contrastive_weight", "temperature")
    )
    labels = np.asarray(labels)
    return (
        outputs,
        labels,
        np.asarray(weights),
        scalars,
        settings["prior"],
        settings["kl_direction"],
    )


def loss(outputs, labels=LABELS, weights=WEIGHTS, **settings):
    """(total, terms) of `cgmvae_loss` (OFFICIAL weights unless overridden), jitted."""
    return _jit_objective(*_args(outputs, labels, weights, settings))


def loss_grad(outputs, labels=LABELS, weights=WEIGHTS, **settings):
    """Gradient of the total w.r.t. `outputs`, jitted."""
    return _jit_grad(*_args(outputs, labels, weights, settings))


class CGMVAELossTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("mixture", dict()),
        ("mixture_temperature", dict(temperature=0.5, bce_weight=0.1, kl_weight=1.5)),
        ("unimodal_label_to_feature", dict(prior="unimodal")),
        ("unimodal_feature_to_label", dict(prior="unimodal", kl_direction="feature_to_label")),
    )
    def test_matches_numpy_reference(self, settings):
        outputs = fake_outputs(prior=settings.get("prior", "mixture"))
        total, terms = loss(outputs, **settings)
        expected = np_objective(outputs, LABELS, WEIGHTS, **(OFFICIAL | settings))
        self.assertEqual(set(terms), set(objective.TERMS))
        for name, value in expected.items():
            self.assertEqual(terms[name].shape, (), name)
            np.testing.assert_allclose(terms[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(total, expected["loss"], rtol=1e-5)

    def test_official_mixture_formula_on_all_positive_rows(self):
        # No empty or padding rows: plain batch means, as in the official code.
        labels = LABELS[[0, 2, 3]]
        outputs = {
            k: v[np.array([0, 2, 3])] if v.shape[0] == B and k != "label_means" else v
            for k, v in fake_outputs().items()
        }
        _, terms = loss(outputs, labels, np.ones(3, np.float32))
        bce = np.mean([np_bce(outputs["feat_logits"][b], labels[b]) for b in range(3)])
        np.testing.assert_allclose(terms["bce_feat"], bce, rtol=1e-5)
        kl = np.mean(
            [
                np_mixture_kl(
                    outputs["z_kl"][b],
                    outputs["mean_x"][b],
                    outputs["log_var_x"][b],
                    outputs["label_means"],
                    outputs["label_log_vars"],
                    labels[b],
                )
                for b in range(3)
            ]
        )
        np.testing.assert_allclose(terms["kl"], kl, rtol=1e-5)

    def test_bce_at_zero_logits_is_num_labels_log_2(self):
        outputs = fake_outputs()
        for name in ("label_logits", "feat_logits", "feat_logits2"):
            outputs[name] = jnp.zeros((B, L))
        _, terms = loss(outputs)
        for name in ("bce_label", "bce_feat", "bce_feat2"):
            np.testing.assert_allclose(terms[name], L * np.log(2), rtol=1e-6)

    def test_padding_rows_do_not_change_the_loss(self):
        outputs = fake_outputs(batch=B)
        padded = fake_outputs(seed=7, batch=B + 3)
        # Padding rows hold garbage: huge values and NaN.
        shared = ("label_embeddings", "label_means", "label_log_vars")
        padded = {
            k: v if k in shared else jnp.concatenate([v, (1e3 * padded[k][B:]).at[-1].set(jnp.nan)])
            for k, v in outputs.items()
        }
        labels = np.concatenate([LABELS, np.ones((3, L), np.float32)])
        weights = np.concatenate([WEIGHTS, np.zeros(3, np.float32)])
        _, terms = loss(outputs)
        _, padded_terms = loss(padded, labels, weights)
        for name in terms:
            np.testing.assert_allclose(padded_terms[name], terms[name], rtol=1e-6, err_msg=name)
            self.assertTrue(np.isfinite(padded_terms[name]))

        # Padding rows get exactly zero gradient.
        grads = loss_grad(padded, labels, weights)
        for name in ("feat_logits", "label_emb", "z_kl", "mean_x"):
            np.testing.assert_array_equal(grads[name][B - 1 :], 0.0, err_msg=name)
            self.assertTrue(np.any(grads[name][0] != 0), name)

    def test_row_without_positive_label_only_affects_feature_bce(self):
        keep = np.array([0, 2, 3])
        outputs = fake_outputs()
        sub = {
            k: (v[keep] if v.shape[0] == B and k != "label_means" else v)
            for k, v in outputs.items()
        }
        with_empty = {
            k: (v[np.array([0, 1, 2, 3])] if v.shape[0] == B and k != "label_means" else v)
            for k, v in outputs.items()
        }
        labels_empty = LABELS[:4]  # row 1 is empty
        _, terms = loss(sub, LABELS[keep], np.ones(3, np.float32))
        _, terms_empty = loss(with_empty, labels_empty, np.ones(4, np.float32))
        for name in ("bce_label", "kl", "contrastive"):
            np.testing.assert_allclose(terms_empty[name], terms[name], rtol=1e-6, err_msg=name)
        for name, logits in (("bce_feat", "feat_logits"), ("bce_feat2", "feat_logits2")):
            expected = (3 * terms[name] + np_bce(outputs[logits][1], np.zeros(L))) / 4
            np.testing.assert_allclose(terms_empty[name], expected, rtol=1e-5, err_msg=name)

        grads = loss_grad(with_empty, labels_empty, np.ones(4, np.float32))
        for leaf in jax.tree.leaves(grads):
            self.assertTrue(np.all(np.isfinite(leaf)))
        for name in ("label_logits", "label_emb", "feat_emb", "z_kl", "mean_x", "log_var_x"):
            np.testing.assert_array_equal(grads[name][1], 0.0, err_msg=name)
        self.assertTrue(np.all(grads["feat_logits"][1] != 0))

    @parameterized.named_parameters(("mixture", "mixture"), ("unimodal", "unimodal"))
    def test_no_row_qualifies_gives_zero_terms(self, prior):
        outputs = fake_outputs(prior=prior)
        total, terms = loss(outputs, np.zeros((B, L), np.float32), prior=prior)
        for name in ("bce_label", "kl", "contrastive"):
            self.assertEqual(float(terms[name]), 0.0, name)
        np.testing.assert_allclose(total, 0.5 * (terms["bce_feat"] + terms["bce_feat2"]))
        self.assertGreater(float(terms["bce_feat"]), 0.0)
        grads = loss_grad(outputs, np.zeros((B, L), np.float32), prior=prior)
        for leaf in jax.tree.leaves(grads):
            self.assertTrue(np.all(np.isfinite(leaf)))
        _, terms = loss(outputs, weights=np.zeros(B, np.float32), prior=prior)
        for name, value in terms.items():
            self.assertEqual(float(value), 0.0, name)

    @parameterized.named_parameters(
        ("contrastive_only", dict(kl_weight=0.0)),
        ("mixture_only", dict(contrastive_weight=0.0)),
        ("bce_only", dict(kl_weight=0.0, contrastive_weight=0.0)),
        ("unimodal", dict(prior="unimodal")),
    )
    def test_ablation_switches(self, settings):
        prior = settings.get("prior", "mixture")
        outputs = fake_outputs(prior=prior)
        full = OFFICIAL | settings
        total, terms = loss(outputs, **settings)
        expected = np_objective(outputs, LABELS, WEIGHTS, **full)
        np.testing.assert_allclose(total, expected["loss"], rtol=1e-5)
        # Every term is still reported, weighted or not.
        self.assertGreater(float(terms["kl"]) ** 2, 0.0)
        self.assertGreater(float(terms["contrastive"]), 0.0)
        # A switched-off term contributes no gradient.
        grads = loss_grad(outputs, **settings)
        if full["kl_weight"] == 0:
            np.testing.assert_array_equal(grads["z_kl"], 0.0)
            np.testing.assert_array_equal(grads["label_log_vars"], 0.0)
        if full["contrastive_weight"] == 0:
            np.testing.assert_array_equal(grads["label_emb"], 0.0)
            np.testing.assert_array_equal(grads["feat_emb"], 0.0)

    def test_feat_emb2_is_not_a_contrastive_anchor(self):
        outputs = fake_outputs()
        grads = loss_grad(outputs)
        np.testing.assert_array_equal(grads["feat_emb2"], 0.0)
        np.testing.assert_array_equal(grads["label_z"], 0.0)

    def test_gradients_match_finite_differences(self):
        outputs = fake_outputs()
        names = ("label_logits", "feat_emb", "z_kl", "log_var_x", "label_means")

        def fn(*arrays):
            return loss(outputs | dict(zip(names, arrays, strict=True)))[0]

        jtu.check_grads(
            fn, [outputs[n] for n in names], order=1, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2
        )

    def test_label_dtypes_are_equivalent(self):
        outputs = fake_outputs()
        ref, _ = loss(outputs)
        for labels in (LABELS.astype(bool), LABELS.astype(np.uint8), LABELS.astype(np.int32)):
            value, _ = loss(outputs, labels, WEIGHTS.astype(bool))
            np.testing.assert_allclose(value, ref, rtol=1e-6)

    def test_bad_arguments_raise(self):
        outputs = fake_outputs()
        with self.assertRaisesRegex(ValueError, "prior"):
            loss(outputs, prior="gaussian")
        with self.assertRaisesRegex(ValueError, "kl_direction"):
            loss(outputs, prior="unimodal", kl_direction="both")
        with self.assertRaisesRegex(ValueError, "labels shape"):
            loss(outputs, LABELS[:, :2])
        with self.assertRaisesRegex(ValueError, "weights"):
            loss(outputs, LABELS, WEIGHTS[:2])
        with self.assertRaisesRegex(ValueError, "unimodal"):
            loss(outputs, prior="unimodal")  # mixture-shaped label Gaussians


class ModelObjectiveTest(parameterized.TestCase):
    @parameterized.named_parameters(("mixture", "mixture"), ("unimodal", "unimodal"))
    def test_loss_gradients_wrt_params_are_finite(self, prior):
        model = models.CGMVAE(
            num_labels=L,
            latent_dim=D,
            embedding_dim=E,
            feature_hidden=(8,),
            label_hidden=(8,),
            decoder_hidden=(8,),
            dropout_rate=0.0,
            prior=prior,
        )
        x = np.random.default_rng(0).normal(size=(B, 7)).astype(np.float32)
        # Parameter shapes without compiling the initialiser; values ~ torch init scale.
        init_fn = functools.partial(model.init, train=False)
        shapes = jax.eval_shape(init_fn, {"params": jax.random.key(0)}, x, LABELS)["params"]
        rng = np.random.default_rng(1)
        params = jax.tree.map(lambda s: rng.uniform(-0.4, 0.4, s.shape).astype(np.float32), shapes)
        settings = OFFICIAL | dict(prior=prior)

        @jax.jit
        def value_and_grad(params, key):
            def total(params):
                sample_key, dropout_key = jax.random.split(key)
                rngs = {"sample": sample_key, "dropout": dropout_key}
                outputs = model.apply({"params": params}, x, LABELS, train=True, rngs=rngs)
                return objective.cgmvae_loss(outputs, LABELS, WEIGHTS, **settings)

            return jax.value_and_grad(total, has_aux=True)(params)

        (total, terms), grads = value_and_grad(params, jax.random.key(1))
        self.assertTrue(np.isfinite(total))
        for name, value in terms.items():
            self.assertTrue(np.isfinite(value), name)
        for leaf in jax.tree.leaves(grads):
            self.assertTrue(np.all(np.isfinite(leaf)))
        self.assertTrue(np.any(grads["label_encoder"]["heads"]["log_var"]["kernel"] != 0))


class MakeLossFnTest(parameterized.TestCase):
    def test_reads_config_fields(self):
        config = config_lib.base_config()
        config.update(
            dict(
                bce_weight=0.3,
                kl_weight=2.0,
                contrastive_weight=0.7,
                temperature=0.5,
                prior="unimodal",
                kl_direction="feature_to_label",
            )
        )
        outputs = fake_outputs(prior="unimodal")
        total, terms = jax.jit(objective.make_loss_fn(config))(outputs, LABELS, WEIGHTS)
        expected = np_objective(
            outputs,
            LABELS,
            WEIGHTS,
            bce_weight=0.3,
            kl_weight=2.0,
            contrastive_weight=0.7,
            temperature=0.5,
            prior="unimodal",
            kl_direction="feature_to_label",
        )
        np.testing.assert_allclose(total, expected["loss"], rtol=1e-5)
        np.testing.assert_allclose(terms["contrastive"], expected["contrastive"], rtol=1e-5)

    def test_default_config_is_official_weighting(self):
        outputs = fake_outputs()
        total, _ = jax.jit(objective.make_loss_fn(config_lib.base_config()))(
            outputs, LABELS, WEIGHTS
        )
        np.testing.assert_allclose(total, loss(outputs)[0], rtol=1e-6)

    def test_unsupported_configs_raise(self):
        config = config_lib.base_config()
        config.model, config.loss = "mlp", "focal"
        with self.assertRaisesRegex(ValueError, "loss"):
            objective.make_loss_fn(config)
        for field, value in (("model", "gan"), ("prior", "flat"), ("kl_direction", "up")):
            config = config_lib.base_config()
            config[field] = value
            with self.assertRaisesRegex(ValueError, field):
                objective.make_loss_fn(config)


if __name__ == "__main__":
    absltest.main()
