r"""C-GMVAE on NUS-WIDE, 128-d cVLAD+ vectors (not shipped, see README 'Data').

Hyper-parameters: paper Table 7;
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/nus_vec.py --workdir=runs/nus_vec
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the nus_vec configuration."""
    config = config_lib.base_config()
    config.dataset = "nus_vec"
    config.learning_rate = 0.004
    config.contrastive_weight = 1.0  # paper alpha
    config.bce_weight = 0.5  # paper beta
    config.embedding_dim = 1024
    config.dropout_rate = 0.5
    config.batch_size = 256
    return config
