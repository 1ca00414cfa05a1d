r"""MLP baseline trained with binary cross-entropy (config.loss = "bce").

Binary cross-entropy summed over labels (the plain baseline).
Same data, splits, training loop, checkpoints and metrics as C-GMVAE; the model is
`models.MLPClassifier` (feature MLP of size feature_hidden -> linear logits). The data set is a
flag (default yeast); the other settings are the base defaults (yeast's):

  python launch/train.py --config=configs/mlp_bce.py --config.dataset=scene \
      --workdir=runs/scene-mlp_bce
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the mlp_bce configuration."""
    return config_lib.dataset_config("yeast", model="mlp", loss="bce")
