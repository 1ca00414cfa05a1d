"""Tests for cgmvae_jax.losses: closed-form oracles, float64 NumPy references, gradients."""

import doctest
import functools
import importlib
import math
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import test_util as jtu

from cgmvae_jax import losses
from cgmvae_jax.losses import _kmcl, _mixture

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ATOL = 1e-5


# ------------------------------------------------------------------------------------------------
# Float64 NumPy loop references.


def _np_log_normal(x, mean, log_var):
    x, mean, log_var = (np.asarray(a, np.float64) for a in (x, mean, log_var))
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (x - mean) ** 2 / np.exp(log_var))


def _np_log_mean_exp(values):
    values = np.asarray(values, np.float64)
    top = values.max()
    return top + np.log(np.mean(np.exp(values - top)))


def _np_mixture(z, means, log_vars, mask):
    """z [B, d]; means, log_vars [K, d] or [B, K, d]; mask [B, K] -> [B]."""
    out = []
    for b in range(z.shape[0]):
        m = means if means.ndim == 2 else means[b]
        v = log_vars if log_vars.ndim == 2 else log_vars[b]
        vals = [_np_log_normal(z[b], m[k], v[k]) for k in range(m.shape[0]) if mask[b, k]]
        out.append(_np_log_mean_exp(vals) if vals else -np.inf)
    return np.array(out)


def _np_gaussian_kl(mq, vq, mp, vp):
    mq, vq, mp, vp = (np.asarray(a, np.float64) for a in (mq, vq, mp, vp))
    out = np.zeros(mq.shape[:-1])
    for idx in np.ndindex(*mq.shape[:-1]):
        total = 0.0
        for i in range(mq.shape[-1]):
            var_q, var_p = np.exp(vq[idx][i]), np.exp(vp[idx][i])
            total += 0.5 * (
                np.log(var_p / var_q) - 1 + var_q / var_p + (mq[idx][i] - mp[idx][i]) ** 2 / var_p
            )
        out[idx] = total
    return out


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


def _random_mixture_inputs(seed, batch=5, num_components=7, dim=3, per_example=False):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(batch, dim)).astype(np.float32)
    shape = (batch, num_components, dim) if per_example else (num_components, dim)
    means = rng.normal(size=shape).astype(np.float32)
    log_vars = (0.5 * rng.normal(size=shape)).astype(np.float32)
    mask = rng.random((batch, num_components)) < 0.5
    mask[0] = True  # all active
    mask[1] = False
    mask[1, 2] = True  # exactly one active
    return z, means, log_vars, mask


def _to64(*arrays):
    return tuple(np.asarray(a, np.float64) for a in arrays)


def _max_intermediate_size(closed_jaxpr):
    """Largest number of elements of any value computed in a jaxpr (recursing into calls)."""
    best = 0

    def visit(jaxpr):
        nonlocal best
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                best = max(best, int(np.prod(var.aval.shape)))
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    if hasattr(sub, "eqns"):
                        visit(sub)
                    elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                        visit(sub.jaxpr)

    visit(closed_jaxpr.jaxpr)
    return best


# ------------------------------------------------------------------------------------------------


class LogNormalDiagTest(parameterized.TestCase):
    def test_matches_numpy(self):
        rng = np.random.default_rng(0)
        x, mean, log_var = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3))
        got = jax.jit(losses.log_normal_diag)(x, mean, log_var)
        want = [_np_log_normal(x[b], mean[b], log_var[b]) for b in range(4)]
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-6)

    def test_standard_normal_at_zero(self):
        got = jax.jit(losses.log_normal_diag)(jnp.zeros(5), jnp.zeros(5), jnp.zeros(5))
        np.testing.assert_allclose(got, -2.5 * math.log(2 * math.pi), rtol=1e-6)

    def test_broadcasts_leading_dims(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(2, 1, 3)).astype(np.float32)
        mean = rng.normal(size=(4, 3)).astype(np.float32)
        got = jax.jit(losses.log_normal_diag)(x, mean, jnp.zeros(3))
        self.assertEqual(got.shape, (2, 4))
        np.testing.assert_allclose(got[1, 2], _np_log_normal(x[1, 0], mean[2], np.zeros(3)), 1e-6)

    def test_gradients(self):
        rng = np.random.default_rng(2)
        args = _to64(*(rng.normal(size=(3, 2)) for _ in range(3)))
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(losses.log_normal_diag), args, order=1, modes=["rev"])

    def test_integer_input_raises_type_error(self):
        with self.assertRaises(TypeError):
            losses.log_normal_diag(jnp.zeros(3, jnp.int32), jnp.zeros(3), jnp.zeros(3))

    def test_bad_shapes_raise_value_error(self):
        with self.assertRaisesRegex(ValueError, r"\(2, 3\).*\(2, 4\)"):
            losses.log_normal_diag(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros(3))


class GaussianMixtureLogDensityTest(parameterized.TestCase):
    @parameterized.named_parameters(("shared", False), ("per_example", True))
    def test_matches_numpy_loop(self, per_example):
        z, means, log_vars, mask = _random_mixture_inputs(3, per_example=per_example)
        mask[1] = False  # a row with nothing active
        got = jax.jit(losses.gaussian_mixture_log_density)(z, means, log_vars, mask)
        want = _np_mixture(z, means, log_vars, mask)
        self.assertEqual(got.dtype, jnp.float32)
        self.assertEqual(got[1], -np.inf)
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-5)

    @parameterized.named_parameters(("seed0", 0), ("seed1", 1), ("seed2", 2))
    def test_matmul_form_equals_broadcast_reference(self, seed):
        z, means, log_vars, mask = _random_mixture_inputs(seed, batch=6, num_components=11, dim=8)
        got = jax.jit(losses.gaussian_mixture_log_density)(z, means, log_vars, mask)
        ref = jax.jit(_mixture._gaussian_mixture_log_density_reference)(z, means, log_vars, mask)
        np.testing.assert_allclose(got, ref, atol=_ATOL, rtol=1e-5)

    def test_shared_components_do_not_materialise_batch_by_component_by_dim(self):
        batch, num_components, dim = 64, 2048, 32  # more than one chunk of components
        z, means, log_vars, mask = _random_mixture_inputs(
            0, batch=batch, num_components=num_components, dim=dim
        )
        fast = jax.make_jaxpr(losses.gaussian_mixture_log_density)(z, means, log_vars, mask)
        grad = jax.make_jaxpr(
            jax.grad(
                lambda *a: jnp.sum(losses.gaussian_mixture_log_density(*a, mask)), argnums=(0, 1, 2)
            )
        )(z, means, log_vars)
        self.assertLess(_max_intermediate_size(grad), batch * num_components * dim)
        slow = jax.make_jaxpr(_mixture._gaussian_mixture_log_density_reference)(
            z, means, log_vars, mask
        )
        self.assertLess(_max_intermediate_size(fast), batch * num_components * dim)
        self.assertGreaterEqual(_max_intermediate_size(slow), batch * num_components * dim)

    @parameterized.named_parameters(
        ("one_active", [1, 0, 0, 0]),
        ("two_active", [0, 1, 1, 0]),
        ("all_active", [1, 1, 1, 1]),
    )
    def test_inactive_components_do_not_change_result(self, active):
        rng = np.random.default_rng(4)
        z = rng.normal(size=(1, 3)).astype(np.float32)
        means = rng.normal(size=(4, 3)).astype(np.float32)
        log_vars = rng.normal(size=(4, 3)).astype(np.float32)
        mask = np.array([active], bool)
        fn = jax.jit(losses.gaussian_mixture_log_density)
        base = fn(z, means, log_vars, mask)
        # Change the inactive components to arbitrary (finite) parameters.
        means2, log_vars2 = means.copy(), log_vars.copy()
        means2[~mask[0]] = 30.0 * rng.normal(size=(int((~mask[0]).sum()), 3))
        log_vars2[~mask[0]] = -5.0
        np.testing.assert_allclose(fn(z, means2, log_vars2, mask), base, rtol=1e-6)
        # Adding extra inactive components changes nothing either.
        extra_means = np.concatenate([means, 50.0 * np.ones((3, 3), np.float32)])
        extra_log_vars = np.concatenate([log_vars, -3.0 * np.ones((3, 3), np.float32)])
        extra_mask = np.concatenate([mask, np.zeros((1, 3), bool)], axis=1)
        np.testing.assert_allclose(
            fn(z, extra_means, extra_log_vars, extra_mask), base, atol=_ATOL, rtol=1e-6
        )

    def test_two_equal_components_minus_log_two_relative_to_one(self):
        z = jnp.zeros((1, 4))
        means = jnp.stack([jnp.zeros(4), jnp.full(4, 100.0)])
        fn = jax.jit(losses.gaussian_mixture_log_density)
        one = fn(z, means, jnp.zeros((2, 4)), jnp.array([[1, 0]]))
        two = fn(z, means, jnp.zeros((2, 4)), jnp.array([[1, 1]]))
        np.testing.assert_allclose(one - two, math.log(2), atol=_ATOL)

    def test_empty_mask_gives_minus_inf_and_zero_gradients(self):
        z, means, log_vars, _ = _random_mixture_inputs(5)
        mask = np.zeros((5, 7), bool)
        fn = losses.gaussian_mixture_log_density
        values = jax.jit(fn)(z, means, log_vars, mask)
        self.assertTrue(np.all(values == -np.inf))
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a, mask)), argnums=(0, 1, 2)))(
            z, means, log_vars
        )
        for g in grads:
            np.testing.assert_array_equal(g, np.zeros_like(g))

    @parameterized.named_parameters(("shared", False), ("per_example", True))
    def test_partly_empty_batch_has_finite_gradients(self, per_example):
        z, means, log_vars, mask = _random_mixture_inputs(6, per_example=per_example)
        mask[2] = False
        fn = losses.gaussian_mixture_log_density
        # The caller masks rows with no component before reducing.
        loss = lambda *a: jnp.sum(jnp.where(mask.any(-1), fn(*a, mask), 0.0))
        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(z, means, log_vars)
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g)))
        np.testing.assert_array_equal(grads[0][2], 0.0)
        self.assertGreater(np.abs(grads[0][0]).sum(), 0.0)

    @parameterized.named_parameters(("shared", False), ("per_example", True))
    def test_gradients(self, per_example):
        z, means, log_vars, mask = _random_mixture_inputs(7, per_example=per_example)
        mask[:, 0] = True  # no -inf rows inside check_grads
        fn = lambda z, m, v: losses.gaussian_mixture_log_density(z, m, v, mask)
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(fn), _to64(z, means, log_vars), order=1, modes=["rev"])

    def test_jit_and_vmap_equal_plain_call(self):
        fn = losses.gaussian_mixture_log_density
        # The un-jitted call uses the docstring example's shapes and dtypes (shared eager cache).
        rng = np.random.default_rng(8)
        z, means, log_vars = (rng.normal(size=(2, 4)).astype(np.float32) for _ in range(3))
        mask = jnp.array([[1, 1], [0, 1]])
        plain = fn(z, means, log_vars, mask)
        np.testing.assert_allclose(jax.jit(fn)(z, means, log_vars, mask), plain, rtol=1e-6)
        z, means, log_vars, mask = _random_mixture_inputs(8)
        mapped = jax.jit(jax.vmap(fn, in_axes=(0, None, None, 0)))(z, means, log_vars, mask)
        np.testing.assert_allclose(
            mapped, jax.jit(fn)(z, means, log_vars, mask), atol=_ATOL, rtol=1e-6
        )

    def test_leading_batch_dims_broadcast(self):
        z, means, log_vars, mask = _random_mixture_inputs(9, batch=6)
        fn = jax.jit(losses.gaussian_mixture_log_density)
        flat = fn(z, means, log_vars, mask)
        shaped = fn(z.reshape(2, 3, -1), means, log_vars, mask.reshape(2, 3, -1))
        np.testing.assert_allclose(shaped.reshape(-1), flat, rtol=1e-6)
        # One z row against many masks.
        many = fn(z[:1], means, log_vars, mask)
        self.assertEqual(many.shape, (6,))

    def test_bfloat16_inputs(self):
        z, means, log_vars, mask = _random_mixture_inputs(10)
        as_bf16 = [jnp.asarray(a, jnp.bfloat16) for a in (z, means, log_vars)]
        got = jax.jit(losses.gaussian_mixture_log_density)(*as_bf16, mask)
        self.assertEqual(got.dtype, jnp.float32)
        want = _np_mixture(*(np.asarray(a, np.float64) for a in as_bf16), mask)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)

    @parameterized.named_parameters(
        ("dim", (4, 3), (5, 2), (4, 5)),
        ("components", (4, 3), (5, 3), (4, 6)),
        ("batch", (4, 3), (5, 3), (3, 5)),
        ("per_example_batch", (4, 3), (2, 5, 3), (4, 5)),
    )
    def test_bad_shapes_raise_value_error(self, z_shape, means_shape, mask_shape):
        with self.assertRaises(ValueError):
            losses.gaussian_mixture_log_density(
                jnp.zeros(z_shape), jnp.zeros(means_shape), jnp.zeros(means_shape),
                jnp.ones(mask_shape),
            )  # fmt: skip

    def test_integer_z_raises_type_error(self):
        with self.assertRaises(TypeError):
            losses.gaussian_mixture_log_density(
                jnp.zeros((2, 3), jnp.int32), jnp.zeros((4, 3)), jnp.zeros((4, 3)), jnp.ones((2, 4))
            )


class MixtureKlSingleSampleTest(parameterized.TestCase):
    @parameterized.named_parameters(("near", 0.1), ("far", 4.0))
    def test_zero_when_single_active_component_equals_q(self, scale):
        rng = np.random.default_rng(11)
        mean = rng.normal(size=(3, 4)).astype(np.float32)
        log_var = (0.3 * rng.normal(size=(3, 4))).astype(np.float32)
        z = (mean + scale * rng.normal(size=(3, 4))).astype(np.float32)
        prior_means = np.stack([mean, rng.normal(size=(3, 4))], axis=1).astype(np.float32)
        prior_log_vars = np.stack([log_var, rng.normal(size=(3, 4))], axis=1).astype(np.float32)
        mask = np.array([[1, 0]] * 3)
        got = jax.jit(losses.mixture_kl_single_sample)(
            z, mean, log_var, prior_means, prior_log_vars, mask
        )
        np.testing.assert_allclose(got, 0.0, atol=_ATOL)
        # Shared prior (matmul form): the first component equals q for example 0.
        got_shared = jax.jit(losses.mixture_kl_single_sample)(
            z[:1], mean[:1], log_var[:1], prior_means[0], prior_log_vars[0], mask[:1]
        )
        np.testing.assert_allclose(got_shared, 0.0, atol=1e-4)

    def test_log_two_with_one_equal_and_one_far_component(self):
        z = jnp.array([[0.3, -1.2, 0.5]])
        mean, log_var = jnp.zeros((1, 3)), jnp.zeros((1, 3))
        prior_means = jnp.stack([jnp.zeros(3), jnp.full(3, 100.0)])
        got = jax.jit(losses.mixture_kl_single_sample)(
            z, mean, log_var, prior_means, jnp.zeros((2, 3)), jnp.array([[1, 1]])
        )
        np.testing.assert_allclose(got, [0.6931472], atol=_ATOL)

    def test_inactive_components_do_not_change_kl(self):
        rng = np.random.default_rng(12)
        z, mean, log_var = (rng.normal(size=(2, 3)).astype(np.float32) for _ in range(3))
        prior_means = rng.normal(size=(3, 3)).astype(np.float32)
        prior_log_vars = rng.normal(size=(3, 3)).astype(np.float32)
        mask = np.array([[1, 0, 1], [0, 1, 0]])
        fn = jax.jit(losses.mixture_kl_single_sample)
        base = fn(z, mean, log_var, prior_means, prior_log_vars, mask)
        more_means = np.concatenate([prior_means, 20 * rng.normal(size=(4, 3))]).astype(np.float32)
        more_log_vars = np.concatenate([prior_log_vars, rng.normal(size=(4, 3))]).astype(np.float32)
        more_mask = np.concatenate([mask, np.zeros((2, 4), int)], axis=1)
        np.testing.assert_allclose(
            fn(z, mean, log_var, more_means, more_log_vars, more_mask), base, atol=_ATOL
        )

    def test_matches_numpy(self):
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(13)
        rng = np.random.default_rng(13)
        mean = rng.normal(size=z.shape).astype(np.float32)
        log_var = (0.5 * rng.normal(size=z.shape)).astype(np.float32)
        got = jax.jit(losses.mixture_kl_single_sample)(
            z, mean, log_var, prior_means, prior_log_vars, mask
        )
        log_q = [_np_log_normal(z[b], mean[b], log_var[b]) for b in range(len(z))]
        want = np.array(log_q) - _np_mixture(z, prior_means, prior_log_vars, mask)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)

    def test_empty_mask_gives_exact_zero_and_zero_gradients(self):
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(14)
        mask[3] = False
        mean, log_var = z + 0.5, z * 0.1
        fn = losses.mixture_kl_single_sample
        values = jax.jit(fn)(z, mean, log_var, prior_means, prior_log_vars, mask)
        self.assertEqual(float(values[3]), 0.0)
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a, mask)), argnums=(0, 1, 2, 3, 4)))(
            z, mean, log_var, prior_means, prior_log_vars
        )
        for g in grads:
            self.assertTrue(np.all(np.isfinite(g)))
        for g in grads[:3]:
            np.testing.assert_array_equal(g[3], 0.0)
        empty = np.zeros_like(mask)
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a, empty)), argnums=(0, 1, 2, 3, 4)))(
            z, mean, log_var, prior_means, prior_log_vars
        )
        for g in grads:
            np.testing.assert_array_equal(g, np.zeros_like(g))

    def test_gradients(self):
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(15)
        mask[1] = False  # include an empty row: its gradient is exactly zero
        mean, log_var = z * 0.5, z * 0.2
        fn = lambda *a: losses.mixture_kl_single_sample(*a, mask)
        with jax.enable_x64(True):
            jtu.check_grads(
                jax.jit(fn),
                _to64(z, mean, log_var, prior_means, prior_log_vars),
                order=1,
                modes=["rev"],
            )

    def test_jit_and_vmap_equal_plain_call(self):
        fn = losses.mixture_kl_single_sample
        # The un-jitted call uses the docstring example's shapes and dtypes (shared eager cache).
        rng = np.random.default_rng(16)
        small = [rng.normal(size=(1, 2)).astype(np.float32) for _ in range(3)]
        small += [rng.normal(size=(2, 2)).astype(np.float32) for _ in range(2)]
        small.append(jnp.array([[True, True]]))
        np.testing.assert_allclose(jax.jit(fn)(*small), fn(*small), rtol=1e-6)
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(16)
        args = (z, z * 0.5, z * 0.2, prior_means, prior_log_vars, mask)
        mapped = jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, None, None, 0)))(*args)
        np.testing.assert_allclose(mapped, jax.jit(fn)(*args), atol=_ATOL)

    def test_bfloat16_inputs(self):
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(17)
        args = [jnp.asarray(a, jnp.bfloat16) for a in (z, z * 0.5, z * 0.2, prior_means,
                                                        prior_log_vars)]  # fmt: skip
        got = jax.jit(losses.mixture_kl_single_sample)(*args, mask)
        self.assertEqual(got.dtype, jnp.float32)
        want = jax.jit(losses.mixture_kl_single_sample)(
            *(jnp.asarray(a, jnp.float32) for a in args), mask
        )
        np.testing.assert_allclose(got, want, atol=1e-5)

    def test_bad_shapes_raise_value_error(self):
        with self.assertRaises(ValueError):
            losses.mixture_kl_single_sample(
                jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 3)),
                jnp.zeros((5, 3)), jnp.zeros((5, 3)), jnp.ones((2, 5)),
            )  # fmt: skip
        with self.assertRaises(ValueError):
            losses.mixture_kl_single_sample(
                jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 3)),
                jnp.zeros((5, 3)), jnp.zeros((5, 3)), jnp.ones((2, 4)),
            )  # fmt: skip


class GaussianKlTest(parameterized.TestCase):
    def test_identical_gaussians_give_zero(self):
        rng = np.random.default_rng(20)
        mean, log_var = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
        got = jax.jit(losses.gaussian_kl)(mean, log_var, mean, log_var)
        np.testing.assert_array_equal(got, np.zeros(4))

    def test_unit_mean_shift_in_three_dims(self):
        got = jax.jit(losses.gaussian_kl)(
            jnp.zeros((1, 3)), jnp.zeros((1, 3)), jnp.ones((1, 3)), jnp.zeros((1, 3))
        )
        np.testing.assert_allclose(got, [1.5], rtol=1e-6)

    def test_directions_agree_when_variances_are_equal(self):
        rng = np.random.default_rng(21)
        mq, mp, v = (rng.normal(size=(3, 4)) for _ in range(3))
        fn = jax.jit(losses.gaussian_kl)
        np.testing.assert_allclose(fn(mq, v, mp, v), fn(mp, v, mq, v), rtol=1e-6)

    def test_matches_numpy_and_is_non_negative(self):
        rng = np.random.default_rng(22)
        args = [rng.normal(size=(2, 3, 4)).astype(np.float32) for _ in range(4)]
        got = jax.jit(losses.gaussian_kl)(*args)
        np.testing.assert_allclose(got, _np_gaussian_kl(*args), atol=_ATOL, rtol=1e-5)
        self.assertTrue(np.all(got >= 0))

    def test_gradients(self):
        rng = np.random.default_rng(23)
        args = _to64(*(rng.normal(size=(3, 2)) for _ in range(4)))
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(losses.gaussian_kl), args, order=1, modes=["rev"])

    def test_bfloat16_inputs(self):
        rng = np.random.default_rng(24)
        args = [jnp.asarray(rng.normal(size=(3, 4)), jnp.bfloat16) for _ in range(4)]
        got = jax.jit(losses.gaussian_kl)(*args)
        self.assertEqual(got.dtype, jnp.float32)
        np.testing.assert_allclose(got, _np_gaussian_kl(*args), atol=1e-4, rtol=1e-5)

    def test_bad_shapes_raise_value_error(self):
        with self.assertRaisesRegex(ValueError, r"\(2, 3\).*\(2, 4\)"):
            losses.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 4)), 0.0, 0.0)


class LabelContrastiveLossTest(parameterized.TestCase):
    def _fn(self, temperature=1.0):
        return jax.jit(functools.partial(losses.label_contrastive_loss, temperature=temperature))

    def test_one_positive_one_negative_is_softplus(self):
        # Scores s_p = 0.3, s_n = -0.2, tau = 1/2: softplus((s_n - s_p) / tau) = log(1 + e^-1).
        anchors = jnp.array([[1.0, 0.0]])
        label_embeddings = jnp.array([[0.3, 5.0], [-0.2, -1.0]])
        got = self._fn(0.5)(anchors, label_embeddings, jnp.array([[1, 0]]))
        np.testing.assert_allclose(got, [0.3132617], atol=1e-6)

    @parameterized.named_parameters(("two", 2), ("five", 5))
    def test_all_positive_equal_scores_give_log_num_labels(self, num_labels):
        anchors = jnp.ones((3, 4))
        label_embeddings = jnp.full((num_labels, 4), 0.7)
        labels = jnp.ones((3, num_labels), bool)
        got = self._fn()(anchors, label_embeddings, labels)
        np.testing.assert_allclose(got, np.full(3, math.log(num_labels)), rtol=1e-6)

    def test_matches_numpy(self):
        rng = np.random.default_rng(30)
        anchors = rng.normal(size=(6, 5)).astype(np.float32)
        label_embeddings = rng.normal(size=(7, 5)).astype(np.float32)
        labels = rng.random((6, 7)) < 0.4
        labels[0] = False
        labels[1] = True
        got = self._fn(0.7)(anchors, label_embeddings, labels)
        np.testing.assert_allclose(
            got, _np_contrastive(anchors, label_embeddings, labels, 0.7), atol=_ATOL, rtol=1e-5
        )

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

    def test_bfloat16_inputs(self):
        rng = np.random.default_rng(35)
        anchors = jnp.asarray(rng.normal(size=(4, 3)), jnp.bfloat16)
        label_embeddings = jnp.asarray(rng.normal(size=(5, 3)), jnp.bfloat16)
        labels = rng.random((4, 5)) < 0.5
        labels[:, 0] = True
        got = self._fn()(anchors, label_embeddings, labels)
        self.assertEqual(got.dtype, jnp.float32)
        want = _np_contrastive(np.asarray(anchors, np.float64), label_embeddings, labels, 1.0)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)

    @parameterized.named_parameters(
        ("embedding", (4, 3), (5, 2), (4, 5)),
        ("labels", (4, 3), (5, 3), (4, 6)),
        ("batch", (4, 3), (5, 3), (3, 5)),
        ("embeddings_not_2d", (4, 3), (1, 5, 3), (4, 5)),
    )
    def test_bad_shapes_raise_value_error(self, anchors_shape, emb_shape, labels_shape):
        with self.assertRaises(ValueError):
            losses.label_contrastive_loss(
                jnp.zeros(anchors_shape), jnp.zeros(emb_shape), jnp.ones(labels_shape)
            )

    def test_bad_temperature_and_dtype(self):
        with self.assertRaises(ValueError):
            losses.label_contrastive_loss(
                jnp.zeros((1, 2)), jnp.zeros((3, 2)), jnp.ones((1, 3)), temperature=0.0
            )
        with self.assertRaises(TypeError):
            losses.label_contrastive_loss(
                jnp.zeros((1, 2), jnp.int32), jnp.zeros((3, 2)), jnp.ones((1, 3))
            )


# ------------------------------------------------------------------------------------------------
# ASL, KMCL and CLML: float64 references and tests.


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


def _np_clml(features, labels, delta=1.0, lam=1.0):
    features = np.asarray(features, np.float64)
    norm = lambda x: np.linalg.svd(x, compute_uv=False).sum() if x.shape[0] else 0.0
    local = sum(max(delta, norm(features[labels[:, c] != 0])) for c in range(labels.shape[1]))
    return lam / features.shape[0] * (local - norm(features))


class AsymmetricLossTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("bce", [2.0, -1.0, 0.0], [1, 0, 0], dict(gamma_neg=0.0, clip=0.0), 1.1333369),
        ("bce_clip_none", [2.0, -1.0, 0.0], [1, 0, 0], dict(gamma_neg=0.0, clip=None), 1.1333369),
        ("defaults", [2.0, -1.0, 0.0], [1, 0, 0], {}, 0.1520109),
        ("negative_at_zero", [0.0], [0], {}, 0.0245151),
        ("negative_below_clip", [-4.0], [0], {}, 0.0),
        ("positive_gamma_one", [0.0], [1], dict(gamma_pos=1.0), 0.3465736),
    )
    def test_oracles(self, logits, labels, kwargs, want):
        fn = jax.jit(functools.partial(losses.asymmetric_loss, **kwargs))
        got = fn(jnp.array([logits]), jnp.array([labels]))
        np.testing.assert_allclose(got, [want], atol=1e-6)
        if want == 0.0:
            self.assertEqual(float(got[0]), 0.0)
            grad = jax.grad(lambda x: jnp.sum(fn(x, jnp.array([labels]))))(jnp.array([logits]))
            np.testing.assert_array_equal(grad, 0.0)

    @parameterized.named_parameters(
        ("defaults", 0.0, 4.0, 0.05, 1e-8),
        ("focal_both", 1.0, 2.0, 0.1, 1e-8),
        ("no_clip", 0.0, 4.0, None, 1e-7),
    )
    def test_matches_numpy_and_is_linear(self, gamma_pos, gamma_neg, clip, eps):
        rng = np.random.default_rng(40)
        logits = (3 * rng.normal(size=(5, 6))).astype(np.float32)
        labels = rng.random((5, 6)) < 0.4
        fn = jax.jit(
            functools.partial(
                losses.asymmetric_loss, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, eps=eps
            )
        )
        got = fn(logits, labels)
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

    def test_jit_vmap_and_bfloat16(self):
        rng = np.random.default_rng(43)
        # The un-jitted call uses the docstring example's shapes and dtypes (shared eager cache).
        small_logits, small_labels = (
            rng.normal(size=(1, 3)).astype(np.float32),
            jnp.array([[1, 0, 1]]),
        )
        plain = losses.asymmetric_loss(small_logits, small_labels)
        jitted = jax.jit(losses.asymmetric_loss)(small_logits, small_labels)
        np.testing.assert_allclose(jitted, plain, 1e-6)
        logits = rng.normal(size=(4, 5)).astype(np.float32)
        labels = rng.random((4, 5)) < 0.5
        mapped = jax.jit(jax.vmap(losses.asymmetric_loss))(logits, labels)
        np.testing.assert_allclose(mapped, jax.jit(losses.asymmetric_loss)(logits, labels), 1e-6)
        as_bf16 = jnp.asarray(logits, jnp.bfloat16)
        got = jax.jit(losses.asymmetric_loss)(as_bf16, labels)
        self.assertEqual(got.dtype, jnp.float32)
        want = _np_asl(np.asarray(as_bf16, np.float64), labels, 0.0, 4.0, 0.05, 1e-8)
        np.testing.assert_allclose(got, want, atol=_ATOL, rtol=1e-5)

    def test_bad_inputs(self):
        with self.assertRaisesRegex(ValueError, r"\(2, 3\).*\(2, 4\)"):
            losses.asymmetric_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
        with self.assertRaises(TypeError):
            losses.asymmetric_loss(jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3)))


class KmclReconstructionLossTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("one_positive", [1, 0, 0, 0], math.log(4)),
        ("all_positive", [1, 1, 1, 1], 0.0),
        ("no_positive", [0, 0, 0, 0], 16.1180957),
    )
    def test_oracles(self, labels, want):
        h, logits = jnp.ones((1, 3)), jnp.zeros((1, 4))
        means, variances = jnp.zeros((1, 4, 3)), jnp.full((1, 4, 3), 2.0)
        fn = jax.jit(losses.kmcl_reconstruction_loss)
        got = fn(h, logits, means, variances, jnp.array([labels]))
        np.testing.assert_allclose(got, [want], atol=1e-5)
        got_iso = fn(h, logits, means[..., 0], variances[..., 0], jnp.array([labels]))
        np.testing.assert_allclose(got_iso, [want], atol=1e-5)

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
        got = jax.jit(losses.kmcl_reconstruction_loss)(h, logits, means, variances, labels)
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

    def test_bad_shapes_raise_value_error(self):
        with self.assertRaises(ValueError):  # D mismatch
            losses.kmcl_reconstruction_loss(
                jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 4, 5)), jnp.ones((2, 4, 5)),
                jnp.ones((2, 4)),
            )  # fmt: skip
        with self.assertRaises(ValueError):  # K mismatch
            losses.kmcl_reconstruction_loss(
                jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 5)), jnp.ones((2, 5)),
                jnp.ones((2, 4)),
            )  # fmt: skip


class KmclContrastiveLossTest(parameterized.TestCase):
    def test_identical_gaussians_give_maximal_similarity(self):
        means, variances = jnp.ones((2, 1, 5)), jnp.full((2, 1, 5), 3.0)
        log_e = _kmcl._bhattacharyya_log_similarity(
            means, variances, distance_scale=5.0, temperature=0.17
        )
        np.testing.assert_allclose(jnp.exp(log_e), np.full((2, 2, 1), 358.65), rtol=1e-4)
        np.testing.assert_allclose(np.exp(1 / 0.17), 358.65, rtol=1e-4)

    @parameterized.named_parameters(
        ("one_label", [[1], [1], [0]], 2 / 3 * math.log(2)),
        ("two_labels", [[1, 1], [1, 0], [0, 1]], 1.3862944),
        ("pair", [[1], [1]], -1e-7),
    )
    def test_oracles_with_identical_gaussians(self, labels, want_mean):
        labels = np.array(labels)
        batch, num_labels = labels.shape
        means, variances = jnp.zeros((batch, num_labels, 4)), jnp.ones((batch, num_labels, 4))
        fn = jax.jit(losses.kmcl_contrastive_loss)
        got = fn(means, variances, labels)
        self.assertEqual(got.shape, (batch,))
        np.testing.assert_allclose(jnp.mean(got), want_mean, atol=1e-6)
        got_iso = jax.jit(functools.partial(losses.kmcl_contrastive_loss, distance_scale=4.0))(
            means[..., 0], variances[..., 0], labels
        )
        np.testing.assert_allclose(got_iso, got, atol=1e-6)

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
        fn = jax.jit(
            functools.partial(losses.kmcl_contrastive_loss, temperature=0.5, distance_scale=scale)
        )
        got = fn(means, variances, labels)
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

    def test_bad_inputs(self):
        with self.assertRaises(ValueError):  # isotropic needs distance_scale
            losses.kmcl_contrastive_loss(jnp.zeros((3, 2)), jnp.ones((3, 2)), jnp.ones((3, 2)))
        with self.assertRaises(ValueError):
            losses.kmcl_contrastive_loss(
                jnp.zeros((3, 2, 4)), jnp.ones((3, 2, 5)), jnp.ones((3, 2))
            )
        with self.assertRaises(ValueError):
            losses.kmcl_contrastive_loss(
                jnp.zeros((3, 2, 4)), jnp.ones((3, 2, 4)), jnp.ones((3, 3))
            )


class CorrectMissingLabelsTest(parameterized.TestCase):
    @parameterized.named_parameters(("before_start", 0, [0, 0]), ("from_start", 1, [1, 0]))
    def test_oracle(self, epoch, want):
        fn = jax.jit(functools.partial(losses.correct_missing_labels, threshold=0.75))
        got = fn(jnp.array([2.0, -3.0]), jnp.array([0, 0]), epoch=epoch)  # epoch is traced
        np.testing.assert_array_equal(got, want)

    def test_positives_are_never_removed_and_dtype_is_kept(self):
        logits = jnp.array([[-9.0, 9.0, 0.5], [3.0, -1.0, 1.2]])
        labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        got = losses.correct_missing_labels(logits, labels, threshold=0.7, epoch=5)
        np.testing.assert_array_equal(got, [[1, 1, 0], [1, 1, 1]])
        self.assertEqual(got.dtype, labels.dtype)
        got_bool = losses.correct_missing_labels(logits, labels > 0, epoch=5)
        self.assertEqual(got_bool.dtype, jnp.bool_)


class ClmlLossTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("identity_distinct_labels", 1.0, [[1, 0], [0, 1]], 0.0),
        ("identity_one_shared_label", 1.0, [[1, 0], [1, 0]], 0.5),
        ("scaled_identity", 3.0, [[1, 0], [0, 1]], 0.0),
    )
    def test_oracles(self, scale, labels, want):
        fn = jax.jit(losses.clml_loss)
        got = fn(scale * jnp.eye(2), jnp.full((2, 2), -5.0), jnp.array(labels), epoch=0)
        self.assertEqual(got.shape, ())
        np.testing.assert_allclose(got, want, atol=1e-6)

    def test_matches_numpy_with_correction(self):
        rng = np.random.default_rng(70)
        features = rng.normal(size=(6, 4)).astype(np.float32)
        logits = (2 * rng.normal(size=(6, 5))).astype(np.float32)
        labels = (rng.random((6, 5)) < 0.3).astype(np.int32)
        labels[:, 4] = 0
        logits[:, 4] = -9.0  # label 4 has no member: contributes delta
        fn = jax.jit(functools.partial(losses.clml_loss, delta=1.5, lam=0.7))
        for epoch in (0, 3):
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

    def test_bad_inputs(self):
        with self.assertRaises(ValueError):
            losses.clml_loss(jnp.zeros((3, 4)), jnp.zeros((3, 2)), jnp.ones((3, 5)), epoch=0)
        with self.assertRaises(ValueError):
            losses.clml_loss(jnp.zeros((2, 4)), jnp.zeros((3, 2)), jnp.ones((3, 2)), epoch=0)
        with self.assertRaises(TypeError):
            losses.clml_loss(jnp.zeros((3, 4), jnp.int32), jnp.zeros((3, 2)), jnp.ones((3, 2)),
                             epoch=0)  # fmt: skip


class ModuleTest(parameterized.TestCase):
    def test_import_does_not_load_heavy_libraries(self):
        code = (
            "import sys, cgmvae_jax.losses\n"
            "heavy = sorted(m for m in sys.modules\n"
            "               if m.split('.')[0] in ('flax', 'optax', 'orbax', 'chex'))\n"
            "print(heavy)\n"
        )
        env = dict(os.environ, PYTHONPATH=_REPO_ROOT, JAX_PLATFORMS="cpu")
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=_REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "[]")

    @parameterized.named_parameters(
        (name, name) for name in ("_asl", "_clml", "_contrastive", "_gaussian", "_kmcl", "_mixture")
    )
    def test_docstring_examples(self, name):
        module = importlib.import_module(f"cgmvae_jax.losses.{name}")
        failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        self.assertGreater(attempted, 0)
        self.assertEqual(failures, 0)


if __name__ == "__main__":
    absltest.main()
