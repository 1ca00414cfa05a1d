"""Tests for correct_missing_labels and clml_loss: oracles, float64 SVDs, custom gradient."""

import functools
import re

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


def _np_clml(features, labels, delta=1.0, lam=1.0):
    features = np.asarray(features, np.float64)
    norm = lambda x: np.linalg.svd(x, compute_uv=False).sum() if x.shape[0] else 0.0
    local = sum(max(delta, norm(features[labels[:, c] != 0])) for c in range(labels.shape[1]))
    return lam / features.shape[0] * (local - norm(features))


class CorrectMissingLabelsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("before_start", 0, [0, 0]), ("from_start", 1, [1, 0]))
    def test_oracle(self, epoch, want):
        # sigmoid(2) = 0.881 > 0.75: switched on from the start epoch; epoch may be traced.
        fn = self.variant(functools.partial(losses.correct_missing_labels, threshold=0.75))
        got = fn(jnp.array([2.0, -3.0]), jnp.array([0, 0]), epoch=epoch)
        chex.assert_trees_all_equal(got, jnp.array(want))

    def test_positives_are_never_removed_and_dtype_is_kept(self):
        logits = jnp.array([[-9.0, 9.0, 0.5], [3.0, -1.0, 1.2]])
        labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        got = losses.correct_missing_labels(logits, labels, threshold=0.7, epoch=5)
        np.testing.assert_array_equal(got, [[1, 1, 0], [1, 1, 1]])
        self.assertEqual(got.dtype, labels.dtype)
        got_bool = losses.correct_missing_labels(logits, labels > 0, epoch=5)
        self.assertEqual(got_bool.dtype, jnp.bool_)


class ClmlLossTest(chex.TestCase):
    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy
    @parameterized.named_parameters(
        ("identity_distinct_labels", 1.0, [[1, 0], [0, 1]], 0.0),
        ("identity_one_shared_label", 1.0, [[1, 0], [1, 0]], 0.5),
        ("scaled_identity", 3.0, [[1, 0], [0, 1]], 0.0),
    )
    def test_oracles(self, scale, labels, want):
        fn = self.variant(losses.clml_loss)
        got = fn(scale * jnp.eye(2), jnp.full((2, 2), -5.0), jnp.array(labels), epoch=0)
        chex.assert_shape(got, ())
        chex.assert_trees_all_close(got, jnp.float32(want), atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("before_correction", 0), ("with_correction", 3))
    def test_matches_numpy(self, epoch):
        rng = np.random.default_rng(70)
        features = rng.normal(size=(6, 4)).astype(np.float32)
        logits = (2 * rng.normal(size=(6, 5))).astype(np.float32)
        labels = (rng.random((6, 5)) < 0.3).astype(np.int32)
        labels[:, 4] = 0
        logits[:, 4] = -9.0  # label 4 has no member: contributes delta
        fn = self.variant(functools.partial(losses.clml_loss, delta=1.5, lam=0.7))
        corrected = np.where((_np_sigmoid(logits) > 0.75) & (epoch >= 1), 1, labels)
        want = _np_clml(features, corrected, delta=1.5, lam=0.7)
        np.testing.assert_allclose(fn(features, logits, labels, epoch=epoch), want, rtol=1e-5)

    def test_scaling(self):
        rng = np.random.default_rng(71)
        features = (3 * rng.normal(size=(5, 4))).astype(np.float32)
        labels = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1]])
        fn = jax.jit(losses.clml_loss)
        base = fn(features, jnp.full((5, 2), -9.0), labels, epoch=0)
        scaled = fn(2.5 * features, jnp.full((5, 2), -9.0), labels, epoch=0)
        self.assertGreater(abs(float(base)), 1e-3)
        np.testing.assert_allclose(scaled, 2.5 * base, rtol=1e-5)

    def test_custom_gradient_matches_finite_differences(self):
        rng = np.random.default_rng(72)
        features = rng.normal(size=(4, 6))  # every group has full row rank
        labels = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]])
        logits = np.full((4, 3), -9.0)
        fn = lambda x: losses.clml_loss(x, logits, labels, epoch=0, delta=0.1, lam=2.0)
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(fn), _to64(features), order=1, modes=["rev"])

    def test_gradient_scales_with_cotangent_and_ignores_labels(self):
        rng = np.random.default_rng(73)
        features = rng.normal(size=(4, 3)).astype(np.float32)
        logits = rng.normal(size=(4, 2)).astype(np.float32)
        logits[0] = [1e4, -1e4]  # extreme scores only switch labels on or off
        labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
        fn = lambda x, s: losses.clml_loss(x, s, labels, epoch=2, threshold=0.6)
        g1 = jax.jit(jax.grad(fn))(features, logits)
        g3 = jax.jit(jax.grad(lambda x, s: 3.0 * fn(x, s)))(features, logits)
        np.testing.assert_allclose(g3, 3.0 * g1, rtol=1e-5, atol=1e-6)
        self.assertGreater(np.abs(g1).sum(), 0.0)
        g_logits = jax.jit(jax.grad(fn, argnums=1))(features, logits)
        np.testing.assert_array_equal(g_logits, 0.0)

    def test_chunked_labels_and_rank_deficient_inputs(self):
        rng = np.random.default_rng(74)
        features = rng.normal(size=(6, 3)).astype(np.float32)
        features[5] = features[4]  # repeated rows: zero singular values in some groups
        logits = np.full((6, 5), -9.0, np.float32)
        labels = (rng.random((6, 5)) < 0.5).astype(np.int32)
        labels[:, 3] = 0
        fn = lambda x, **kw: losses.clml_loss(x, logits, labels, epoch=0, **kw)
        value, grad = jax.jit(jax.value_and_grad(fn))(features)
        value2, grad2 = jax.jit(jax.value_and_grad(functools.partial(fn, label_chunk_size=2)))(
            features
        )
        np.testing.assert_allclose(value2, value, rtol=1e-6)
        np.testing.assert_allclose(grad2, grad, atol=1e-6)
        self.assertTrue(np.all(np.isfinite(grad)))
        zero_value, zero_grad = jax.jit(jax.value_and_grad(fn))(np.zeros((6, 3), np.float32))
        np.testing.assert_allclose(zero_value, 5 / 6, rtol=1e-6)  # every label gives delta
        np.testing.assert_array_equal(zero_grad, 0.0)

    @parameterized.named_parameters(("whole", None), ("chunked", 2))
    def test_svds_never_run_side_by_side(self, chunk):
        # Two LAPACK SVD calls that XLA:CPU runs at the same time can deadlock its intra-op
        # thread pool on a 2-core machine: the loss and its gradient (vmapped over seeds, as
        # training runs it) hold one SVD call, or, chunked, calls chained by data dependence.
        if jax.default_backend() != "cpu":
            self.skipTest("LAPACK custom calls are the CPU backend's")
        rng = np.random.default_rng(76)
        features = rng.normal(size=(3, 8, 5)).astype(np.float32)  # [seeds, B, D]
        logits = rng.normal(size=(3, 8, 4)).astype(np.float32)
        labels = rng.random((3, 8, 4)) < 0.5

        def loss(x, s, y):
            return losses.clml_loss(x, s, y, epoch=1, label_chunk_size=chunk)

        step = jax.jit(jax.vmap(jax.value_and_grad(loss)))
        hlo = step.lower(features, logits, labels).compile().as_text()
        # One SVD call in the program; chunked, it sits in the loop body, one chunk at a time.
        self.assertLen(re.findall(r'custom_call_target="lapack_[sd]gesdd', hlo), 1)
        values, grads = step(features, logits, labels)
        for n in range(3):
            want = loss(features[n], logits[n], labels[n])
            np.testing.assert_allclose(values[n], want, rtol=1e-5)
        self.assertTrue(np.all(np.isfinite(grads)))

    def test_vmap_and_bfloat16(self):
        rng = np.random.default_rng(75)
        features = rng.normal(size=(2, 4, 3)).astype(np.float32)
        logits = rng.normal(size=(2, 4, 2)).astype(np.float32)
        labels = rng.random((2, 4, 2)) < 0.5
        fn = lambda x, s, y: losses.clml_loss(x, s, y, epoch=1)
        mapped = jax.jit(jax.vmap(fn))(features, logits, labels)
        for n in range(2):
            want = _np_clml(features[n], np.where(_np_sigmoid(logits[n]) > 0.75, 1, labels[n]))
            np.testing.assert_allclose(mapped[n], want, rtol=1e-5)
        as_bf16 = jnp.asarray(features[0], jnp.bfloat16)
        got = jax.jit(fn)(as_bf16, logits[0], labels[0])
        self.assertEqual(got.dtype, jnp.float32)
        want = _np_clml(
            np.asarray(as_bf16, np.float64), np.where(_np_sigmoid(logits[0]) > 0.75, 1, labels[0])
        )
        np.testing.assert_allclose(got, want, rtol=1e-5)


if __name__ == "__main__":
    absltest.main()
