"""Tests for log_normal_diag and gaussian_kl: closed forms, float64 NumPy loops, gradients."""

import math

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


if __name__ == "__main__":
    absltest.main()
