r"""C-GMVAE on scene (Mulan).

Hyper-parameters: paper Table 7;
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/scene.py --workdir=runs/scene
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the scene configuration."""
    config = config_lib.base_config()
    config.dataset = "scene"
    config.learning_rate = 0.003
    config.contrastive_weight = 1.0  # paper alpha
    config.bce_weight = 0.5  # paper beta
    config.embedding_dim = 512
    config.dropout_rate = 0.3
    config.batch_size = 128
    return config
