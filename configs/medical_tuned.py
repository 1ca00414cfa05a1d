r"""medical with hyper-parameters tuned on validation (launch/tune.py).

Search, 2026-12-01: 30 finished trials (17 complete, 13 pruned), 22.1 min of trial time.

  python launch/tune.py --config=configs/medical.py --workdir=/work/runs/tune/medical \
      --trials=30 --config.data_dir=/work/shared/datasets --config.progress=False \
      --write_config=configs/medical_tuned.py

Winner: trial 16 of study 'medical', validation mean(macro_f1, example_f1) under val_per_metric
at the best epoch = 0.4815 (best epoch 51 of 350). Searched: learning_rate, contrastive_weight,
bce_weight, embedding_dim, dropout_rate, batch_size, num_epochs; every other field as in the
search's base config.

  python launch/train.py --config=configs/medical_tuned.py --workdir=runs/medical_tuned
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the tuned medical configuration."""
    return config_lib.dataset_config(
        "medical",
        learning_rate=0.0032721642122819,
        bce_weight=0.1,
        embedding_dim=3072,
        dropout_rate=0.3,
        batch_size=32,
        num_epochs=350,
    )
