"""C-GMVAE on medical (Mulan), untuned in the paper: yeast's Table 7 row.

python launch/train.py --config=configs/medical.py
"""

from cgmvae_jax import config_lib


def get_config():
    return config_lib.dataset_config("medical")
