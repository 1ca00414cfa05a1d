r"""A tiny C-GMVAE run for tests: synthetic data, small layers, three epochs (seconds on a CPU).

python launch/train.py --config=configs/smoke.py --workdir=/tmp/smoke
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the smoke-test configuration."""
    config = config_lib.base_config()
    config.dataset = "synthetic"
    config.synthetic_examples = 300
    config.synthetic_features = 16
    config.synthetic_labels = 6
    config.latent_dim = 8
    config.embedding_dim = 32
    config.feature_hidden = (32, 32)
    config.label_hidden = (32,)
    config.decoder_hidden = (32,)
    config.batch_size = 32
    config.num_epochs = 3
    config.restart_period = 2
    config.eval_batch_size = 64
    config.progress = False
    config.checkpoint_every_secs = 0.0  # every epoch: the fault tests resume from any epoch
    return config
