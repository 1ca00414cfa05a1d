r"""sider with hyper-parameters tuned on validation (launch/tune.py).

Search, 2026-12-01: 20 finished trials (12 complete, 8 pruned; a 21st stopped by the timeout
and queued to resume), 20.0 min of trial time.

  python launch/tune.py --config=configs/sider.py --workdir=/work/runs/tune/sider --trials=30 \
      --timeout=1200 \
      --space=learning_rate,contrastive_weight,bce_weight,embedding_dim,dropout_rate,batch_size,num_epochs,weight_decay \
      --config.data_dir=/work/shared/datasets --config.progress=False \
      --write_config=configs/sider_tuned.py

Winner: trial 2 of study 'sider', validation mean(macro_f1, example_f1) under val_per_metric at
the best epoch = 0.7442 (best epoch 241 of 350). Searched: learning_rate, contrastive_weight,
bce_weight, embedding_dim, dropout_rate, batch_size, num_epochs, weight_decay; every other field
as in the search's base config.

sider has a paper Table 7 row (configs/sider.py); this config replaces it in the main table
because it scores higher on the same validation split (Table 7's seed-1 run of the 3-seed
main-table cell: 0.7408 by the same objective).

  python launch/train.py --config=configs/sider_tuned.py --workdir=runs/sider_tuned
"""  # noqa: E501

from cgmvae_jax import config_lib


def get_config():
    """Returns the tuned sider configuration."""
    return config_lib.dataset_config(
        "sider",
        learning_rate=0.0005585445682353796,
        contrastive_weight=1.5,
        bce_weight=2.0,
        embedding_dim=3072,
        num_epochs=350,
        weight_decay=0.0,
    )
