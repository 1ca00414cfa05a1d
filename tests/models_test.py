"""Tests for cgmvae_jax.models."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import baselines, config_lib, cpu_rewrites, layers, models

B, F, L, E, D = 4, 7, 5, 16, 3  # batch, features, labels, embedding, latent

LABELS = np.array(
    [[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]], dtype=np.float32
)  # [B, L]; row 1 has no positive label


def small_model(**kwargs) -> models.CGMVAE:
    fields = dict(
        num_labels=L,
        latent_dim=D,
        embedding_dim=E,
        feature_hidden=(8, 6),
        label_hidden=(10,),
        decoder_hidden=(12,),
        dropout_rate=0.0,  # dropout compiles slowly on CPU; tests that need it set it
    )
    return models.CGMVAE(**(fields | kwargs))


def features(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(B, F)).astype(np.float32)  # [B, F]


@functools.cache
def _jit_init(model):
    return jax.jit(functools.partial(model.init, train=False))


@functools.cache
def _jit_apply(model, train):
    return jax.jit(functools.partial(model.apply, train=train))


def init(model, x=None, y=LABELS, seed=0):
    """`model.init` under jit.

    The parameters depend only on the sizes and `param_init`, so one float32 mixture model per
    (sizes, param_init) is compiled and shared (the dtype test checks bfloat16 init separately).
    """
    x = features() if x is None else x
    canonical = model.clone(
        dtype=jnp.float32, prior="mixture", dropout_rate=0.0, log_var_limit=30.0
    )
    return _jit_init(canonical)({"params": jax.random.key(seed)}, x, y)


def init_shapes(model):
    """Shapes and dtypes `model.init` would give, without compiling."""
    init_fn = functools.partial(model.init, train=False)
    return jax.eval_shape(init_fn, {"params": jax.random.key(0)}, features(), LABELS)


def train_rngs(seed=1):
    dropout_key, sample_key = jax.random.split(jax.random.key(seed))
    return {"dropout": dropout_key, "sample": sample_key}


def apply(model, variables, x, y, *, train, seed=1):
    """`model.apply` under jit, compiled once per (model configuration, train)."""
    rngs = train_rngs(seed) if train else None
    return _jit_apply(model, train)(variables, x, y, rngs=rngs)


def decoder_reference(params, x, z):
    """The decoder in float64 numpy with the plain concat(x, z) first layer."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h = np.concatenate([x, z], axis=-1) @ p["input_kernel"] + p["input_bias"]
    h = np.maximum(h, 0.0) @ p["layer_1"]["kernel"] + p["layer_1"]["bias"]
    h = np.where(h > 0, h, 0.01 * h)
    return h / np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-12)


class CGMVAETest(parameterized.TestCase):
    @parameterized.named_parameters(("mixture", "mixture"), ("unimodal", "unimodal"))
    def test_output_shapes_dtypes_and_unit_norm(self, prior):
        model = small_model(prior=prior)
        variables = init(model)
        outputs = apply(model, variables, features(), LABELS, train=True)
        label_rows = L if prior == "mixture" else B
        expected = {
            "label_logits": (B, L),
            "feat_logits": (B, L),
            "feat_logits2": (B, L),
            "label_emb": (B, E),
            "feat_emb": (B, E),
            "feat_emb2": (B, E),
            "label_embeddings": (L, E),
            "mean_x": (B, D),
            "log_var_x": (B, D),
            "z_kl": (B, D),
            "label_means": (label_rows, D),
            "label_log_vars": (label_rows, D),
            "label_z": (B, D),
        }
        self.assertEqual({k: v.shape for k, v in outputs.items()}, expected)
        for name, value in outputs.items():
            self.assertEqual(value.dtype, jnp.float32, name)
            self.assertTrue(np.all(np.isfinite(value)), name)  # incl. the row with no label
        for name in ("label_emb", "feat_emb", "feat_emb2"):
            np.testing.assert_allclose(np.linalg.norm(outputs[name], axis=-1), 1.0, atol=1e-5)
        # Logits are emb @ W.T with no bias.
        np.testing.assert_allclose(
            outputs["feat_logits"], outputs["feat_emb"] @ outputs["label_embeddings"].T, atol=1e-5
        )

    def test_three_feature_samples_are_independent_and_reparameterised(self):
        model = small_model()
        variables = init(model)
        out = apply(model, variables, features(), LABELS, train=True)
        eval_out = apply(model, variables, features(), LABELS, train=False)
        np.testing.assert_allclose(out["mean_x"], eval_out["mean_x"], atol=1e-6)
        self.assertFalse(np.allclose(out["feat_emb"], out["feat_emb2"]))
        self.assertFalse(np.allclose(out["z_kl"], out["mean_x"]))
        # z_kl is a third sample: no sample decoded into feat_emb/feat_emb2 reproduces it.
        emb_kl = model.apply(
            variables, features(), out["z_kl"], method=lambda m, x, z: m.decoder(x, z)
        )
        self.assertFalse(np.allclose(emb_kl, out["feat_emb"], atol=1e-4))
        self.assertFalse(np.allclose(emb_kl, out["feat_emb2"], atol=1e-4))

    def test_torch_init_ranges_and_logit_bound(self):
        model = small_model(param_init="torch")
        params = init(model)["params"]
        cases = {
            "W": (params["label_encoder"]["embeddings"], L),
            "b": (params["label_encoder"]["bias"], L),
            "dec_in_W": (params["decoder"]["input_kernel"], F + D),
            "dec_in_b": (params["decoder"]["input_bias"], F + D),
            "dec_out_b": (params["decoder"]["layer_1"]["bias"], 12),
            "enc_0": (params["feature_encoder"]["mlp"]["Dense_0"]["kernel"], F),
            "head": (params["feature_encoder"]["heads"]["mean"]["kernel"], 6),
        }
        for name, (value, fan_in) in cases.items():
            bound = 1.0 / np.sqrt(fan_in)
            self.assertEqual(value.dtype, jnp.float32, name)
            self.assertLessEqual(float(jnp.max(jnp.abs(value))), bound, name)
            # Uniform on the full range, not a narrower one (max |v| close to the bound).
            self.assertGreater(float(jnp.max(jnp.abs(value))), 0.5 * bound, name)
        # Kernel variance of U(-a, a) is a^2 / 3 = 1 / (3 fan_in), on a larger layer.
        big = layers.Dense(400, param_init="torch").init(jax.random.key(3), jnp.ones((1, 300)))
        np.testing.assert_allclose(np.var(big["params"]["kernel"]), 1.0 / 900.0, rtol=0.02)
        np.testing.assert_allclose(np.var(big["params"]["bias"]), 1.0 / 900.0, rtol=0.25)
        # |logit_l| <= ||W_l|| because the embeddings have unit norm.
        out = apply(model, {"params": params}, features(), LABELS, train=True)
        row_norms = np.linalg.norm(out["label_embeddings"], axis=-1)  # [L]
        for name in ("label_logits", "feat_logits", "feat_logits2"):
            self.assertTrue(np.all(np.abs(out[name]) <= row_norms + 1e-5), name)

    def test_flax_init_is_lecun_normal_with_zero_bias(self):
        kernel_init, bias_init = layers.initializers("flax", 300)
        kernel = kernel_init(jax.random.key(0), (300, 400), jnp.float32)
        np.testing.assert_allclose(np.var(kernel), 1.0 / 300.0, rtol=0.05)
        np.testing.assert_array_equal(bias_init(jax.random.key(1), (400,), jnp.float32), 0.0)
        with self.assertRaisesRegex(ValueError, "init"):
            layers.initializers("xavier", 3)

    def test_bad_options_raise(self):
        with self.assertRaisesRegex(ValueError, "prior"):
            init_shapes(small_model(prior="gaussian"))
        with self.assertRaisesRegex(ValueError, "param_init"):
            init_shapes(small_model(param_init="xavier"))

    def test_decoder_shared_projection_equals_concat_form(self):
        model = small_model()
        variables = init(model)
        x = features(1)
        zs = np.random.default_rng(2).normal(size=(3, B, D)).astype(np.float32)  # [3, B, D]
        decode = jax.jit(
            lambda v, x, z: model.apply(v, x, z, method=lambda m, x, z: m.decoder(x, z))
        )
        stacked = decode(variables, x, zs)  # [3, B, E]
        params = variables["params"]["decoder"]
        for s in range(3):
            single = decode(variables, x, zs[s])  # [B, E]
            reference = decoder_reference(params, x.astype(np.float64), zs[s].astype(np.float64))
            np.testing.assert_allclose(stacked[s], reference, atol=1e-5)
            np.testing.assert_allclose(single, reference, atol=1e-5)

    def test_decoder_without_hidden_layers(self):
        decoder = models.Decoder(embedding_dim=E, hidden=())
        x, z = features(), np.ones((2, B, D), np.float32)
        variables = jax.jit(decoder.init)(jax.random.key(0), x, z)
        self.assertEqual(variables["params"]["input_kernel"].shape, (F + D, E))
        emb = jax.jit(decoder.apply)(variables, x, z)  # [2, B, E]
        p = jax.tree.map(np.float64, variables["params"])
        h = np.concatenate([x, z[0]], axis=-1) @ p["input_kernel"] + p["input_bias"]
        h = np.where(h > 0, h, 0.01 * h)
        np.testing.assert_allclose(emb[1], h / np.linalg.norm(h, axis=-1, keepdims=True), atol=1e-5)

    def test_model_decodes_its_latents(self):
        model = small_model()
        variables = init(model)
        x = features()
        out = apply(model, variables, x, LABELS, train=True)
        params = variables["params"]["decoder"]
        reference = decoder_reference(params, x.astype(np.float64), np.float64(out["label_z"]))
        np.testing.assert_allclose(out["label_emb"], reference, atol=1e-5)

    @parameterized.named_parameters(("mixture", "mixture"), ("unimodal", "unimodal"))
    def test_eval_is_deterministic_and_predict_matches(self, prior):
        model = small_model(prior=prior)
        variables = init(model)
        x = features()
        out_a = apply(model, variables, x, LABELS, train=False)
        out_b = apply(model, variables, x, LABELS, train=False)
        for name in out_a:
            np.testing.assert_array_equal(out_a[name], out_b[name], err_msg=name)
        np.testing.assert_array_equal(out_a["z_kl"], out_a["mean_x"])
        np.testing.assert_allclose(out_a["feat_logits"], out_a["feat_logits2"], atol=1e-6)
        logits = jax.jit(lambda v, x: model.apply(v, x, method=models.CGMVAE.predict))(variables, x)
        np.testing.assert_allclose(logits, out_a["feat_logits"], atol=1e-5)
        if prior == "unimodal":
            np.testing.assert_array_equal(out_a["label_z"], out_a["label_means"])

    def test_predict_does_not_use_label_encoder_mlp(self):
        model = small_model()
        variables = init(model)
        logits = model.apply(variables, features(), method=models.CGMVAE.predict)
        params = dict(variables["params"])
        label_encoder = dict(params["label_encoder"])
        for name in ("mlp", "heads", "bias"):
            label_encoder[name] = jax.tree.map(
                lambda a: jnp.full_like(a, jnp.nan), label_encoder[name]
            )
        params["label_encoder"] = label_encoder
        poisoned = model.apply({"params": params}, features(), method=models.CGMVAE.predict)
        np.testing.assert_array_equal(poisoned, logits)

    def test_dropout_is_active_in_training_only(self):
        model = small_model(dropout_rate=0.5)
        variables = init(model)
        x = features()
        a = apply(model, variables, x, LABELS, train=True, seed=1)
        b = apply(model, variables, x, LABELS, train=True, seed=2)
        self.assertFalse(np.allclose(a["mean_x"], b["mean_x"]))
        self.assertFalse(np.allclose(a["label_means"], b["label_means"]))

    def test_mixture_label_latent_is_mean_of_active_means(self):
        model = small_model()
        out = apply(model, init(model), features(), LABELS, train=False)
        mu = np.asarray(out["label_means"])  # [L, D]
        np.testing.assert_allclose(out["label_z"][0], (mu[0] + mu[2]) / 2, atol=1e-6)
        np.testing.assert_array_equal(out["label_z"][1], 0.0)  # no positive label: 0, not NaN
        np.testing.assert_allclose(out["label_z"][2], mu.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(out["label_z"][3], mu[1], atol=1e-6)

    def test_mixture_accepts_bool_and_uint8_labels(self):
        model = small_model()
        variables = init(model)
        ref = apply(model, variables, features(), LABELS, train=False)["label_z"]
        for labels in (LABELS.astype(bool), LABELS.astype(np.uint8)):
            out = apply(model, variables, features(), labels, train=False)["label_z"]
            np.testing.assert_allclose(out, ref, atol=1e-6)

    def test_unimodal_label_branch(self):
        model = small_model(prior="unimodal")
        variables = init(model)
        x = features()
        out = apply(model, variables, x, LABELS, train=True)
        # Training: a sample of N(label_means, exp(label_log_vars)), not the mean.
        self.assertFalse(np.allclose(out["label_z"], out["label_means"]))
        # Each example's Gaussian depends only on its own label vector.
        swapped = apply(model, variables, x, LABELS[::-1], train=False)
        ordered = apply(model, variables, x, LABELS, train=False)
        np.testing.assert_allclose(swapped["label_means"], ordered["label_means"][::-1], atol=1e-6)
        # Rows 0 and 3 have different label sets, so different Gaussians.
        self.assertFalse(np.allclose(ordered["label_means"][0], ordered["label_means"][3]))

    def test_log_var_soft_clamp(self):
        np.testing.assert_allclose(layers.soft_clamp(jnp.array([1e6, -1e6]), 30.0), [30, -30])
        np.testing.assert_allclose(layers.soft_clamp(jnp.array([0.1]), 30.0), [0.1], rtol=1e-5)
        np.testing.assert_array_equal(layers.soft_clamp(jnp.array([1e6]), 0.0), [1e6])
        model = small_model(log_var_limit=2.0)
        variables = init(model)
        scaled = jax.tree.map(lambda a: a * 1e3, variables)  # huge pre-clamp log-variances
        out = apply(model, scaled, features(), LABELS, train=True)
        for name in ("log_var_x", "label_log_vars"):
            self.assertLessEqual(float(jnp.max(jnp.abs(out[name]))), 2.0)
        self.assertTrue(np.all(np.isfinite(out["z_kl"])))

    def test_l2_normalize_zero_vector_has_finite_gradient(self):
        grad = jax.grad(lambda v: jnp.sum(cpu_rewrites.l2_normalize(v)))(jnp.zeros((2, 4)))
        self.assertTrue(np.all(np.isfinite(grad)))
        np.testing.assert_allclose(
            cpu_rewrites.l2_normalize(jnp.array([[3.0, 4.0]])), [[0.6, 0.8]], atol=1e-7
        )

    @parameterized.named_parameters(("mixture", "mixture"), ("unimodal", "unimodal"))
    def test_bfloat16_compute_is_float32_and_close(self, prior):
        model32 = small_model(prior=prior)
        model16 = small_model(prior=prior, dtype=jnp.bfloat16)
        variables = init(model32)
        x = features()
        out32 = apply(model32, variables, x, LABELS, train=True)
        out16 = apply(model16, variables, x, LABELS, train=True)
        for leaf in jax.tree.leaves(init_shapes(model16)):
            self.assertEqual(leaf.dtype, jnp.float32)
        for name in out32:
            self.assertEqual(out16[name].dtype, jnp.float32, name)
            self.assertTrue(np.all(np.isfinite(out16[name])), name)
            np.testing.assert_allclose(out16[name], out32[name], atol=0.1, err_msg=name)
        np.testing.assert_allclose(np.linalg.norm(out16["feat_emb"], axis=-1), 1.0, atol=1e-5)

    def test_gradients_are_finite_with_empty_label_row(self):
        model = small_model()
        variables = init(model)

        @jax.jit
        def grad_fn(params):
            def total(params):
                out = model.apply(
                    {"params": params}, features(), LABELS, train=True, rngs=train_rngs()
                )
                return sum(jnp.sum(v) for v in out.values())

            return jax.grad(total)(params)

        grads = grad_fn(variables["params"])
        for leaf in jax.tree.leaves(grads):
            self.assertTrue(np.all(np.isfinite(leaf)))
        # Every parameter takes part in the training forward pass.
        self.assertTrue(all(np.any(leaf != 0) for leaf in jax.tree.leaves(grads)))


class MakeModelTest(parameterized.TestCase):
    def config(self, **overrides) -> ml_collections.ConfigDict:
        config = config_lib.base_config()
        config.update(
            dict(
                latent_dim=D,
                embedding_dim=E,
                feature_hidden=(8, 6),
                label_hidden=(10,),
                decoder_hidden=(12,),
            )
            | overrides
        )
        return config

    def test_builds_cgmvae_from_config(self):
        config = self.config(prior="unimodal", init="flax", dtype="bfloat16", log_var_limit=5.0)
        model = models.make_model(config, num_features=F, num_labels=L)
        expected = small_model(
            prior="unimodal",
            param_init="flax",
            dtype=jnp.bfloat16,
            log_var_limit=5.0,
            dropout_rate=config.dropout_rate,
        )
        self.assertEqual(model, expected)  # dataclass equality: every field

    def test_default_config_builds_official_sizes(self):
        model = models.make_model(config_lib.base_config(), num_features=F, num_labels=L)
        self.assertEqual(
            (model.feature_hidden, model.label_hidden, model.decoder_hidden),
            ((256, 512, 256), (512, 256), (512,)),
        )
        self.assertEqual(
            (model.param_init, model.prior, model.dtype), ("torch", "mixture", jnp.float32)
        )

    def test_mlp_model_and_bad_values_raise(self):
        self.assertIsInstance(
            models.make_model(self.config(model="mlp"), F, L), baselines.MLPClassifier
        )
        with self.assertRaisesRegex(ValueError, "model"):
            models.make_model(self.config(model="transformer"), F, L)
        with self.assertRaisesRegex(ValueError, "dtype"):
            models.make_model(self.config(dtype="float16"), F, L)


if __name__ == "__main__":
    absltest.main()
