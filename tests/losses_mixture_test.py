"""Tests for the mixture prior: gaussian_mixture_log_density and mixture_kl_single_sample.

References are float64 NumPy: a loop over components for the plain cases, and closed-form
values and gradients on a grid of variances, means and samples that breaks the float32
expansion of the quadratic form (the exactness grid).
"""

import functools
import math
import operator
from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import test_util as jtu

from cgmvae_jax import losses
from cgmvae_jax.losses import _active_pairs, _mixture

_ATOL = 1e-5
_LOG_2PI = math.log(2 * math.pi)


def _to64(*arrays):
    return tuple(np.asarray(a, np.float64) for a in arrays)


# ------------------------------------------------------------------------------------------------
# Float64 NumPy references.


def _np_log_normal(x, mean, log_var):
    x, mean, log_var = _to64(x, mean, log_var)
    return -0.5 * np.sum(_LOG_2PI + log_var + (x - mean) ** 2 / np.exp(log_var))


def _np_mixture_loop(z, means, log_vars, mask):
    """z [B, d]; means, log_vars [K, d] or [B, K, d]; mask [B, K] -> [B], a loop."""
    out = []
    for b in range(z.shape[0]):
        m = means if means.ndim == 2 else means[b]
        v = log_vars if log_vars.ndim == 2 else log_vars[b]
        vals = [_np_log_normal(z[b], m[k], v[k]) for k in range(m.shape[0]) if mask[b, k]]
        if not vals:
            out.append(-np.inf)
            continue
        top = max(vals)
        out.append(top + math.log(np.mean(np.exp(np.array(vals) - top))))
    return np.array(out)


def _np_mixture_with_gradients(z, mean, log_var, means, log_vars, mask, g):
    """Values, gradients of sum(g * f) and their scales (sums of |terms|), float64.

    Returns dicts for f = log p (inputs z, means, log_vars) and f = the KL estimate (inputs
    z, mean, log_var, means, log_vars). The scale of an entry is the float64 sum of the
    absolute values of the terms that make it up: a float32 computation is at best accurate
    relative to it, not to the (possibly cancelled) sum.
    """
    z, mean, log_var, means, log_vars, g = _to64(z, mean, log_var, means, log_vars, g)
    diff = z[:, None, :] - means  # [B, K, d]
    precision = np.exp(-log_vars)  # [K, d]
    comp = -0.5 * np.sum(_LOG_2PI + log_vars + diff**2 * precision, axis=-1)  # [B, K]
    has_any = mask.any(-1)
    top = np.max(np.where(mask, comp, -np.inf), axis=-1, initial=-np.inf)
    top = np.where(has_any, top, 0.0)
    weights = np.exp(np.where(mask, comp, -np.inf) - top[:, None])  # 0 where inactive
    total = np.where(has_any, weights.sum(-1), 1.0)
    log_p = np.where(has_any, top + np.log(total) - np.log(np.maximum(mask.sum(-1), 1)), -np.inf)
    w = g[:, None] * weights / total[:, None]  # [B, K]
    scaled = diff * precision  # [B, K, d]
    mix = {
        "value": log_p,
        "value_scale": np.abs(log_p),
        "grads": (
            -np.einsum("bk,bkd->bd", w, scaled),
            np.einsum("bk,bkd->kd", w, scaled),
            -0.5 * np.einsum("bk,bkd->kd", w, 1.0 - diff * scaled),
        ),
        "scales": (
            np.einsum("bk,bkd->bd", np.abs(w), np.abs(scaled)),
            np.einsum("bk,bkd->kd", np.abs(w), np.abs(scaled)),
            0.5 * np.einsum("bk,bkd->kd", np.abs(w), 1.0 + diff * scaled),
        ),
    }
    q_diff, q_precision = z - mean, np.exp(-log_var)
    log_q = -0.5 * np.sum(_LOG_2PI + log_var + q_diff**2 * q_precision, axis=-1)
    gq = np.where(has_any, g, 0.0)[:, None]  # rows without a component give KL 0
    keep = has_any[:, None]
    kl = {
        "value": np.where(has_any, log_q - np.where(has_any, log_p, 0.0), 0.0),
        "value_scale": np.where(has_any, np.abs(log_q) + np.abs(np.where(has_any, log_p, 0)), 0),
        "grads": (
            -gq * q_diff * q_precision - keep * mix["grads"][0],
            gq * q_diff * q_precision,
            -0.5 * gq * (1.0 - q_diff**2 * q_precision),
            -mix["grads"][1],
            -mix["grads"][2],
        ),
        "scales": (
            np.abs(gq * q_diff * q_precision) + mix["scales"][0],
            np.abs(gq * q_diff * q_precision),
            0.5 * np.abs(gq) * (1.0 + q_diff**2 * q_precision),
            mix["scales"][1],
            mix["scales"][2],
        ),
    }
    return mix, kl


def _assert_within(test, got, want, scale, what):
    """|got - want| <= max(1e-3, 1e-4 * scale) wherever `want` is finite; equal elsewhere."""
    got, want, scale = np.asarray(got, np.float64), np.asarray(want, np.float64), scale
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=what)
    error = np.abs(got[finite] - want[finite])
    bound = np.maximum(1e-3, 1e-4 * np.abs(np.broadcast_to(scale, want.shape)[finite]))
    test.assertTrue(np.all(error <= bound), f"{what}: worst error / bound {np.max(error / bound)}")


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


# Gradients of the plain sums, with the mask as an argument: one compilation per shape.
_DENSITY_SUM_GRAD = jax.jit(
    jax.grad(lambda *a: jnp.sum(losses.gaussian_mixture_log_density(*a)), argnums=(0, 1, 2))
)
_KL_SUM_GRAD = jax.jit(
    jax.grad(lambda *a: jnp.sum(losses.mixture_kl_single_sample(*a)), argnums=range(5))
)


def _reference_sum(z, means, log_vars, mask):
    values = _mixture._gaussian_mixture_log_density_reference(z, means, log_vars, mask)
    return jnp.sum(jnp.where(jnp.any(mask, axis=-1), values, 0.0))


_REFERENCE_SUM_AND_GRAD = jax.jit(jax.value_and_grad(_reference_sum, argnums=(0, 1, 2)))


def _mixture_sum(z, means, log_vars, mask):
    """Sum over the rows that have a component (the caller's masked reduction)."""
    values = losses.gaussian_mixture_log_density(z, means, log_vars, mask)
    return jnp.sum(jnp.where(jnp.any(mask, axis=-1), values, 0.0))


# ------------------------------------------------------------------------------------------------
# Exactness over variances, means and samples: values and gradients against float64.

_GRID_SHAPE = dict(batch=16, num_components=12, dim=32)


def _grid_inputs(log_var, spread, seed):
    """Components with log-variance ~ `log_var` and means in [-spread, spread]; samples drawn
    near their component (one standard deviation, even rows) or far from it (4 units per
    dimension, odd rows)."""
    rng = np.random.default_rng(seed)
    batch, num_components, dim = _GRID_SHAPE.values()
    means = rng.uniform(-spread, spread, size=(num_components, dim))
    log_vars = log_var + 0.1 * rng.normal(size=(num_components, dim))
    owner = rng.integers(0, num_components, size=batch)
    near = (np.arange(batch) % 2 == 0)[:, None]
    noise = np.where(near, np.exp(0.5 * log_vars[owner]), 4.0)
    z = means[owner] + noise * rng.normal(size=(batch, dim))
    mean, log_var_q = z + 0.5 * rng.normal(size=z.shape), rng.normal(size=z.shape)
    mask = rng.random((batch, num_components)) < 0.3
    mask[np.arange(batch), owner] = True
    mask[0] = True  # all active
    mask[1] = False  # none
    mask[2] = np.arange(num_components) == owner[2]  # exactly one
    g = rng.normal(size=batch)
    as32 = lambda a: np.asarray(a, np.float32)
    return tuple(map(as32, (z, mean, log_var_q, means, log_vars))) + (mask, as32(g))


def _values_and_grads(fn, args, mask, g):
    """`fn(*args, mask)` and the gradients of sum(g * fn) over rows with a component."""

    def total(*a):
        values = fn(*a, mask)
        return jnp.sum(jnp.where(jnp.any(mask, -1), g * values, 0.0)), values

    argnums = tuple(range(len(args)))
    (_, values), grads = jax.value_and_grad(total, argnums=argnums, has_aux=True)(*args)
    return values, grads


# Shared components take one of two exact paths (`_active_pairs`): the active pairs only
# (sparse masks) or all pairs by chunks (dense masks). Tests pin the path by patching the
# density threshold, read when tracing; each path has its own jitted function (trace cache).
_PATHS = {"active_pairs": 1.0, "all_pairs": -1.0}  # the fraction of K that is dense


def _grid_values_and_grads(z, mean, log_var, means, log_vars, mask, g):
    """log p, the KL estimate, and the gradients of sum(g * KL) (one program for both)."""
    log_p = losses.gaussian_mixture_log_density(z, means, log_vars, mask)
    kl_args = (z, mean, log_var, means, log_vars)
    kl, grads = _values_and_grads(losses.mixture_kl_single_sample, kl_args, mask, g)
    return log_p, kl, grads


_grid_program = {path: jax.jit(lambda *a: _grid_values_and_grads(*a)) for path in _PATHS}


def _pinned(path):
    return mock.patch.object(_active_pairs, "_DENSE_FRACTION", _PATHS[path])


class ExactnessGridTest(parameterized.TestCase):
    """Values and gradients within max(1e-3, 1e-4 * scale) of float64, for every variance.

    The matrix-product expansion of the quadratic form fails this grid by up to 10^5 tolerances
    at log-variance -15 with spread-out means (its terms are ~(z^2 + m^2)/var each).
    """

    @parameterized.named_parameters(
        (f"logvar{lv}_{'spread50' if spread > 10 else 'spread4'}_{path}", lv, spread, path)
        for lv in (-15, -8, -4, 0, 4, 15)
        for spread in (4.0, 50.0)
        for path in _PATHS
    )  # fmt: skip
    def test_values_and_gradients_match_float64(self, log_var, spread, path):
        z, mean, log_var_q, means, log_vars, mask, g = _grid_inputs(
            log_var, spread, seed=abs(log_var) * 4 + int(spread)
        )
        want_mix, want_kl = _np_mixture_with_gradients(z, mean, log_var_q, means, log_vars, mask, g)
        with _pinned(path):
            log_p, kl, grads = _grid_program[path](z, mean, log_var_q, means, log_vars, mask, g)
        chex.assert_shape(log_p, (z.shape[0],))
        self.assertEqual(log_p[1], -np.inf)  # the row without a component
        self.assertEqual(float(kl[1]), 0.0)
        _assert_within(self, log_p, want_mix["value"], want_mix["value_scale"], "log p")
        _assert_within(self, kl, want_kl["value"], want_kl["value_scale"], "KL")
        # d KL / d prior parameters = -d log p / d them; d KL / d z also has log p's part.
        names = ("z", "mean", "log_var", "prior_means", "prior_log_vars")
        for name, got, want, scale in zip(
            names, grads, want_kl["grads"], want_kl["scales"], strict=True
        ):
            _assert_within(self, got, want, scale, f"d KL / d {name}")

    def test_rows_with_more_active_components_than_slots(self):
        # Several while-loop steps (5 slots each: 12 active components take 3, the last one
        # partly used) and mask blocks (5 columns, the last one 2 wide): rows with 0, 1, 6 and
        # all 12 active components.
        max_slots, block = 5, 5
        z, mean, log_var_q, means, log_vars, mask, g = _grid_inputs(-8, 50.0, seed=5)
        mask[3] = np.arange(12) % 2 == 1
        want_mix, _ = _np_mixture_with_gradients(z, mean, log_var_q, means, log_vars, mask, g)
        density = losses.gaussian_mixture_log_density
        patches = dict(_MAX_SLOTS=max_slots, _BLOCK=block, _DENSE_FRACTION=1.0)  # active pairs
        with mock.patch.multiple(_active_pairs, **patches):  # read when tracing
            values, grads = jax.jit(lambda *a: _values_and_grads(density, *a))(
                (z, means, log_vars), mask, g
            )
        _assert_within(self, values, want_mix["value"], want_mix["value_scale"], "log p")
        for got, want, scale in zip(grads, want_mix["grads"], want_mix["scales"], strict=True):
            _assert_within(self, got, want, scale, "gradient")


# ------------------------------------------------------------------------------------------------


class GaussianMixtureLogDensityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("shared", False), ("per_example", True))
    def test_matches_numpy_loop(self, per_example):
        z, means, log_vars, mask = _random_mixture_inputs(3, per_example=per_example)
        mask[1] = False  # a row with nothing active
        got = self.variant(losses.gaussian_mixture_log_density)(z, means, log_vars, mask)
        chex.assert_shape(got, (5,))
        chex.assert_type(got, jnp.float32)
        self.assertEqual(got[1], -np.inf)
        want = _np_mixture_loop(z, means, log_vars, mask)
        chex.assert_trees_all_close(got, want.astype(np.float32), atol=_ATOL, rtol=1e-5)

    @parameterized.named_parameters((path, path) for path in _PATHS)
    def test_shared_paths_equal_broadcast_form(self, path):
        # Rows with all, exactly one, no and a random half of the components active.
        z, means, log_vars, mask = _random_mixture_inputs(4, batch=6, num_components=11, dim=8)
        mask[2] = False
        fast = functools.partial(_mixture_sum, mask=mask)
        args = (z, means, log_vars)
        with _pinned(path):
            got = jax.jit(jax.value_and_grad(fast, argnums=(0, 1, 2)))(*args)
        want = _REFERENCE_SUM_AND_GRAD(*args, mask)
        chex.assert_trees_all_close(got, want, atol=1e-4, rtol=1e-5)

    def test_shared_components_do_not_materialise_batch_by_component_by_dim(self):
        batch, num_components, dim = 64, 2048, 32
        z, means, log_vars, mask = _random_mixture_inputs(
            0, batch=batch, num_components=num_components, dim=dim
        )
        size = batch * num_components * dim
        grad = jax.grad(functools.partial(_mixture_sum, mask=mask), argnums=(0, 1, 2))
        self.assertLess(_max_intermediate_size(jax.make_jaxpr(grad)(z, means, log_vars)), size)
        slow = jax.make_jaxpr(_mixture._gaussian_mixture_log_density_reference)(
            z, means, log_vars, mask
        )
        self.assertGreaterEqual(_max_intermediate_size(slow), size)  # the check can fail

    @parameterized.named_parameters(
        ("one_active", [1, 0, 0, 0]), ("two_active", [0, 1, 1, 0]), ("all_active", [1, 1, 1, 1])
    )
    def test_inactive_components_do_not_change_result(self, active):
        rng = np.random.default_rng(4)
        z = rng.normal(size=(1, 3)).astype(np.float32)
        means = rng.normal(size=(4, 3)).astype(np.float32)
        log_vars = rng.normal(size=(4, 3)).astype(np.float32)
        mask = np.array([active], bool)
        fn = jax.jit(losses.gaussian_mixture_log_density)
        base = fn(z, means, log_vars, mask)
        means2, log_vars2 = means.copy(), log_vars.copy()
        means2[~mask[0]] = 30.0 * rng.normal(size=(int((~mask[0]).sum()), 3))
        log_vars2[~mask[0]] = -5.0
        chex.assert_trees_all_close(fn(z, means2, log_vars2, mask), base, rtol=1e-6)
        extra_means = np.concatenate([means, 50.0 * np.ones((3, 3), np.float32)])
        extra_log_vars = np.concatenate([log_vars, -3.0 * np.ones((3, 3), np.float32)])
        extra_mask = np.concatenate([mask, np.zeros((1, 3), bool)], axis=1)
        chex.assert_trees_all_close(
            fn(z, extra_means, extra_log_vars, extra_mask), base, atol=_ATOL, rtol=1e-6
        )

    @parameterized.named_parameters((path, path) for path in _PATHS)
    def test_shared_inactive_components_are_never_read(self, path):
        # Shared components are evaluated on active pairs only: inactive ones may hold
        # anything, even inf and NaN, without reaching a value or a gradient.
        z, means, log_vars, mask = _random_mixture_inputs(5, batch=6, num_components=9, dim=4)
        mask[:, 4:] = False
        mask[:, 0] = True
        bad_means, bad_log_vars = means.copy(), log_vars.copy()
        bad_means[4:], bad_log_vars[4:] = np.nan, np.inf
        fn = jax.jit(jax.value_and_grad(functools.partial(_mixture_sum, mask=mask), (0, 1, 2)))
        with _pinned(path):
            value, grads = fn(z, bad_means, bad_log_vars)
        chex.assert_tree_all_finite((value, grads))
        want_value, want_grads = fn(z, means, log_vars)
        chex.assert_trees_all_close((value, grads), (want_value, want_grads), rtol=1e-6)
        np.testing.assert_array_equal(grads[1][4:], 0.0)

    @chex.variants(with_jit=True)  # the no-jit path: test_matches_numpy_loop
    def test_two_equal_components_minus_log_two_relative_to_one(self):
        z = jnp.zeros((1, 4))
        means = jnp.stack([jnp.zeros(4), jnp.full(4, 100.0)])
        fn = self.variant(losses.gaussian_mixture_log_density)
        one = fn(z, means, jnp.zeros((2, 4)), jnp.array([[1, 0]]))
        two = fn(z, means, jnp.zeros((2, 4)), jnp.array([[1, 1]]))
        chex.assert_trees_all_close(one - two, jnp.array([math.log(2)]), atol=_ATOL)
        chex.assert_trees_all_close(one, jnp.array([-2 * _LOG_2PI]), atol=_ATOL)

    @parameterized.named_parameters(("shared", False), ("per_example", True))
    def test_empty_rows_give_minus_inf_and_exactly_zero_gradients(self, per_example):
        z, means, log_vars, mask = _random_mixture_inputs(6, per_example=per_example)
        mask[2] = False
        fn = losses.gaussian_mixture_log_density
        values = jax.jit(fn)(z, means, log_vars, mask)
        self.assertEqual(values[2], -np.inf)
        # Summed with the -inf rows in: their gradient is exactly zero, not NaN.
        grads = _DENSITY_SUM_GRAD(z, means, log_vars, mask)
        chex.assert_tree_all_finite(grads)
        np.testing.assert_array_equal(grads[0][2], 0.0)
        self.assertGreater(np.abs(grads[0][0]).sum(), 0.0)
        empty = np.zeros_like(mask)
        self.assertTrue(np.all(jax.jit(fn)(z, means, log_vars, empty) == -np.inf))
        grads = _DENSITY_SUM_GRAD(z, means, log_vars, empty)
        chex.assert_trees_all_equal(grads, jax.tree.map(np.zeros_like, grads))

    def test_gradients_match_finite_differences_per_example(self):
        # Shared components: MixtureKlSingleSampleTest checks their custom VJP on each path.
        z, means, log_vars, mask = _random_mixture_inputs(7, per_example=True)
        mask[:, 0] = True  # no -inf rows inside check_grads
        fn = lambda z, m, v: losses.gaussian_mixture_log_density(z, m, v, mask)
        with jax.enable_x64(True):
            jtu.check_grads(jax.jit(fn), _to64(z, means, log_vars), order=1, modes=["rev"])

    def test_vmap_and_leading_batch_dims(self):
        fn = losses.gaussian_mixture_log_density
        z, means, log_vars, mask = _random_mixture_inputs(9, batch=6)
        flat = jax.jit(fn)(z, means, log_vars, mask)
        mapped = jax.jit(jax.vmap(fn, in_axes=(0, None, None, 0)))(z, means, log_vars, mask)
        chex.assert_trees_all_close(mapped, flat, atol=_ATOL, rtol=1e-6)
        shaped = jax.jit(fn)(z.reshape(2, 3, -1), means, log_vars, mask.reshape(2, 3, -1))
        chex.assert_shape(shaped, (2, 3))
        chex.assert_trees_all_close(shaped.reshape(-1), flat, rtol=1e-6)
        many = jax.jit(fn)(z[:1], means, log_vars, mask)  # one sample, many masks
        chex.assert_shape(many, (6,))
        chex.assert_trees_all_close(many[0], flat[0], rtol=1e-6)

    def test_vmap_over_seeds_with_a_shared_mask(self):
        # Training with several seeds: components and samples per seed, one label mask.
        z, means, log_vars, mask = _random_mixture_inputs(11, batch=6, num_components=9, dim=4)
        stacked = [np.stack([a, 0.5 * a[::-1]]) for a in (z, means, log_vars)]  # [S=2, ...]
        grad = jax.value_and_grad(functools.partial(_mixture_sum, mask=mask), argnums=(0, 1, 2))
        mapped = jax.jit(jax.vmap(grad))(*stacked)
        for seed in range(2):
            one = jax.jit(grad)(*(a[seed] for a in stacked))
            chex.assert_trees_all_close(
                jax.tree.map(operator.itemgetter(seed), mapped),
                one,
                atol=1e-5,
                rtol=1e-5,
            )

    def test_bfloat16_inputs(self):
        z, means, log_vars, mask = _random_mixture_inputs(10)
        as_bf16 = [jnp.asarray(a, jnp.bfloat16) for a in (z, means, log_vars)]
        got = jax.jit(losses.gaussian_mixture_log_density)(*as_bf16, mask)
        chex.assert_type(got, jnp.float32)
        want = _np_mixture_loop(*_to64(*as_bf16), mask)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


class MixtureKlSingleSampleTest(chex.TestCase):
    @chex.variants(with_jit=True)  # the no-jit path: the docstring example
    @parameterized.named_parameters(("near", 0.1), ("far", 4.0))
    def test_zero_when_single_active_component_equals_q(self, scale):
        rng = np.random.default_rng(11)
        mean = rng.normal(size=(3, 4)).astype(np.float32)
        log_var = (0.3 * rng.normal(size=(3, 4))).astype(np.float32)
        z = (mean + scale * rng.normal(size=(3, 4))).astype(np.float32)
        prior_means = np.stack([mean, rng.normal(size=(3, 4))], axis=1).astype(np.float32)
        prior_log_vars = np.stack([log_var, rng.normal(size=(3, 4))], axis=1).astype(np.float32)
        mask = np.array([[1, 0]] * 3)
        fn = self.variant(losses.mixture_kl_single_sample)
        got = fn(z, mean, log_var, prior_means, prior_log_vars, mask)
        chex.assert_trees_all_close(got, np.zeros(3, np.float32), atol=_ATOL)
        # Shared prior: the first component equals q for example 0.
        got = fn(z[:1], mean[:1], log_var[:1], prior_means[0], prior_log_vars[0], mask[:1])
        chex.assert_trees_all_close(got, np.zeros(1, np.float32), atol=_ATOL)

    @chex.variants(with_jit=True)  # the no-jit path: the docstring example
    def test_log_two_with_one_equal_and_one_far_component(self):
        z = jnp.array([[0.3, -1.2, 0.5]])
        mean, log_var = jnp.zeros((1, 3)), jnp.zeros((1, 3))
        prior_means = jnp.stack([jnp.zeros(3), jnp.full(3, 100.0)])
        got = self.variant(losses.mixture_kl_single_sample)(
            z, mean, log_var, prior_means, jnp.zeros((2, 3)), jnp.array([[1, 1]])
        )
        chex.assert_trees_all_close(got, jnp.array([0.6931472]), atol=_ATOL)

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
        got = fn(z, mean, log_var, more_means, more_log_vars, more_mask)
        chex.assert_trees_all_close(got, base, atol=_ATOL)

    @chex.variants(with_jit=True)  # the no-jit path: the docstring example
    @parameterized.named_parameters(("shared", False), ("per_example", True))
    def test_matches_numpy(self, per_example):
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(13, per_example=per_example)
        rng = np.random.default_rng(13)
        mean = rng.normal(size=z.shape).astype(np.float32)
        log_var = (0.5 * rng.normal(size=z.shape)).astype(np.float32)
        got = self.variant(losses.mixture_kl_single_sample)(
            z, mean, log_var, prior_means, prior_log_vars, mask
        )
        log_q = [_np_log_normal(z[b], mean[b], log_var[b]) for b in range(len(z))]
        want = np.array(log_q) - _np_mixture_loop(z, prior_means, prior_log_vars, mask)
        chex.assert_shape(got, (5,))
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)

    @parameterized.named_parameters(("shared", False), ("per_example", True))
    def test_empty_rows_give_exact_zero_and_zero_gradients(self, per_example):
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(14, per_example=per_example)
        mask[3] = False
        mean, log_var = z + 0.5, z * 0.1
        fn = losses.mixture_kl_single_sample
        args = (z, mean, log_var, prior_means, prior_log_vars)
        self.assertEqual(float(jax.jit(fn)(*args, mask)[3]), 0.0)
        grads = _KL_SUM_GRAD(*args, mask)
        chex.assert_tree_all_finite(grads)
        for g in grads[:3]:
            np.testing.assert_array_equal(g[3], 0.0)
        grads = _KL_SUM_GRAD(*args, np.zeros_like(mask))
        chex.assert_trees_all_equal(grads, jax.tree.map(np.zeros_like, grads))

    @parameterized.named_parameters((path, path) for path in _PATHS)
    def test_gradients_match_finite_differences(self, path):
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(15)
        mask[1] = False  # an empty row: its gradient is exactly zero
        mean, log_var = z * 0.5, z * 0.2
        fn = lambda *a: losses.mixture_kl_single_sample(*a, mask)
        args = _to64(z, mean, log_var, prior_means, prior_log_vars)
        with jax.enable_x64(True), _pinned(path):
            jtu.check_grads(jax.jit(fn), args, order=1, modes=["rev"])

    def test_vmap_and_bfloat16(self):
        fn = losses.mixture_kl_single_sample
        z, prior_means, prior_log_vars, mask = _random_mixture_inputs(16)
        args = (z, z * 0.5, z * 0.2, prior_means, prior_log_vars)
        want = jax.jit(fn)(*args, mask)
        mapped = jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, None, None, 0)))(*args, mask)
        chex.assert_trees_all_close(mapped, want, atol=_ATOL)
        as_bf16 = [jnp.asarray(a, jnp.bfloat16) for a in args]
        got = jax.jit(fn)(*as_bf16, mask)
        chex.assert_type(got, jnp.float32)
        want = jax.jit(fn)(*(jnp.asarray(a, jnp.float32) for a in as_bf16), mask)
        chex.assert_trees_all_close(got, want, atol=_ATOL)


if __name__ == "__main__":
    absltest.main()
