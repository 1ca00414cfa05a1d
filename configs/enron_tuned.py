r"""enron with hyper-parameters tuned on validation (launch/tune.py).

Search, 2026-12-01: 30 finished trials (21 complete, 9 pruned), 15.6 min of trial time.

  python launch/tune.py --config=configs/enron.py --workdir=/work/runs/tune/enron --trials=30 \
      --config.data_dir=/work/shared/datasets --config.progress=False \
      --write_config=configs/enron_tuned.py

Winner: trial 9 of study 'enron', validation mean(macro_f1, example_f1) under val_per_metric at
the best epoch = 0.4089 (best epoch 30 of 50). Searched: learning_rate, contrastive_weight,
bce_weight, embedding_dim, dropout_rate, batch_size, num_epochs; every other field as in the
search's base config.

  python launch/train.py --config=configs/enron_tuned.py --workdir=runs/enron_tuned
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the tuned enron configuration."""
    return config_lib.dataset_config(
        "enron",
        learning_rate=0.003360697273972201,
        embedding_dim=3072,
        dropout_rate=0.3,
        batch_size=64,
        num_epochs=50,
    )
