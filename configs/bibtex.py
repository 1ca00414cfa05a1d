r"""C-GMVAE on bibtex (Mulan).

Hyper-parameters: not in the paper: the delicious settings (large sparse input);
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/bibtex.py --workdir=runs/bibtex
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the bibtex configuration."""
    return config_lib.dataset_config("bibtex")
