r"""C-GMVAE on enron (Mulan).

Hyper-parameters: not in the paper: the delicious settings (large sparse input);
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/enron.py --workdir=runs/enron
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the enron configuration."""
    return config_lib.dataset_config("enron")
