"""Tests of the compilation helpers: the persistent cache folder and compile time."""

import os
import subprocess
import sys
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
from absl.testing import absltest

from cgmvae_jax import compilation


class CompilationTest(absltest.TestCase):
    def test_compile_seconds_grows_when_a_new_program_compiles(self):
        before = compilation.compile_seconds()
        jax.jit(lambda x: jnp.sin(x) @ x.T + 3.0)(jnp.ones((17, 23))).block_until_ready()
        self.assertGreater(compilation.compile_seconds(), before)

    def test_cache_folder_from_the_environment(self):
        folder = tempfile.mkdtemp(prefix="compilation_test_")
        code = (
            "import jax, jax.numpy as jnp; from cgmvae_jax import compilation; "
            "print(compilation.enable_cache()); "
            "jax.jit(lambda x: jnp.cos(x).sum())(jnp.ones(1000)).block_until_ready()"
        )
        env = {**os.environ, "CGMVAE_CACHE": folder}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(run.stdout.strip(), folder, run.stderr[-2000:])

    def test_an_existing_cache_setting_is_kept(self):
        folder = tempfile.mkdtemp(prefix="compilation_test_")
        code = "from cgmvae_jax import compilation; print(compilation.enable_cache())"
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": folder, "CGMVAE_CACHE": "/nonexistent"}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(run.stdout.strip(), folder, run.stderr[-2000:])

    def test_default_folder_is_under_the_user_cache(self):
        with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": "/c", "CGMVAE_CACHE": ""}):
            self.assertEqual(compilation.default_cache_dir(), "/c/cgmvae_jax/xla")


if __name__ == "__main__":
    absltest.main()
