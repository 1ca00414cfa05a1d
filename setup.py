"""Installs cgmvae_jax: C-GMVAE in JAX/Flax and a library of multi-label losses."""

import setuptools

setuptools.setup(
    name="cgmvae_jax",
    version="0.1.0",
    description=(
        "C-GMVAE (Gaussian mixture VAE with contrastive learning for multi-label "
        "classification) in JAX/Flax, with reusable multi-label losses and metrics."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # `benchmarks` is installed too so that `from benchmarks import hardware` works from any
    # directory (launch/reproduce.py, the tests) without sys.path edits.
    packages=setuptools.find_packages(
        include=["cgmvae_jax", "cgmvae_jax.*", "benchmarks", "benchmarks.*"]
    ),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2.4",
        "numpy>=1.24",
        "orbax-checkpoint>=0.11",
        "absl-py>=2.0",
        "ml-collections>=0.1.1",
        "tqdm>=4.60",
        "liac-arff>=2.5",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",
            "chex>=0.1.87",  # test asserts
            "scikit-learn>=1.2",
            "ruff>=0.6",
            "tensorboardX>=2.6",
            "optuna>=4,<6",  # tests/tuning_test.py
            "matplotlib>=3.7",  # tests/interpret_test.py
        ],
        "tune": ["optuna>=4,<6"],  # launch/tune.py (hyper-parameter search)
        "arff": [],  # liac-arff is a core dependency; the extra stays for old install lines
        "bench": ["torch>=2.1,<2.15"],
        "tensorboard": ["tensorboardX>=2.6"],
        "plot": ["matplotlib>=3.7", "scipy>=1.10"],
    },
    license="Apache-2.0",
)
