"""Tests for asymmetric_loss: spec oracles, a float64 NumPy loop, gradients, extremes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import test_util as jtu

from cgmvae_jax import losses

_ATOL = 1e-5


def _to64(*arrays):
    return tuple(np.asarray(a, np.float64) for a in arrays)


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _np_asl(logits, labels, gamma_pos, gamma_neg, clip, eps):
    out = []
    for x_row, y_row in zip(np.asarray(logits, np.float64), labels, strict=True):
        total = 0.0
        for x, y in zip(x_row, y_row, strict=True):
            p = _np_sigmoid(x)
            if y:
                total += (1 - p) ** gamma_pos * np.log(max(p, eps))
            else:
                p_m = max(p - clip, 0.0) if clip else p
                total += p_m**gamma_neg * np.log(max(1 - p_m, eps))
        out.append(-total)
    return np.array(out)


def _np_asl_stop_grad_gradient(logits, labels, gamma_pos, gamma_neg, clip, eps):
    """d loss / d logits with the focusing weights held constant."""
    p = _np_sigmoid(logits)
    p_m = np.maximum(p - clip, 0.0)
    grad_pos = np.where(p > eps, -((1 - p) ** gamma_pos) * (1 - p), 0.0)
    grad_neg = np.where((p > clip) & (1 - p_m > eps), p_m**gamma_neg * p * (1 - p) / (1 - p_m), 0.0)
    return np.where(labels, grad_pos, grad_neg)


class AsymmetricLossTest(chex.TestCase):
    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy_and_is_linear
    @parameterized.named_parameters(
        ("bce", [2.0, -1.0, 0.0], [1, 0, 0], dict(gamma_neg=0.0, clip=0.0), 1.1333369),
        ("bce_clip_none", [2.0, -1.0, 0.0], [1, 0, 0], dict(gamma_neg=0.0, clip=None), 1.1333369),
        ("defaults", [2.0, -1.0, 0.0], [1, 0, 0], {}, 0.1520109),
        ("negative_at_zero", [0.0], [0], {}, 0.0245151),
        ("negative_below_clip", [-4.0], [0], {}, 0.0),
        ("positive_gamma_one", [0.0], [1], dict(gamma_pos=1.0), 0.3465736),
    )
    def test_oracles(self, logits, labels, kwargs, want):
        fn = self.variant(functools.partial(losses.asymmetric_loss, **kwargs))
        got = fn(jnp.array([logits]), jnp.array([labels]))
        chex.assert_shape(got, (1,))
        chex.assert_trees_all_close(got, jnp.array([want], jnp.float32), atol=1e-6)
        if want == 0.0:
            self.assertEqual(float(got[0]), 0.0)
            grad = jax.grad(lambda x: jnp.sum(fn(x, jnp.array([labels]))))(jnp.array([logits]))
            np.testing.assert_array_equal(grad, 0.0)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("defaults", 0.0, 4.0, 0.05, 1e-8),
        ("focal_both", 1.0, 2.0, 0.1, 1e-8),
        ("no_clip", 0.0, 4.0, None, 1e-7),
    )
    def test_matches_numpy_and_is_linear(self, gamma_pos, gamma_neg, clip, eps):
        rng = np.random.default_rng(40)
        logits = (3 * rng.normal(size=(5, 6))).astype(np.float32)
        labels = rng.random((5, 6)) < 0.4
        fn = self.variant(
            functools.partial(
                losses.asymmetric_loss, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, eps=eps
            )
        )
        got = fn(logits, labels)
        chex.assert_shape(got, (5,))
        want = _np_asl(logits, labels, gamma_pos, gamma_neg, clip, eps)
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-5)
        # No normalisation: the per-example value is the sum of one-label losses.
        singles = fn(logits.reshape(-1, 1), labels.reshape(-1, 1)).reshape(5, 6)
        np.testing.assert_allclose(got, singles.sum(-1), atol=_ATOL, rtol=1e-6)

    def test_stop_grad_focusing_gradient(self):
        rng = np.random.default_rng(41)
        logits = (3 * rng.normal(size=(4, 5))).astype(np.float32)
        labels = rng.random((4, 5)) < 0.5
        loss = lambda x: jnp.sum(losses.asymmetric_loss(x, labels, gamma_pos=1.0))
        grad = jax.jit(jax.grad(loss))(logits)
        want = _np_asl_stop_grad_gradient(logits, labels, 1.0, 4.0, 0.05, 1e-8)
        np.testing.assert_allclose(grad, want, atol=1e-6, rtol=1e-5)

    def test_full_gradient_matches_finite_differences(self):
        rng = np.random.default_rng(42)
        logits = 2 * rng.normal(size=(3, 4))
        labels = np.array([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
        fn = lambda x: losses.asymmetric_loss(x, labels, gamma_pos=1.0, stop_grad_focusing=False)
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(fn), _to64(logits), order=1, modes=["rev"])

    @parameterized.named_parameters(("stop_grad", True), ("full_grad", False))
    def test_extreme_logits_are_finite(self, stop_grad_focusing):
        logits = jnp.array([[1e4, -1e4, 1e4, -1e4, 0.0]])
        labels = jnp.array([[1, 1, 0, 0, 0]])

        @jax.jit
        def value_and_grad(gamma_pos, gamma_neg):  # traced gammas: one compilation
            fn = lambda x: jnp.sum(
                losses.asymmetric_loss(
                    x,
                    labels,
                    gamma_pos=gamma_pos,
                    gamma_neg=gamma_neg,
                    stop_grad_focusing=stop_grad_focusing,
                )
            )
            return jax.value_and_grad(fn)(logits)

        for gamma_pos in (0.0, 1.0):
            for gamma_neg in (0.0, 0.5, 4.0):
                value, grad = value_and_grad(gamma_pos, gamma_neg)
                self.assertTrue(np.isfinite(value), (gamma_pos, gamma_neg))
                self.assertTrue(np.all(np.isfinite(grad)), (gamma_pos, gamma_neg))

    def test_vmap_equals_batched_call(self):
        rng = np.random.default_rng(43)
        logits = rng.normal(size=(4, 5)).astype(np.float32)
        labels = rng.random((4, 5)) < 0.5
        mapped = jax.jit(jax.vmap(losses.asymmetric_loss))(logits, labels)
        want = jax.jit(losses.asymmetric_loss)(logits, labels)
        chex.assert_trees_all_close(mapped, want, rtol=1e-6)

    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy_and_is_linear
    def test_bfloat16_logits_give_float32(self):
        rng = np.random.default_rng(44)
        logits = jnp.asarray(rng.normal(size=(4, 5)), jnp.bfloat16)
        labels = rng.random((4, 5)) < 0.5
        got = self.variant(losses.asymmetric_loss)(logits, labels)
        chex.assert_type(got, jnp.float32)
        want = _np_asl(np.asarray(logits, np.float64), labels, 0.0, 4.0, 0.05, 1e-8)
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-5)


if __name__ == "__main__":
    absltest.main()
