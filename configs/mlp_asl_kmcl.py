r"""MLP baseline trained with ASL + the KMCL kernel terms (config.loss = "asl+kmcl").

ASL + KMCL reconstruction and Bhattacharyya contrastive terms (Sajedi et al.,
arXiv 2307.03967) with isotropic per-class Gaussians (one scalar mean and variance per class);
--config.kmcl_isotropic=False gives the released default, per class and dimension, whose
contrastive term costs O(B^2 L D) per step (seconds per step on a CPU for D = 256).
Same data, splits, training loop, checkpoints and metrics as C-GMVAE; the model is
`models.MLPClassifier` (feature MLP of size feature_hidden -> linear logits). The data set is a
flag (default yeast); the other settings are the base defaults (yeast's):

  python launch/train.py --config=configs/mlp_asl_kmcl.py --config.dataset=scene \
      --workdir=runs/scene-mlp_asl_kmcl
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the mlp_asl_kmcl configuration."""
    return config_lib.dataset_config("yeast", model="mlp", loss="asl+kmcl")
