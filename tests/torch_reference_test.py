"""Tests for benchmarks/torch_reference.py (needs torch) and benchmarks/hardware.py (does not)."""

import dataclasses
import datetime
import importlib.util
import inspect
import math
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

from benchmarks import hardware
from tests import helpers

_HAS_TORCH = importlib.util.find_spec("torch") is not None
_NO_TORCH = "torch is not installed (pip install torch==2.13.0; see the `bench` extra)"

if _HAS_TORCH:
    import torch

    from benchmarks import torch_reference

# Small shapes: B, F, L, E, d and hidden sizes.
_SMALL = dict(
    embedding_dim=16,
    latent_dim=4,
    feature_hidden=(12, 10),
    label_hidden=(12,),
    decoder_hidden=(14,),
)


class _FakeClock:
    """A clock that only advances when a timed function says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class HardwareTest(parameterized.TestCase):
    def test_machine_info_keys(self):
        info = hardware.machine_info()
        for key in (
            "cpu_model",
            "cpu_count",
            "available_cores",
            "ram_gb",
            "load_average_1min",
            "python",
            "jax_version",
            "jaxlib_version",
            "flax_version",
            "optax_version",
            "torch_version",
            "date_utc",
        ):
            self.assertIn(key, info)
        self.assertGreaterEqual(info["cpu_count"], 1)
        self.assertBetween(info["available_cores"], 1, info["cpu_count"])
        self.assertIsNotNone(info["jax_version"])
        if _HAS_TORCH:
            self.assertIsNotNone(info["torch_version"])
        date = datetime.datetime.fromisoformat(info["date_utc"])
        self.assertEqual(date.utcoffset(), datetime.timedelta(0))

    def test_wait_for_quiet_returns_once_the_load_falls(self):
        loads = iter([3.0, 2.5, 0.5])
        logged = []
        with (
            mock.patch.object(hardware, "load_average", lambda: next(loads)),
            mock.patch.object(hardware.time, "sleep") as sleep,
        ):
            hardware.wait_for_quiet(1.0, 3600, log=logged.append)
        self.assertEqual(sleep.call_count, 2)
        self.assertLen(logged, 2)
        self.assertEqual(hardware.wait_for_quiet(0.0, 3600), 0.0)  # 0: no wait

    def test_interleaved_timing_order_and_rates(self):
        clock = _FakeClock()
        log = []

        def make(name, seconds):
            def fn():
                log.append(name)
                clock.now += seconds

            return fn

        fns = {"a": make("a", 0.1), "b": make("b", 0.3)}
        out = hardware.interleaved_timing(
            fns, repeats=2, min_seconds=0.25, steps_per_call={"a": 10, "b": 2}, clock=clock
        )
        # One warm-up call each, then per round: a until >= 0.25 s (3 calls), b once (0.3 s).
        self.assertEqual(log, ["a", "b"] + ["a", "a", "a", "b"] * 2)
        np.testing.assert_allclose(out["a"], [30 / 0.3] * 2, rtol=1e-9)
        np.testing.assert_allclose(out["b"], [2 / 0.3] * 2, rtol=1e-9)

    def test_median_ratio_cancels_drift(self):
        clock = _FakeClock()
        slowdown = iter([1.0, 1.0, 4.0, 4.0, 1.5, 1.5, 9.0, 9.0, 2.0, 2.0])  # per call, per round

        def make(seconds):
            def fn():
                clock.now += seconds * next(slowdown)

            return fn

        out = hardware.interleaved_timing(
            {"fast": make(0.1), "slow": make(0.3)},
            repeats=5,
            min_seconds=0.0,
            warmup_calls=0,
            clock=clock,
        )
        # The machine's speed changes between rounds but both functions see the same speed.
        self.assertLen(out["fast"], 5)
        self.assertAlmostEqual(hardware.median_ratio(out, "fast", "slow"), 3.0, places=9)
        summary = hardware.summarize(out)
        self.assertAlmostEqual(summary["fast"]["median"], 1 / (0.1 * 2.0), places=9)
        self.assertAlmostEqual(summary["fast"]["max"], 10.0, places=9)
        self.assertAlmostEqual(summary["slow"]["min"], 1 / (0.3 * 9.0), places=9)

    def test_interleaved_timing_rejects_zero_repeats(self):
        with self.assertRaises(ValueError):
            hardware.interleaved_timing({"a": lambda: None}, repeats=0)

    def test_jax_matmul_peak_is_positive(self):
        flops = hardware.measure_matmul_peak_flops(size=64, repeats=2, chain=2)
        self.assertTrue(math.isfinite(flops))
        self.assertGreater(flops, 1e6)


@absltest.skipUnless(_HAS_TORCH, _NO_TORCH)
class TorchReferenceTest(parameterized.TestCase):
    def _model(self, dropout_rate=0.5, seed=0, **kwargs):
        return torch_reference.build(
            6, 5, dropout_rate=dropout_rate, seed=seed, num_threads=1, **_SMALL, **kwargs
        )

    def test_output_shapes(self):
        model, _ = self._model()
        x, y = torch_reference.synthetic_batch(7, 6, 5)
        out = model(x, y)
        for name in ("label_logits", "feat_logits", "feat_logits2"):
            self.assertEqual(tuple(out[name].shape), (7, 5))
        for name in ("label_emb", "feat_emb", "feat_emb2"):
            self.assertEqual(tuple(out[name].shape), (7, 16))
        for name in ("mean_x", "log_var_x"):
            self.assertEqual(tuple(out[name].shape), (7, 4))
        for name in ("mean_e", "log_var_e"):
            self.assertEqual(tuple(out[name].shape), (5, 4))

    def test_decoder_output_unit_norm_and_logit_bound(self):
        model, _ = self._model()
        x, y = torch_reference.synthetic_batch(7, 6, 5)
        with torch.no_grad():
            out = model(x, y)
        for name in ("label_emb", "feat_emb", "feat_emb2"):
            np.testing.assert_allclose(out[name].norm(dim=-1).numpy(), 1.0, atol=1e-6)
        col_norms = model.label_lookup.weight.norm(dim=0)  # [L]
        self.assertTrue(bool((out["feat_logits"].abs() <= col_norms + 1e-6).all()))

    def test_label_latent_is_mean_of_active_means(self):
        model, _ = self._model()
        model.eval()  # no dropout: the label encoder is deterministic
        x = torch.randn(1, 6)
        y = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
        with torch.no_grad():
            out = model(x, y)
            mean_e, _ = model.encode_labels()
            expected = model.decode(x, (mean_e[0:1] + mean_e[2:3]) / 2)
        np.testing.assert_allclose(out["label_emb"].numpy(), expected.numpy(), atol=1e-6)

    def test_eval_mode_is_deterministic(self):
        model, _ = self._model()
        model.eval()
        x, y = torch_reference.synthetic_batch(4, 6, 5)
        with torch.no_grad():
            a, b = model(x, y), model(x, y)
        np.testing.assert_array_equal(a["feat_logits"].numpy(), b["feat_logits"].numpy())
        np.testing.assert_array_equal(a["feat_logits"].numpy(), a["feat_logits2"].numpy())

    def test_loss_finite_with_empty_row(self):
        model, _ = self._model()
        x, y = torch_reference.synthetic_batch(5, 6, 5)
        y[2] = 0.0  # a row with no positive label
        terms = torch_reference.loss_terms(model(x, y), y)
        loss = torch_reference.total_loss(terms)
        for name, value in terms.items():
            self.assertTrue(math.isfinite(value.item()), name)
        loss.backward()
        for name, p in model.named_parameters():
            self.assertTrue(bool(torch.isfinite(p.grad).all()), name)

    def test_build_is_seeded(self):
        m1, _ = self._model(seed=3)
        m2, _ = self._model(seed=3)
        m3, _ = self._model(seed=4)
        w1, w2, w3 = (m.label_lookup.weight.detach() for m in (m1, m2, m3))
        np.testing.assert_array_equal(w1.numpy(), w2.numpy())
        self.assertFalse(torch.equal(w1, w3))

    def test_torch_default_init_range(self):
        model, _ = self._model()
        layer = model.decoder_layers[0]  # fan_in = F + d = 10
        bound = 1 / math.sqrt(10)
        self.assertLessEqual(layer.weight.abs().max().item(), bound)
        self.assertLessEqual(layer.bias.abs().max().item(), bound)

    def test_one_step_changes_every_parameter(self):
        model, optimizer = self._model()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        x, y = torch_reference.synthetic_batch(8, 6, 5)
        loss = torch_reference.train_step(model, optimizer, x, y)
        self.assertTrue(math.isfinite(loss))
        for name, p in model.named_parameters():
            self.assertFalse(torch.equal(before[name], p.detach()), name)

    def test_loss_decreases(self):
        model, optimizer = self._model(dropout_rate=0.0, lr=3e-3)
        x, y = torch_reference.synthetic_batch(16, 6, 5, positives_per_row=2)
        losses = [torch_reference.train_step(model, optimizer, x, y) for _ in range(20)]
        self.assertLess(np.mean(losses[-3:]), 0.8 * np.mean(losses[:3]))

    def test_coupled_weight_decay(self):
        # Coupled L2: the decay enters the gradient before Adam's moments, so a parameter with
        # zero loss gradient takes a first step of -lr * g / (|g| + eps) with g = wd * param.
        _, optimizer = self._model()
        self.assertEqual(optimizer.defaults["weight_decay"], 1e-5)
        self.assertFalse(optimizer.defaults["decoupled_weight_decay"])
        p = torch.nn.Parameter(torch.tensor([2.0, -3.0]))
        opt = torch.optim.Adam([p], lr=0.1, weight_decay=1e-5)
        p.grad = torch.zeros(2)
        opt.step()
        g = 1e-5 * np.array([2.0, -3.0])
        expected = np.array([2.0, -3.0]) - 0.1 * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(p.detach().numpy(), expected, atol=1e-6)

    @parameterized.named_parameters(("broadcast", False), ("matmul", True))
    def test_kl_zero_for_identical_gaussian(self, matmul):
        gen = torch.Generator().manual_seed(0)
        mean_x = torch.randn(3, 4, generator=gen)
        log_var_x = torch.randn(3, 4, generator=gen)
        z = torch.randn(3, 4, generator=gen) * 3
        # Label l (one per row) has exactly the posterior's Gaussian.
        mean_e, log_var_e = mean_x.clone(), log_var_x.clone()
        y = torch.eye(3)
        kl = torch_reference.mixture_kl_single_sample(
            z, mean_x, log_var_x, mean_e, log_var_e, y, matmul=matmul
        )
        np.testing.assert_allclose(kl.numpy(), 0.0, atol=1e-5)

    @parameterized.named_parameters(("broadcast", False), ("matmul", True))
    def test_kl_log2_with_far_second_label(self, matmul):
        mean_x = torch.zeros(1, 2)
        log_var_x = torch.zeros(1, 2)
        z = torch.tensor([[0.3, -0.2]])
        mean_e = torch.tensor([[0.0, 0.0], [100.0, 100.0], [7.0, -3.0]])
        log_var_e = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-50.0, 40.0]])
        y = torch.tensor([[1.0, 1.0, 0.0]])  # the third label is inactive, arbitrary params
        kl = torch_reference.mixture_kl_single_sample(
            z, mean_x, log_var_x, mean_e, log_var_e, y, matmul=matmul
        )
        np.testing.assert_allclose(kl.numpy(), [0.6931472], rtol=1e-6)

    def test_kl_matmul_equals_broadcast_float64(self):
        gen = torch.Generator().manual_seed(1)
        b, n, d = 6, 9, 5
        z, mean_x, log_var_x = (torch.randn(b, d, generator=gen) for _ in range(3))
        mean_e, log_var_e = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
        y = (torch.rand(b, n, generator=gen) < 0.4).float()
        y[0] = 0.0
        a = torch_reference.mixture_kl_single_sample(z, mean_x, log_var_x, mean_e, log_var_e, y)
        m = torch_reference.mixture_kl_single_sample(
            z, mean_x, log_var_x, mean_e, log_var_e, y, matmul=True
        )
        # float64 numpy loop reference.
        zn, mx, vx = (t.double().numpy() for t in (z, mean_x, log_var_x))
        me, ve, yn = (t.double().numpy() for t in (mean_e, log_var_e, y))
        ref = np.zeros(b)
        for i in range(b):
            active = np.flatnonzero(yn[i])
            if active.size == 0:
                continue
            log_q = -0.5 * np.sum(vx[i] + (zn[i] - mx[i]) ** 2 / np.exp(vx[i]))
            comps = [-0.5 * np.sum(ve[k] + (zn[i] - me[k]) ** 2 / np.exp(ve[k])) for k in active]
            log_p = np.logaddexp.reduce(comps) - np.log(active.size)
            ref[i] = log_q - log_p
        np.testing.assert_allclose(a.numpy(), ref, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(m.numpy(), ref, rtol=1e-5, atol=1e-4)

    def test_contrastive_two_label_oracle(self):
        scores = torch.tensor([[0.3, -0.2]])
        y = torch.tensor([[1.0, 0.0]])
        loss = torch_reference.label_contrastive(scores, y, temperature=0.5)
        np.testing.assert_allclose(loss.numpy(), [0.3132617], rtol=1e-6)

    def test_contrastive_all_positive_equal_scores(self):
        loss = torch_reference.label_contrastive(torch.full((2, 7), 0.4), torch.ones(2, 7))
        np.testing.assert_allclose(loss.numpy(), [math.log(7)] * 2, rtol=1e-6)

    def test_bce_at_half_probability(self):
        out = torch_reference.bce_sum(
            torch.zeros(3, 5), torch_reference.synthetic_batch(3, 2, 5)[1]
        )
        np.testing.assert_allclose(out.numpy(), [5 * math.log(2)] * 3, rtol=1e-6)

    def test_flop_count_matches_torch_counter(self):
        from torch.utils import flop_counter

        model, _ = self._model()
        x, y = torch_reference.synthetic_batch(7, 6, 5)
        with flop_counter.FlopCounterMode(display=False) as counter:
            torch_reference.total_loss(torch_reference.loss_terms(model(x, y), y)).backward()
        expected = torch_reference.matmul_flops_per_step(7, 6, 5, **_SMALL)
        self.assertEqual(counter.get_total_flops(), expected["total"])

    def test_model_fields_are_the_flax_model_fields(self):
        # step_throughput builds the reference from the flax model's fields of these names.
        from cgmvae_jax import models

        flax_fields = {f.name for f in dataclasses.fields(models.CGMVAE)}
        self.assertContainsSubset(set(torch_reference.MODEL_FIELDS), flax_fields)
        init = inspect.signature(torch_reference.CGMVAE.__init__).parameters
        self.assertEqual(
            set(torch_reference.MODEL_FIELDS),
            {n for n, p in init.items() if p.kind == p.KEYWORD_ONLY},
        )
        flax_model = models.make_model(helpers.smoke_config(), 6, 5)
        kwargs = {n: getattr(flax_model, n) for n in torch_reference.MODEL_FIELDS}
        model, _ = torch_reference.build(6, 5, num_threads=1, **kwargs)
        self.assertEqual(model.label_lookup.weight.shape[0], flax_model.embedding_dim)

    def test_compile_fallback_keeps_state(self):
        model, optimizer = self._model()
        x, y = torch_reference.synthetic_batch(4, 6, 5)
        before = model.label_lookup.weight.detach().clone()
        result = torch_reference.compiled_train_step(
            model, optimizer, x, y, backend="no_such_backend"
        )
        self.assertFalse(result.compiled)
        self.assertNotEmpty(result.reason)
        np.testing.assert_array_equal(model.label_lookup.weight.detach().numpy(), before.numpy())
        self.assertTrue(math.isfinite(result.step(x, y)))
        self.assertFalse(torch.equal(model.label_lookup.weight.detach(), before))


if __name__ == "__main__":
    absltest.main()
