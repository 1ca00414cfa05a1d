"""Tests for the KMCL losses: spec oracles, float64 NumPy loops, gradients, invariances."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import test_util as jtu

from cgmvae_jax import losses
from cgmvae_jax.losses import _kmcl

_ATOL = 1e-5


def _to64(*arrays):
    return tuple(np.asarray(a, np.float64) for a in arrays)


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _np_kmcl_reconstruction(h, logits, means, variances, labels, eps=1e-7):
    h, logits, means, variances = _to64(h, logits, means, variances)
    out = []
    for b in range(h.shape[0]):
        m = means[b] if means.ndim == 3 else means[b][:, None]  # [K, D] or [K, 1]
        v = variances[b] if variances.ndim == 3 else variances[b][:, None]
        kernel = np.exp(-0.5 * np.sum((h[b][None] - m) ** 2 / v, axis=-1))  # [K]
        mass = _np_sigmoid(logits[b]) * kernel
        out.append(-np.log(max(np.sum(labels[b] * mass) / np.sum(mass), eps)))
    return np.array(out)


def _np_kmcl_contrastive(means, variances, labels, temperature, scale, eps=1e-7):
    means, variances = _to64(means, variances)
    batch, num_labels = labels.shape

    def log_e(i, j, k):
        mi, mj, vi, vj = means[i, k], means[j, k], variances[i, k], variances[j, k]
        bracket = 0.5 * np.log((vi + vj) / (2 * np.sqrt(vi * vj))) + 0.25 * (mi - mj) ** 2 / (
            vi + vj
        )
        return np.exp(-scale * np.sum(bracket)) / temperature

    out = []
    for i in range(batch):
        partners = [j for j in range(batch) if j != i and np.dot(labels[i], labels[j]) > 0]
        total = 0.0
        for j in partners:
            jaccard = np.sum(labels[i] & labels[j]) / np.sum(labels[i] | labels[j])
            for k in range(num_labels):
                if labels[i, k] and labels[j, k]:
                    z = sum(np.exp(log_e(i, m, k)) for m in range(batch) if m != i)
                    total += np.log(jaccard * np.exp(log_e(i, j, k)) / z + eps)
        out.append(-total / len(partners) if partners else 0.0)
    return np.array(out)


class KmclReconstructionLossTest(chex.TestCase):
    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy
    @parameterized.named_parameters(
        (f"{name}_{layout}", labels, want, layout)
        for name, labels, want in (
            ("one_positive", [1, 0, 0, 0], math.log(4)),
            ("all_positive", [1, 1, 1, 1], 0.0),
            ("no_positive", [0, 0, 0, 0], 16.1180957),  # -log(1e-7)
        )
        for layout in ("anisotropic", "isotropic")
    )
    def test_oracles(self, labels, want, layout):
        h, logits = jnp.ones((1, 3)), jnp.zeros((1, 4))
        shape = (1, 4, 3) if layout == "anisotropic" else (1, 4)
        means, variances = jnp.zeros(shape), jnp.full(shape, 2.0)
        got = self.variant(losses.kmcl_reconstruction_loss)(
            h, logits, means, variances, jnp.array([labels])
        )
        chex.assert_shape(got, (1,))
        chex.assert_trees_all_close(got, jnp.array([want], jnp.float32), atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("anisotropic", True), ("isotropic", False))
    def test_matches_numpy(self, anisotropic):
        rng = np.random.default_rng(50)
        batch, num_labels, dim = 5, 4, 3
        h = rng.normal(size=(batch, dim)).astype(np.float32)
        logits = rng.normal(size=(batch, num_labels)).astype(np.float32)
        shape = (batch, num_labels, dim) if anisotropic else (batch, num_labels)
        means = rng.normal(size=shape).astype(np.float32)
        variances = (1.0 + rng.random(shape)).astype(np.float32)
        labels = rng.random((batch, num_labels)) < 0.5
        labels[0] = False
        labels[1] = True
        got = self.variant(losses.kmcl_reconstruction_loss)(h, logits, means, variances, labels)
        chex.assert_shape(got, (batch,))
        want = _np_kmcl_reconstruction(h, logits, means, variances, labels)
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-5)
        mapped = jax.jit(jax.vmap(losses.kmcl_reconstruction_loss))(
            h, logits, means, variances, labels
        )
        np.testing.assert_allclose(mapped, got, atol=_ATOL, rtol=1e-6)
        # Swapping the class order consistently changes nothing.
        perm = rng.permutation(num_labels)
        swapped = jax.jit(losses.kmcl_reconstruction_loss)(
            h, logits[:, perm], means[:, perm], variances[:, perm], labels[:, perm]
        )
        np.testing.assert_allclose(swapped, got, atol=_ATOL, rtol=1e-6)

    def test_gradients_and_rows_without_positives(self):
        rng = np.random.default_rng(51)
        h, logits = rng.normal(size=(3, 2)), rng.normal(size=(3, 4))
        means, variances = rng.normal(size=(3, 4, 2)), 1.0 + rng.random((3, 4, 2))
        labels = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]], bool)
        fn = lambda *a: losses.kmcl_reconstruction_loss(*a, labels)
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(fn), _to64(h, logits, means, variances), order=1, modes=["rev"])
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=(0, 1, 2, 3)))(
            *(np.asarray(a, np.float32) for a in (h, logits, means, variances))
        )
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g)))
            np.testing.assert_array_equal(g[1], 0.0)

    def test_extreme_inputs_are_finite(self):
        h = jnp.array([[0.0, 0.0], [50.0, -50.0]])
        logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
        means = jnp.array([[[0.0, 0.0], [300.0, 0.0], [0.0, 1.0]]] * 2)
        variances = jnp.full((2, 3, 2), 1.5)
        labels = jnp.array([[0, 1, 0], [1, 0, 0]])
        fn = losses.kmcl_reconstruction_loss
        loss = lambda *a: jnp.sum(fn(*a, labels))
        value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(
            h, logits, means, variances
        )
        self.assertTrue(np.isfinite(value))
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g)))


class KmclContrastiveLossTest(chex.TestCase):
    def test_identical_gaussians_give_maximal_similarity(self):
        means, variances = jnp.ones((2, 1, 5)), jnp.full((2, 1, 5), 3.0)
        log_e = _kmcl._bhattacharyya_log_similarity(
            means, variances, distance_scale=5.0, temperature=0.17
        )
        np.testing.assert_allclose(jnp.exp(log_e), np.full((2, 2, 1), 358.65), rtol=1e-4)
        np.testing.assert_allclose(np.exp(1 / 0.17), 358.65, rtol=1e-4)

    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy
    @parameterized.named_parameters(
        (f"{name}_{layout}", labels, want_mean, layout)
        for name, labels, want_mean in (
            ("one_label", [[1], [1], [0]], 2 / 3 * math.log(2)),
            ("two_labels", [[1, 1], [1, 0], [0, 1]], 1.3862944),
            ("pair", [[1], [1]], -1e-7),  # log(1 + 1e-7)
        )
        for layout in ("anisotropic", "isotropic")
    )
    def test_oracles_with_identical_gaussians(self, labels, want_mean, layout):
        labels = np.array(labels)
        batch, num_labels = labels.shape
        shape = (batch, num_labels) + ((4,) if layout == "anisotropic" else ())
        # Isotropic [B, K] stands for D = 4 equal dimensions: the same distance with M = 4.
        fn = functools.partial(losses.kmcl_contrastive_loss, distance_scale=4.0)
        got = self.variant(fn)(jnp.zeros(shape), jnp.ones(shape), labels)
        chex.assert_shape(got, (batch,))
        chex.assert_trees_all_close(jnp.mean(got), jnp.float32(want_mean), atol=1e-6)

    @chex.variants(with_jit=True)  # the no-jit path: the docstring example
    @parameterized.named_parameters(
        ("anisotropic_exact", True, 1.0),
        ("anisotropic_default_scale", True, None),
        ("isotropic", False, 3.0),
    )
    def test_matches_numpy(self, anisotropic, scale):
        rng = np.random.default_rng(60)
        batch, num_labels, dim = 5, 3, 3
        shape = (batch, num_labels, dim) if anisotropic else (batch, num_labels)
        means = (0.3 * rng.normal(size=shape)).astype(np.float32)
        variances = (1.0 + 0.5 * rng.random(shape)).astype(np.float32)
        labels = rng.random((batch, num_labels)) < 0.5
        labels[0] = False
        labels[1] = [True, True, False]
        labels[2] = [True, False, True]
        fn = self.variant(
            functools.partial(losses.kmcl_contrastive_loss, temperature=0.5, distance_scale=scale)
        )
        got = fn(means, variances, labels)
        chex.assert_shape(got, (batch,))
        want = _np_kmcl_contrastive(means, variances, labels, 0.5, scale or dim)
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-5)
        self.assertEqual(float(got[0]), 0.0)
        # Permuting the batch permutes the per-anchor losses; swapping classes changes nothing.
        perm = rng.permutation(batch)
        np.testing.assert_allclose(
            fn(means[perm], variances[perm], labels[perm]), got[perm], atol=_ATOL, rtol=1e-6
        )
        cls = rng.permutation(num_labels)
        np.testing.assert_allclose(
            fn(means[:, cls], variances[:, cls], labels[:, cls]), got, atol=_ATOL, rtol=1e-6
        )

    def test_gradients(self):
        rng = np.random.default_rng(61)
        means = 0.3 * rng.normal(size=(4, 2, 3))
        variances = 1.0 + 0.5 * rng.random((4, 2, 3))
        labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
        fn = lambda m, v: losses.kmcl_contrastive_loss(m, v, labels, distance_scale=1.0)
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(fn), _to64(means, variances), order=1, modes=["rev"])

    def test_no_positive_pairs_give_zero_and_finite_gradients(self):
        rng = np.random.default_rng(62)
        means = rng.normal(size=(3, 3, 2)).astype(np.float32)
        variances = (1.0 + rng.random((3, 3, 2))).astype(np.float32)
        labels = np.eye(3, dtype=bool)  # nobody shares a label
        fn = losses.kmcl_contrastive_loss
        loss = lambda m, v: jnp.sum(fn(m, v, labels, distance_scale=1.0))
        value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(means, variances)
        self.assertEqual(float(value), 0.0)
        for g in grads:
            np.testing.assert_array_equal(g, 0.0)
        single = fn(means[:1], variances[:1], labels[:1])
        np.testing.assert_array_equal(single, [0.0])

    def test_far_apart_gaussians_are_finite(self):
        means = jnp.array([[[0.0]], [[1e3]], [[-1e3]]])
        variances = jnp.ones((3, 1, 1))
        labels = jnp.ones((3, 1))
        fn = losses.kmcl_contrastive_loss
        value, grads = jax.jit(
            jax.value_and_grad(lambda m, v: jnp.sum(fn(m, v, labels, eps=None)), argnums=(0, 1))
        )(means, variances)
        # Every E is 1: each anchor gives -log(J / (B - 1)) = log 2.
        np.testing.assert_allclose(value, 3 * math.log(2), rtol=1e-6)
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g)))

    def test_vmap_over_batches_equals_loop(self):
        rng = np.random.default_rng(63)
        means = rng.normal(size=(2, 4, 2, 3)).astype(np.float32)
        variances = (1.0 + rng.random((2, 4, 2, 3))).astype(np.float32)
        labels = rng.random((2, 4, 2)) < 0.6
        fn = functools.partial(losses.kmcl_contrastive_loss, distance_scale=1.0)
        mapped = jax.jit(jax.vmap(fn))(means, variances, labels)
        for n in range(2):
            np.testing.assert_allclose(
                mapped[n], jax.jit(fn)(means[n], variances[n], labels[n]), 1e-5
            )


if __name__ == "__main__":
    absltest.main()
