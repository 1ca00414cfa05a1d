"""C-GMVAE on emotions (Mulan), untuned in the paper: yeast's Table 7 row.

python launch/train.py --config=configs/emotions.py
"""

from cgmvae_jax import config_lib


def get_config():
    return config_lib.dataset_config("emotions")
