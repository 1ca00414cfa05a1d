"""The step's speed rewrites equal the straightforward forms, and large label sets fit.

Each rewrite made for speed is compared with the plain computation it replaces (values and
gradients, float tolerance):

* `cpu_rewrites.l2_normalize`: hand-written gradient vs the automatic gradient of
  `v / sqrt(max(||v||^2, 1e-24))`;
* `cpu_rewrites.repeat_leading`: summed-slices gradient vs the gradient of `jnp.broadcast_to`;
* `cpu_rewrites.matmul`: the weight gradient from a materialised transpose vs the automatic
  gradient of `jnp.matmul` (kernel [K, M] and transposed [M, K], leading sample axes);
* `models.Decoder`: the x-projection computed once for all samples vs `concat(x, z) @ W + b`
  per sample;
* the mixture KL over the active (row, label) pairs (O(B L) memory) vs the [B, L, d] broadcast;
* the single-seed step without vmap vs the vmapped step over a seed axis of 1.

Scale: one training step with L = 10,000 labels, B = 256, d = 64 is finite, and neither its
program (jaxpr) nor XLA's compiled temporaries hold anything of size B * L * d.
"""

import functools
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import test_util as jtu

from cgmvae_jax import cpu_rewrites, losses, models, objective, train
from cgmvae_jax import trainer as trainer_lib
from tests import helpers

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name="smoke", **overrides):
    return helpers.load_config(name, **overrides)


def _plain_l2_normalize(values):
    squared_norm = jnp.sum(jnp.square(values), axis=-1, keepdims=True)
    return values / jnp.sqrt(jnp.maximum(squared_norm, 1e-24))


def _max_intermediate_size(jaxpr) -> int:
    """Largest number of elements of any value produced in a (closed) jaxpr, sub-jaxprs included."""
    biggest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            shape = getattr(var.aval, "shape", ())
            biggest = max(biggest, math.prod(shape))
        for param in eqn.params.values():
            subs = param if isinstance(param, (list, tuple)) else [param]
            for sub in subs:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    biggest = max(biggest, _max_intermediate_size(sub.jaxpr))
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    biggest = max(biggest, _max_intermediate_size(sub))
    return biggest


class BackendChoiceTest(parameterized.TestCase):
    """The hand-written gradients are used on the CPU backend only."""

    @parameterized.parameters(("cpu", True), ("gpu", False), ("tpu", False))
    def test_rewrites_follow_the_backend(self, backend, rewritten):
        from unittest import mock

        x = jnp.ones((3, 4))
        with mock.patch.object(jax, "default_backend", return_value=backend):
            self.assertEqual(cpu_rewrites.use_cpu_rewrites(), rewritten)
            # Fresh lambdas: a traced function's jaxpr is cached across backends.
            norm = str(jax.make_jaxpr(lambda a: cpu_rewrites.l2_normalize(a))(x))
            repeat = str(jax.make_jaxpr(lambda a: cpu_rewrites.repeat_leading(a, 3))(x))
        self.assertEqual("custom_vjp" in norm, rewritten)
        self.assertEqual("custom_vjp" in repeat, rewritten)

    def test_both_forms_give_the_same_values_and_gradients(self):
        from unittest import mock

        x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 5)), jnp.float32)

        def loss(a):
            return jnp.sum(jnp.sin(cpu_rewrites.repeat_leading(cpu_rewrites.l2_normalize(a), 3)))

        rewritten = jax.value_and_grad(lambda a: loss(a))(x)
        with mock.patch.object(jax, "default_backend", return_value="gpu"):
            plain = jax.value_and_grad(lambda a: loss(a))(x)
        chex.assert_trees_all_close(rewritten, plain, rtol=1e-6, atol=1e-6)


class L2NormalizeTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("random", 1.0, False),
        ("large", 1e6, False),
        ("with_zero_rows", 1.0, True),
    )
    def test_value_and_gradient_equal_the_plain_form(self, scale, zero_rows):
        rng = np.random.default_rng(0)
        v = (scale * rng.normal(size=(2, 5, 7))).astype(np.float32)
        if zero_rows:
            v[0, 1] = 0.0
            v[1, 3] = 1e-14  # below the 1e-12 floor of the norm
        g = rng.normal(size=v.shape).astype(np.float32)
        got = jax.jit(cpu_rewrites.l2_normalize)(v)
        want = _plain_l2_normalize(jnp.asarray(v))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        grad = jax.jit(jax.grad(lambda a: jnp.sum(g * cpu_rewrites.l2_normalize(a))))(v)
        grad_want = jax.grad(lambda a: jnp.sum(g * _plain_l2_normalize(a)))(jnp.asarray(v))
        self.assertTrue(np.isfinite(grad).all())
        np.testing.assert_allclose(grad, grad_want, rtol=1e-5, atol=1e-5 / scale)

    def test_numerical_gradient(self):
        v = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)), jnp.float32)
        jtu.check_grads(
            cpu_rewrites.l2_normalize, (v,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2
        )

    def test_under_vmap(self):
        rng = np.random.default_rng(2)
        v = rng.normal(size=(3, 4, 6)).astype(np.float32)
        g = rng.normal(size=v.shape).astype(np.float32)

        def loss(fn, a):
            return jnp.sum(g * jax.vmap(fn)(a))

        np.testing.assert_allclose(
            jax.grad(functools.partial(loss, cpu_rewrites.l2_normalize))(v),
            jax.grad(functools.partial(loss, _plain_l2_normalize))(v),
            rtol=1e-5,
            atol=1e-6,
        )


class RepeatLeadingTest(parameterized.TestCase):
    @parameterized.named_parameters(("one", 1), ("three", 3))
    def test_value_and_gradient_equal_broadcast(self, count):
        rng = np.random.default_rng(count)
        x = rng.normal(size=(4, 5)).astype(np.float32)
        g = rng.normal(size=(count, 4, 5)).astype(np.float32)
        got = jax.jit(cpu_rewrites.repeat_leading, static_argnums=1)(x, count)
        np.testing.assert_array_equal(got, np.broadcast_to(x, (count, 4, 5)))
        grad = jax.grad(lambda a: jnp.sum(g * jnp.sin(cpu_rewrites.repeat_leading(a, count))))(x)
        want = jax.grad(lambda a: jnp.sum(g * jnp.sin(jnp.broadcast_to(a, (count, 4, 5)))))(x)
        np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-6)

    def test_under_vmap(self):
        rng = np.random.default_rng(5)
        x = rng.normal(size=(2, 4, 5)).astype(np.float32)
        g = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
        grad = jax.grad(
            lambda a: jnp.sum(g * jax.vmap(lambda b: cpu_rewrites.repeat_leading(b, 3))(a))
        )
        np.testing.assert_allclose(grad(x), g.sum(axis=1), rtol=1e-6, atol=1e-6)


class MatmulTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("rows", (7,), False),
        ("samples_rows", (3, 7), False),
        ("transposed_kernel", (7,), True),
        ("samples_transposed_kernel", (3, 7), True),
    )
    def test_value_and_gradients_equal_jnp_matmul(self, lead, transpose_kernel):
        rng = np.random.default_rng(len(lead) + 2 * transpose_kernel)
        k, m = 5, 6
        x = rng.normal(size=(*lead, k)).astype(np.float32)
        kernel = rng.normal(size=(m, k) if transpose_kernel else (k, m)).astype(np.float32)
        g = rng.normal(size=(*lead, m)).astype(np.float32)

        def plain(a, w):
            return jnp.matmul(a, w.T if transpose_kernel else w)

        def fast(a, w):
            return cpu_rewrites.matmul(a, w, transpose_kernel=transpose_kernel)

        np.testing.assert_allclose(jax.jit(fast)(x, kernel), plain(x, kernel), rtol=1e-5, atol=1e-6)
        grads = jax.jit(jax.grad(lambda a, w: jnp.sum(g * jnp.tanh(fast(a, w))), (0, 1)))
        want = jax.grad(lambda a, w: jnp.sum(g * jnp.tanh(plain(a, w))), (0, 1))(x, kernel)
        for got_i, want_i in zip(grads(x, kernel), want, strict=True):
            self.assertEqual(got_i.shape, want_i.shape)
            np.testing.assert_allclose(got_i, want_i, rtol=1e-5, atol=1e-6)

    def test_numerical_gradient(self):
        rng = np.random.default_rng(7)
        x = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
        kernel = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
        jtu.check_grads(
            cpu_rewrites.matmul, (x, kernel), order=1, modes=["rev"], atol=1e-2, rtol=1e-2
        )

    def test_under_vmap(self):
        rng = np.random.default_rng(8)
        x = rng.normal(size=(2, 4, 3)).astype(np.float32)
        kernel = rng.normal(size=(2, 3, 5)).astype(np.float32)

        def loss(fn):
            return lambda a, w: jnp.sum(jnp.sin(jax.vmap(fn)(a, w)))

        got = jax.grad(loss(cpu_rewrites.matmul), (0, 1))(x, kernel)
        want = jax.grad(loss(jnp.matmul), (0, 1))(x, kernel)
        for got_i, want_i in zip(got, want, strict=True):
            np.testing.assert_allclose(got_i, want_i, rtol=1e-5, atol=1e-6)

    def test_bfloat16_keeps_the_plain_form(self):
        x = jnp.ones((4, 3), jnp.bfloat16)
        kernel = jnp.ones((5, 3), jnp.bfloat16)
        out = cpu_rewrites.matmul(
            x, kernel, transpose_kernel=True, preferred_element_type=jnp.float32
        )
        self.assertEqual(out.dtype, jnp.float32)
        np.testing.assert_array_equal(out, np.full((4, 5), 3.0))


def _plain_decode(params, x, z):
    """The decoder as written in the paper: concat(x, z) -> layers -> leaky_relu -> unit rows."""
    h = jnp.concatenate([x, z], axis=-1) @ params["input_kernel"] + params["input_bias"]
    i = 1
    while f"layer_{i}" in params:
        layer = params[f"layer_{i}"]
        h = jax.nn.relu(h) @ layer["kernel"] + layer["bias"]
        i += 1
    return _plain_l2_normalize(jax.nn.leaky_relu(h, negative_slope=0.01))


class DecoderTest(parameterized.TestCase):
    @parameterized.named_parameters(("no_hidden", ()), ("one_hidden", (16,)), ("two", (16, 8)))
    def test_shared_projection_equals_concatenated_input(self, hidden):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(6, 5)).astype(np.float32)
        z = rng.normal(size=(3, 6, 4)).astype(np.float32)
        g = rng.normal(size=(3, 6, 12)).astype(np.float32)
        decoder = models.Decoder(embedding_dim=12, hidden=hidden)
        params = decoder.init(jax.random.key(0), x, z)["params"]

        def fast(p):
            return jnp.sum(g * decoder.apply({"params": p}, x, z))

        def plain(p):
            out = jnp.stack([_plain_decode(p, x, z[s]) for s in range(3)])
            return jnp.sum(g * out)

        np.testing.assert_allclose(
            decoder.apply({"params": params}, x, z),
            jnp.stack([_plain_decode(params, x, z[s]) for s in range(3)]),
            rtol=1e-5,
            atol=1e-6,
        )
        got, want = jax.jit(jax.grad(fast))(params), jax.grad(plain)(params)
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
        ):
            np.testing.assert_allclose(
                a, b, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path)
            )

    def test_single_latent(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(4, 5)).astype(np.float32)
        z = rng.normal(size=(4, 3)).astype(np.float32)
        decoder = models.Decoder(embedding_dim=7, hidden=(8,))
        params = decoder.init(jax.random.key(1), x, z)["params"]
        np.testing.assert_allclose(
            decoder.apply({"params": params}, x, z),
            _plain_decode(params, x, z),
            rtol=1e-5,
            atol=1e-6,
        )


class MixtureKLTest(parameterized.TestCase):
    def test_active_pair_form_gradient_equals_broadcast_form(self):
        rng = np.random.default_rng(3)
        b, k, d = 5, 9, 4
        z, mean, log_var = (rng.normal(size=(b, d)).astype(np.float32) for _ in range(3))
        means = rng.normal(size=(k, d)).astype(np.float32)
        log_vars = (0.5 * rng.normal(size=(k, d))).astype(np.float32)
        mask = rng.random((b, k)) < 0.4
        mask[:, 0] = True
        mask[2] = False  # a row without labels

        def broadcast_kl(z, mean, log_var, means, log_vars):
            log_q = losses.log_normal_diag(z, mean, log_var)  # [B]
            comp = losses.log_normal_diag(z[:, None, :], means, log_vars)  # [B, L] via [B, L, d]
            safe = mask | ~mask.any(-1, keepdims=True)
            log_p = jax.nn.logsumexp(jnp.where(safe, comp, 0.0), axis=-1, where=safe)
            log_p = log_p - jnp.log(jnp.maximum(mask.sum(-1), 1))
            return jnp.sum(jnp.where(mask.any(-1), log_q - log_p, 0.0))

        def active_pair_kl(z, mean, log_var, means, log_vars):
            return jnp.sum(losses.mixture_kl_single_sample(z, mean, log_var, means, log_vars, mask))

        args = (z, mean, log_var, means, log_vars)
        np.testing.assert_allclose(
            jax.jit(active_pair_kl)(*args), broadcast_kl(*args), rtol=1e-5, atol=1e-4
        )
        got = jax.jit(jax.grad(active_pair_kl, argnums=range(5)))(*args)
        want = jax.grad(broadcast_kl, argnums=range(5))(*args)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


class OneSeedProgramTest(parameterized.TestCase):
    def test_unbatched_program_equals_vmapped_program(self):
        config = _config()
        trainer = train.Trainer(config, 16, 6, 96)
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(96, 16)).astype(np.float32))
        y = jnp.asarray((rng.random((96, 6)) < 0.4).astype(np.uint8))
        idx, w = trainer.epoch_batches(0)
        vmapped = jax.jit(
            jax.vmap(
                functools.partial(
                    trainer_lib.train_steps,
                    loss_fn=trainer.loss_fn,
                    steps_per_epoch=trainer.steps_per_epoch,
                ),
                in_axes=(0, 0, None, None, 0, 0),
            )
        )
        want_state, want_metrics = vmapped(trainer.init_state(), trainer.keys["step"], x, y, idx, w)
        state, metrics = trainer.run_steps(trainer.init_state(), x, y, idx, w)
        self.assertEqual(metrics["loss"].shape, want_metrics["loss"].shape)
        np.testing.assert_allclose(metrics["loss"], want_metrics["loss"], rtol=1e-5)
        for a, b in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(want_state.params), strict=True
        ):
            self.assertEqual(a.shape, b.shape)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


class LargeLabelSetTest(parameterized.TestCase):
    """L = 10,000 labels, B = 256, d = 64 (small E and hidden sizes keep the test fast)."""

    B, L, D, F = 256, 10_000, 64, 16

    def _trainer(self):
        config = _config(
            latent_dim=self.D,
            embedding_dim=16,
            feature_hidden=(16,),
            label_hidden=(16,),
            decoder_hidden=(16,),
            batch_size=self.B,
        )
        return train.Trainer(config, self.F, self.L, self.B)

    def _data(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(self.B, self.F)).astype(np.float32)
        y = np.zeros((self.B, self.L), np.uint8)
        y[np.arange(self.B)[:, None], rng.integers(0, self.L, size=(self.B, 5))] = 1
        y[:3] = 0  # rows without labels
        return jnp.asarray(x), jnp.asarray(y)

    def test_one_step_is_finite_and_kl_memory_is_order_b_l(self):
        trainer = self._trainer()
        state = trainer.init_state()
        x, y = self._data()
        idx = jnp.arange(self.B, dtype=jnp.int32)[None, None]  # [S=1, steps=1, B]
        w = jnp.ones((1, 1, self.B), jnp.float32)
        compiled = trainer.lower_steps(state, x, y, idx, w).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes
        b_l_d = self.B * self.L * self.D * 4  # bytes of one float32 [B, L, d] array
        b_l = self.B * self.L * 4
        # XLA's temporaries of the whole step (forward, backward, update): a few dozen [B, L]
        # arrays (logits, BCE, contrastive and KL terms and their gradients; 28 with jaxlib
        # 0.10), less than one [B, L, d] array.
        self.assertLess(temp, b_l_d)
        self.assertLess(temp, 40 * b_l)
        new_state, metrics = compiled(state, trainer.keys["step"], x, y, idx, w)
        self.assertTrue(bool(np.asarray(metrics["finite"]).all()))
        for name in ("loss", "kl", "contrastive", "bce_feat"):
            self.assertTrue(np.isfinite(np.asarray(metrics[name])).all(), name)
        self.assertEqual(int(np.asarray(new_state.step)[0]), 1)

    def test_step_program_holds_nothing_of_size_b_l_d(self):
        trainer = self._trainer()
        state = jax.tree.map(lambda a: a[0], trainer.init_state())
        x, y = self._data()
        step = functools.partial(trainer_lib.train_step, loss_fn=trainer.loss_fn)
        jaxpr = jax.make_jaxpr(step)(state, x, y, jnp.ones((self.B,)), jax.random.key(0))
        self.assertLess(_max_intermediate_size(jaxpr.jaxpr), self.B * self.L * self.D)
        self.assertGreaterEqual(_max_intermediate_size(jaxpr.jaxpr), 3 * self.B * self.L)

        # The same check catches the broadcast form of the KL.
        def broadcast_kl(outputs, labels, weights, epoch=None):
            z = outputs["z_kl"]
            comp = losses.log_normal_diag(
                z[:, None, :], outputs["label_means"], outputs["label_log_vars"]
            )
            return jnp.mean(comp * labels), {}

        slow = functools.partial(trainer_lib.train_step, loss_fn=broadcast_kl)
        slow_jaxpr = jax.make_jaxpr(slow)(state, x, y, jnp.ones((self.B,)), jax.random.key(0))
        self.assertGreaterEqual(_max_intermediate_size(slow_jaxpr.jaxpr), self.B * self.L * self.D)


class BFloat16Test(parameterized.TestCase):
    def test_smoke_config_trains_in_bfloat16(self):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(96, 16)).astype(np.float32))
        y = jnp.asarray((rng.random((96, 6)) < 0.4).astype(np.uint8))
        results = {}
        for dtype in ("float32", "bfloat16"):
            trainer = train.Trainer(_config(dtype=dtype), 16, 6, 96)
            state = trainer.init_state()
            idx, w = trainer.epoch_batches(0)
            state, metrics = trainer.run_steps(state, x, y, idx, w)
            results[dtype] = np.asarray(metrics["loss"])
            for leaf in jax.tree.leaves(state.params):
                self.assertEqual(leaf.dtype, jnp.float32)  # parameters stay float32
            self.assertTrue(np.isfinite(results[dtype]).all(), dtype)
            self.assertTrue(bool(np.asarray(metrics["finite"]).all()), dtype)
        # Same model and data: the bf16 losses follow the float32 ones closely.
        np.testing.assert_allclose(results["bfloat16"], results["float32"], rtol=0.05)

    def test_bfloat16_outputs_are_float32(self):
        model = models.make_model(_config(dtype="bfloat16"), 16, 6)
        x = jnp.ones((4, 16))
        y = jnp.ones((4, 6))
        variables = model.init(jax.random.key(0), x, y, train=False)
        outputs = model.apply(variables, x, y, train=False)
        for name, value in outputs.items():
            self.assertEqual(value.dtype, jnp.float32, name)
        loss, _ = objective.make_loss_fn(_config())(outputs, y, jnp.ones((4,)))
        self.assertTrue(np.isfinite(float(loss)))


if __name__ == "__main__":
    absltest.main()
