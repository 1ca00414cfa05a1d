r"""C-GMVAE on delicious (Mulan).

Hyper-parameters: paper Table 7;
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/delicious.py --workdir=runs/delicious
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the delicious configuration."""
    config = config_lib.base_config()
    config.dataset = "delicious"
    config.learning_rate = 0.001
    config.contrastive_weight = 1.0  # paper alpha
    config.bce_weight = 0.5  # paper beta
    config.embedding_dim = 2048
    config.dropout_rate = 0.5
    config.batch_size = 128
    return config
