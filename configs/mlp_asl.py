"""MLP baseline trained with the asymmetric loss (ASL); docs/losses.md.

python launch/train.py --config=configs/mlp_asl.py --config.dataset=scene
"""

from cgmvae_jax import config_lib


def get_config():
    return config_lib.dataset_config("yeast", model="mlp", loss="asl")
