r"""C-GMVAE on MIRFLICKR (MPVAE layout; not shipped, see README 'Data').

Hyper-parameters: paper Table 7;
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/mirflickr.py --workdir=runs/mirflickr
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the mirflickr configuration."""
    return config_lib.dataset_config("mirflickr")
