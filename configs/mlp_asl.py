r"""MLP baseline trained with the asymmetric loss (ASL) (config.loss = "asl").

ASL (Ridnik et al., ICCV 2021): gamma_neg 4, gamma_pos 0, clip 0.05.
Same data, splits, training loop, checkpoints and metrics as C-GMVAE; the model is
`models.MLPClassifier` (feature MLP of size feature_hidden -> linear logits). The data set is a
flag (default yeast); the other settings are the base defaults (yeast's):

  python launch/train.py --config=configs/mlp_asl.py --config.dataset=scene \
      --workdir=runs/scene-mlp_asl
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the mlp_asl configuration."""
    return config_lib.dataset_config("yeast", model="mlp", loss="asl")
