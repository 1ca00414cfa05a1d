r"""bibtex with hyper-parameters tuned on validation (launch/tune.py).

Search, 2026-12-01, stopped by hand (SIGINT) after 9 finished trials (7 complete, 2 pruned;
the interrupted tenth resumes with the same command), 24.7 min of trial time.

  python launch/tune.py --config=configs/bibtex.py --workdir=/work/runs/tune/bibtex \
      --trials=30 --timeout=2100 --config.data_dir=/work/shared/datasets \
      --config.progress=False --write_config=configs/bibtex_tuned.py

Winner: trial 5 of study 'bibtex', validation mean(macro_f1, example_f1) under val_per_metric at
the best epoch = 0.3839 (best epoch 161 of 350). Searched: learning_rate, contrastive_weight,
bce_weight, embedding_dim, dropout_rate, batch_size, num_epochs; every other field as in the
search's base config.

  python launch/train.py --config=configs/bibtex_tuned.py --workdir=runs/bibtex_tuned
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the tuned bibtex configuration."""
    return config_lib.dataset_config(
        "bibtex",
        learning_rate=0.0009774572963896463,
        contrastive_weight=2.0,
        bce_weight=2.0,
        dropout_rate=0.7,
        batch_size=64,
        num_epochs=350,
    )
