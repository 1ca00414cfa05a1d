r"""C-GMVAE on emotions (Mulan).

Hyper-parameters: not in the paper: the yeast settings;
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/emotions.py --workdir=runs/emotions
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the emotions configuration."""
    return config_lib.dataset_config("emotions")
