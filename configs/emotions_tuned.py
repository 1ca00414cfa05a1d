r"""emotions with hyper-parameters tuned on validation (launch/tune.py).

Search, 2026-12-01: 30 finished trials (18 complete, 12 pruned), 6.4 min of trial time.

  python launch/tune.py --config=configs/emotions.py --workdir=/work/runs/tune/emotions \
      --trials=30 --config.data_dir=/work/shared/datasets --config.progress=False \
      --write_config=configs/emotions_tuned.py

Winner: trial 11 of study 'emotions', validation mean(macro_f1, example_f1) under val_per_metric
at the best epoch = 0.6991 (best epoch 11 of 100). Searched: learning_rate, contrastive_weight,
bce_weight, embedding_dim, dropout_rate, batch_size, num_epochs; every other field as in the
search's base config.

  python launch/train.py --config=configs/emotions_tuned.py --workdir=runs/emotions_tuned
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the tuned emotions configuration."""
    return config_lib.dataset_config(
        "emotions",
        learning_rate=0.002294115051513899,
        contrastive_weight=0.5,
        bce_weight=1.5,
        dropout_rate=0.7,
        batch_size=64,
    )
