"""Tests for label_contrastive_loss: oracles, a float64 NumPy loop, invariances, gradients."""

import functools
import math

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


def _np_log_mean_exp(values):
    values = np.asarray(values, np.float64)
    top = values.max()
    return top + np.log(np.mean(np.exp(values - top)))


def _np_contrastive(anchors, label_embeddings, labels, temperature):
    anchors = np.asarray(anchors, np.float64)
    label_embeddings = np.asarray(label_embeddings, np.float64)
    out = []
    for a, y in zip(anchors, labels, strict=True):
        scores = label_embeddings @ a / temperature
        log_z = _np_log_mean_exp(scores) + np.log(len(scores))
        pos = [scores[k] - log_z for k in range(len(y)) if y[k]]
        out.append(-np.mean(pos) if pos else 0.0)
    return np.array(out)


class LabelContrastiveLossTest(chex.TestCase):
    def _fn(self, temperature=1.0):
        return jax.jit(functools.partial(losses.label_contrastive_loss, temperature=temperature))

    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy
    @parameterized.named_parameters(
        # Scores s_p = 0.3, s_n = -0.2, tau = 1/2: softplus((s_n - s_p) / tau) = log(1 + e^-1).
        ("one_positive_one_negative", [[0.3, 5.0], [-0.2, -1.0]], [1, 0], 0.5, 0.3132617),
        # All labels positive with equal scores: log L per anchor.
        ("two_equal_positives", [[0.7, 0.7]] * 2, [1, 1], 1.0, math.log(2)),
        ("five_equal_positives", [[0.7, 0.7]] * 5, [1] * 5, 1.0, math.log(5)),
        ("no_positive", [[0.3, 0.0], [-0.2, 0.0]], [0, 0], 1.0, 0.0),
    )
    def test_oracles(self, label_embeddings, labels, temperature, want):
        fn = self.variant(functools.partial(losses.label_contrastive_loss, temperature=temperature))
        got = fn(jnp.array([[1.0, 0.0]]), jnp.array(label_embeddings), jnp.array([labels]))
        chex.assert_shape(got, (1,))
        chex.assert_trees_all_close(got, jnp.array([want], jnp.float32), atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("float32", jnp.float32), ("bfloat16", jnp.bfloat16))
    def test_matches_numpy(self, dtype):
        rng = np.random.default_rng(30)
        anchors = jnp.asarray(rng.normal(size=(6, 5)), dtype)
        label_embeddings = jnp.asarray(rng.normal(size=(7, 5)), dtype)
        labels = rng.random((6, 7)) < 0.4
        labels[0] = False
        labels[1] = True
        fn = functools.partial(losses.label_contrastive_loss, temperature=0.7)
        got = self.variant(fn)(anchors, label_embeddings, labels)
        chex.assert_shape(got, (6,))
        chex.assert_type(got, jnp.float32)
        want = _np_contrastive(*_to64(anchors, label_embeddings), labels, 0.7)
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-5)

    def test_constant_shift_of_a_row_changes_nothing(self):
        rng = np.random.default_rng(31)
        anchors = rng.normal(size=(4, 5)).astype(np.float32)
        label_embeddings = rng.normal(size=(6, 5)).astype(np.float32)
        labels = (rng.random((4, 6)) < 0.5).astype(np.float32)
        labels[:, 0] = 1
        # Adding v to every label embedding adds anchors @ v (one constant per row) to the scores.
        shift = rng.normal(size=(5,)).astype(np.float32)
        fn = losses.label_contrastive_loss
        loss = lambda a, w: jnp.sum(fn(a, w, labels))
        value, grad = jax.jit(jax.value_and_grad(loss))(anchors, label_embeddings)
        value2, grad2 = jax.jit(jax.value_and_grad(loss))(anchors, label_embeddings + shift)
        np.testing.assert_allclose(value2, value, rtol=1e-5)
        np.testing.assert_allclose(grad2, grad, atol=_ATOL)
        self.assertGreater(np.abs(grad).sum(), 0.0)

    def test_no_positive_gives_zero_with_zero_gradients(self):
        rng = np.random.default_rng(32)
        anchors = rng.normal(size=(3, 4)).astype(np.float32)
        label_embeddings = rng.normal(size=(5, 4)).astype(np.float32)
        labels = np.zeros((3, 5))
        labels[0, 1] = 1
        fn = losses.label_contrastive_loss
        got = jax.jit(fn)(anchors, label_embeddings, labels)
        np.testing.assert_array_equal(got[1:], 0.0)
        grads = jax.jit(jax.grad(lambda a, w: jnp.sum(fn(a, w, labels)), argnums=(0, 1)))(
            anchors, label_embeddings
        )
        np.testing.assert_array_equal(grads[0][1:], 0.0)
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g)))

    def test_extreme_scores_are_finite(self):
        anchors = jnp.array([[1e4, 0.0], [-1e4, 0.0]])
        label_embeddings = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
        labels = jnp.array([[1, 0, 1], [1, 0, 0]])
        fn = losses.label_contrastive_loss
        value = jax.jit(fn)(anchors, label_embeddings, labels)
        grads = jax.jit(jax.grad(lambda a, w: jnp.sum(fn(a, w, labels)), argnums=(0, 1)))(
            anchors, label_embeddings
        )
        self.assertTrue(np.all(np.isfinite(value)))
        np.testing.assert_allclose(value[1], 2e4, rtol=1e-6)
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g)))

    def test_gradients(self):
        rng = np.random.default_rng(33)
        anchors, label_embeddings = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
        labels = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
        fn = lambda a, w: losses.label_contrastive_loss(a, w, labels, temperature=0.5)
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(fn), _to64(anchors, label_embeddings), order=1, modes=["rev"])

    def test_jit_and_vmap_equal_plain_call(self):
        fn = losses.label_contrastive_loss
        rng = np.random.default_rng(34)
        # The un-jitted call uses the docstring example's shapes and dtypes (shared eager cache).
        anchors = rng.normal(size=(1, 2)).astype(np.float32)
        label_embeddings = rng.normal(size=(2, 2)).astype(np.float32)
        labels = jnp.array([[1, 1]])
        plain = fn(anchors, label_embeddings, labels, temperature=0.5)
        np.testing.assert_allclose(
            self._fn(0.5)(anchors, label_embeddings, labels), plain, rtol=1e-6
        )
        anchors = rng.normal(size=(4, 3)).astype(np.float32)
        label_embeddings = rng.normal(size=(5, 3)).astype(np.float32)
        labels = rng.random((4, 5)) < 0.5
        jitted = self._fn(0.3)(anchors, label_embeddings, labels)
        mapped = jax.jit(jax.vmap(lambda a, y: fn(a, label_embeddings, y, temperature=0.3)))(
            anchors, labels
        )
        np.testing.assert_allclose(mapped, jitted, atol=_ATOL)
        # A traced temperature works too.
        traced = jax.jit(lambda t: fn(anchors, label_embeddings, labels, temperature=t))(0.3)
        np.testing.assert_allclose(traced, jitted, rtol=1e-6)


if __name__ == "__main__":
    absltest.main()
