r"""MLP baseline trained with BCE + the CLML term (config.loss = "bce+clml").

BCE + the CLML nuclear-norm term with label correction (Ma et al., arXiv 2209.01314).
Same data, splits, training loop, checkpoints and metrics as C-GMVAE; the model is
`models.MLPClassifier` (feature MLP of size feature_hidden -> linear logits). The data set is a
flag (default yeast); the other settings are the base defaults (yeast's):

  python launch/train.py --config=configs/mlp_bce_clml.py --config.dataset=scene \
      --workdir=runs/scene-mlp_bce_clml
"""

from cgmvae_jax import config_lib


def get_config():
    """Returns the mlp_bce_clml configuration."""
    return config_lib.dataset_config("yeast", model="mlp", loss="bce+clml")
