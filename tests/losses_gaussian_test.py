"""Tests for log_normal_diag and gaussian_kl: closed forms, float64 NumPy loops, gradients."""

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


def _np_log_normal(x, mean, log_var):
    x, mean, log_var = (np.asarray(a, np.float64) for a in (x, mean, log_var))
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (x - mean) ** 2 / np.exp(log_var))


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


class LogNormalDiagTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy(self):
        rng = np.random.default_rng(0)
        x, mean, log_var = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3))
        got = self.variant(losses.log_normal_diag)(x, mean, log_var)
        want = np.array([_np_log_normal(x[b], mean[b], log_var[b]) for b in range(4)])
        chex.assert_shape(got, (4,))
        chex.assert_trees_all_close(got, want.astype(np.float32), atol=_ATOL, rtol=1e-6)

    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy
    @parameterized.named_parameters(
        ("standard_at_zero", 0.0, 0.0, 0.0, -2.5 * math.log(2 * math.pi)),
        ("unit_offset", 1.0, 0.0, 0.0, -2.5 * math.log(2 * math.pi) - 2.5),
        ("variance_e", 0.0, 0.0, 1.0, -2.5 * math.log(2 * math.pi) - 2.5),
    )
    def test_closed_forms_in_five_dims(self, x, mean, log_var, want):
        got = self.variant(losses.log_normal_diag)(
            jnp.full(5, x), jnp.full(5, mean), jnp.full(5, log_var)
        )
        chex.assert_shape(got, ())
        chex.assert_trees_all_close(got, jnp.float32(want), rtol=1e-6)

    def test_broadcasts_leading_dims(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(2, 1, 3)).astype(np.float32)
        mean = rng.normal(size=(4, 3)).astype(np.float32)
        got = jax.jit(losses.log_normal_diag)(x, mean, jnp.zeros(3))
        chex.assert_shape(got, (2, 4))
        want = _np_log_normal(x[1, 0], mean[2], np.zeros(3))
        chex.assert_trees_all_close(got[1, 2], jnp.float32(want), rtol=1e-6)

    def test_gradients(self):
        rng = np.random.default_rng(2)
        args = _to64(*(rng.normal(size=(3, 2)) for _ in range(3)))
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(losses.log_normal_diag), args, order=1, modes=["rev"])


class GaussianKlTest(chex.TestCase):
    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy_and_is_non_negative
    @parameterized.named_parameters(
        # KL = d/2 * (delta mean)^2 for unit variances; 0 for identical Gaussians.
        ("identical", 0.0, 0.0, 0.0, 0.0, 0.0),
        ("unit_mean_shift", 0.0, 0.0, 1.0, 0.0, 1.5),
        # d/2 * (e^v - 1 - v) for q = N(0, e^v) against p = N(0, 1).
        ("variance_ratio", 0.0, 1.0, 0.0, 0.0, 1.5 * (math.e - 2.0)),
    )
    def test_closed_forms_in_three_dims(self, mean_q, log_var_q, mean_p, log_var_p, want):
        args = (jnp.full((1, 3), v) for v in (mean_q, log_var_q, mean_p, log_var_p))
        got = self.variant(losses.gaussian_kl)(*args)
        chex.assert_shape(got, (1,))
        chex.assert_trees_all_close(got, jnp.full((1,), want, jnp.float32), rtol=1e-6)

    def test_identical_gaussians_give_exact_zero(self):
        rng = np.random.default_rng(20)
        mean, log_var = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
        got = jax.jit(losses.gaussian_kl)(mean, log_var, mean, log_var)
        chex.assert_trees_all_equal(got, jnp.zeros(4))

    def test_directions_agree_when_variances_are_equal(self):
        rng = np.random.default_rng(21)
        mq, mp, v = (rng.normal(size=(3, 4)) for _ in range(3))
        fn = jax.jit(losses.gaussian_kl)
        chex.assert_trees_all_close(fn(mq, v, mp, v), fn(mp, v, mq, v), rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("float32", jnp.float32, _ATOL), ("bfloat16", jnp.bfloat16, 1e-4)
    )
    def test_matches_numpy_and_is_non_negative(self, dtype, atol):
        rng = np.random.default_rng(22)
        args = [jnp.asarray(rng.normal(size=(2, 3, 4)), dtype) for _ in range(4)]
        got = self.variant(losses.gaussian_kl)(*args)
        chex.assert_shape(got, (2, 3))
        chex.assert_type(got, jnp.float32)
        want = _np_gaussian_kl(*args).astype(np.float32)
        chex.assert_trees_all_close(got, want, atol=atol, rtol=1e-5)
        self.assertTrue(np.all(got >= 0))

    def test_gradients(self):
        rng = np.random.default_rng(23)
        args = _to64(*(rng.normal(size=(3, 2)) for _ in range(4)))
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(losses.gaussian_kl), args, order=1, modes=["rev"])


if __name__ == "__main__":
    absltest.main()
