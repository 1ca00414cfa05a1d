"""Tests of cgmvae_jax.losses as a whole: public names, import weight, docstrings, bad input.

Each loss family has its own test module (losses_<family>_test.py, as optax/losses does).
"""

import doctest
import importlib
import os
import subprocess
import sys

import jax.numpy as jnp
from absl.testing import absltest, parameterized

from cgmvae_jax import losses

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PUBLIC_NAMES = (
    "asymmetric_loss",
    "clml_loss",
    "correct_missing_labels",
    "gaussian_kl",
    "gaussian_mixture_log_density",
    "kmcl_contrastive_loss",
    "kmcl_reconstruction_loss",
    "label_contrastive_loss",
    "log_normal_diag",
    "mixture_kl_single_sample",
)
_FAMILY_MODULES = (
    "_active_pairs",
    "_asl",
    "_clml",
    "_contrastive",
    "_gaussian",
    "_kmcl",
    "_mixture",
)


def _arrays(*specs):
    """A zero array per shape; (shape, dtype) pairs give other dtypes; numbers stay numbers."""
    out = []
    for spec in specs:
        if isinstance(spec, (int, float)):
            out.append(spec)
        elif spec and isinstance(spec[0], tuple):
            out.append(jnp.zeros(spec[0], spec[1]))
        else:
            out.append(jnp.zeros(spec))
    return out


_INT = jnp.int32


class BadInputTest(parameterized.TestCase):
    """Wrong shapes raise ValueError naming them; non-float data raise TypeError (optax style)."""

    @parameterized.named_parameters(
        ("log_normal_diag_dim", "log_normal_diag", [(2, 3), (2, 4), (3,)], {},
         r"\(2, 3\).*\(2, 4\)"),
        ("gaussian_kl_dim", "gaussian_kl", [(2, 3), (2, 4), 0.0, 0.0], {}, r"\(2, 3\).*\(2, 4\)"),
        ("mixture_dim", "gaussian_mixture_log_density", [(4, 3), (5, 2), (5, 2), (4, 5)], {},
         r"\(4, 3\).*\(5, 2\)"),
        ("mixture_components", "gaussian_mixture_log_density", [(4, 3), (5, 3), (5, 3), (4, 6)],
         {}, r"\(4, 6\).*\(5, 3\)"),
        ("mixture_batch", "gaussian_mixture_log_density", [(4, 3), (5, 3), (5, 3), (3, 5)], {},
         r"\(4,\).*\(3,\)"),
        ("mixture_per_example_batch", "gaussian_mixture_log_density",
         [(4, 3), (2, 5, 3), (2, 5, 3), (4, 5)], {}, r"\(4,\).*\(2,\)"),
        ("kl_q_dim", "mixture_kl_single_sample", [(2, 3), (2, 4), (2, 3), (5, 3), (5, 3), (2, 5)],
         {}, r"\(2, 4\)"),
        ("kl_mask_components", "mixture_kl_single_sample",
         [(2, 3), (2, 3), (2, 3), (5, 3), (5, 3), (2, 4)], {}, r"\(2, 4\)"),
        ("contrastive_embedding", "label_contrastive_loss", [(4, 3), (5, 2), (4, 5)], {},
         r"\(4, 3\).*\(5, 2\)"),
        ("contrastive_labels", "label_contrastive_loss", [(4, 3), (5, 3), (4, 6)], {}, r"\(4, 6\)"),
        ("contrastive_batch", "label_contrastive_loss", [(4, 3), (5, 3), (3, 5)], {},
         r"\(4,\).*\(3,\)"),
        ("contrastive_embeddings_not_2d", "label_contrastive_loss", [(4, 3), (1, 5, 3), (4, 5)],
         {}, r"\[L, E\]"),
        ("contrastive_temperature", "label_contrastive_loss", [(1, 2), (3, 2), (1, 3)],
         {"temperature": 0.0}, "temperature"),
        ("asl_shapes", "asymmetric_loss", [(2, 3), (2, 4)], {}, r"\(2, 3\).*\(2, 4\)"),
        ("kmcl_rec_dim", "kmcl_reconstruction_loss",
         [(2, 3), (2, 4), (2, 4, 5), (2, 4, 5), (2, 4)], {}, r"\(2, 3\)"),
        ("kmcl_rec_classes", "kmcl_reconstruction_loss", [(2, 3), (2, 4), (2, 5), (2, 5), (2, 4)],
         {}, r"\(2, 5\)"),
        ("kmcl_con_isotropic_scale", "kmcl_contrastive_loss", [(3, 2), (3, 2), (3, 2)], {},
         "distance_scale"),
        ("kmcl_con_variances", "kmcl_contrastive_loss", [(3, 2, 4), (3, 2, 5), (3, 2)], {},
         r"\(3, 2, 5\)"),
        ("kmcl_con_labels", "kmcl_contrastive_loss", [(3, 2, 4), (3, 2, 4), (3, 3)], {},
         r"\(3, 3\)"),
        ("clml_labels", "clml_loss", [(3, 4), (3, 2), (3, 5)], {"epoch": 0}, r"\(3, 5\)"),
        ("clml_batch", "clml_loss", [(2, 4), (3, 2), (3, 2)], {"epoch": 0}, r"\(2, 4\)"),
    )  # fmt: skip
    def test_bad_shapes_raise_value_error(self, name, specs, kwargs, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            getattr(losses, name)(*_arrays(*specs), **kwargs)

    @parameterized.named_parameters(
        ("log_normal_diag", "log_normal_diag", [((3,), _INT), (3,), (3,)], {}),
        ("gaussian_kl", "gaussian_kl", [((1, 3), _INT), (1, 3), (1, 3), (1, 3)], {}),
        ("mixture", "gaussian_mixture_log_density", [((2, 3), _INT), (4, 3), (4, 3), (2, 4)], {}),
        ("kl", "mixture_kl_single_sample", [((2, 3), _INT), (2, 3), (2, 3), (4, 3), (4, 3), (2, 4)],
         {}),
        ("contrastive", "label_contrastive_loss", [((1, 2), _INT), (3, 2), (1, 3)], {}),
        ("asl", "asymmetric_loss", [((2, 3), _INT), (2, 3)], {}),
        ("kmcl_rec", "kmcl_reconstruction_loss", [((2, 3), _INT), (2, 4), (2, 4), (2, 4), (2, 4)],
         {}),
        ("kmcl_con", "kmcl_contrastive_loss", [((3, 2, 4), _INT), (3, 2, 4), (3, 2)], {}),
        ("correct_missing_labels", "correct_missing_labels", [((2, 3), _INT), (2, 3)],
         {"epoch": 1}),
        ("clml", "clml_loss", [((3, 4), _INT), (3, 2), (3, 2)], {"epoch": 0}),
    )  # fmt: skip
    def test_integer_data_raise_type_error(self, name, specs, kwargs):
        with self.assertRaisesRegex(TypeError, "floating"):
            getattr(losses, name)(*_arrays(*specs), **kwargs)


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

    def test_public_names_are_exactly_the_contract(self):
        public = sorted(n for n in dir(losses) if not n.startswith("_"))
        self.assertEqual(public, sorted(_PUBLIC_NAMES))
        for name in _PUBLIC_NAMES:
            self.assertTrue(callable(getattr(losses, name)), name)

    @parameterized.named_parameters((name, name) for name in _FAMILY_MODULES)
    def test_docstring_examples(self, name):
        # Every public loss has a doctested example; _active_pairs has none (attempted 0).
        module = importlib.import_module(f"cgmvae_jax.losses.{name}")
        failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        self.assertEqual(failures, 0)
        public = [n for n in _PUBLIC_NAMES if getattr(losses, n).__module__ == module.__name__]
        self.assertEqual(attempted > 0, bool(public), (attempted, public))


if __name__ == "__main__":
    absltest.main()
