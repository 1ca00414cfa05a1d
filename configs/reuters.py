"""C-GMVAE on Reuters-21578 ModApte (90 topics), paper Table 7 (values in config_lib.TABLE7).

python launch/train.py --config=configs/reuters.py
"""

from cgmvae_jax import config_lib


def get_config():
    return config_lib.dataset_config("reuters")
