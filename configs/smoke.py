"""A tiny C-GMVAE run for tests: synthetic data, small layers, three epochs (seconds on a CPU).

python launch/train.py --config=configs/smoke.py --workdir=/tmp/smoke
"""

from cgmvae_jax import config_lib


def get_config():
    config = config_lib.base_config()
    config.update(
        dict(
            dataset="synthetic",
            synthetic_examples=300,
            synthetic_features=16,
            synthetic_labels=6,
            latent_dim=8,
            embedding_dim=32,
            feature_hidden=(32, 32),
            label_hidden=(32,),
            decoder_hidden=(32,),
            batch_size=32,
            num_epochs=3,
            restart_period=2,
            eval_batch_size=64,
            progress=False,
            checkpoint_every_secs=0.0,  # every epoch: the fault tests resume from any epoch
        )
    )
    return config
