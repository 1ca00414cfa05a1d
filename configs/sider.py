r"""C-GMVAE on SIDER side effects (MoleculeNet).

Hyper-parameters: paper Table 7;
schedule of the official script (T0 50, T_mult 2, eta_min 2e-4) and
the paper's 100 epochs.

  python launch/train.py --config=configs/sider.py --workdir=runs/sider
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the sider configuration."""
    return config_lib.dataset_config("sider")
