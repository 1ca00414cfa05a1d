"""C-GMVAE on yeast (Mulan), paper Table 7 (values in config_lib.TABLE7).

python launch/train.py --config=configs/yeast.py
"""

from cgmvae_jax import config_lib


def get_config():
    return config_lib.dataset_config("yeast")
