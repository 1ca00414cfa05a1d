r"""C-GMVAE on Reuters-21578 ModApte, 90 topics.

Hyper-parameters: paper Table 7; decoder [512, 512, 512] in the paper's notation;
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/reuters.py --workdir=runs/reuters
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the reuters configuration."""
    return config_lib.dataset_config("reuters")
