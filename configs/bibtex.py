"""C-GMVAE on bibtex (Mulan), untuned in the paper: delicious's Table 7 row.

python launch/train.py --config=configs/bibtex.py
"""

from cgmvae_jax import config_lib


def get_config():
    return config_lib.dataset_config("bibtex")
