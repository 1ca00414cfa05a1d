r"""C-GMVAE on the built-in synthetic data set: runs anywhere, in about a minute on two CPU cores.

python launch/train.py --config=configs/demo.py --workdir=runs/demo
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the demo configuration (synthetic correlated labels, small model)."""
    config = config_lib.base_config()
    config.dataset = "synthetic"
    config.synthetic_examples = 3000
    config.synthetic_features = 64
    config.synthetic_labels = 12
    config.embedding_dim = 256
    config.num_epochs = 30
    config.restart_period = 30
    config.batch_size = 128
    config.learning_rate = 2e-3
    return config
