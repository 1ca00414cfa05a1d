"""Multi-label loss functions in pure JAX.

Every function here is pure, works under `jax.jit`, `jax.vmap` and `jax.grad`, broadcasts over
leading batch dimensions and returns per-example values (the caller takes the masked mean) unless
its docstring says otherwise. Inputs may be float32 or bfloat16; log-sum-exps and matrix products
run in (at least) float32. Masks select the active entries; rows where a mask selects nothing give
finite values and finite (zero) gradients.

C-GMVAE (Bai, Kong, Gomes, ICML 2022, arXiv 2112.00976):

- `log_normal_diag`: log-density of a diagonal Gaussian.
- `gaussian_mixture_log_density`: log-density under the uniform mixture of the active labels'
  Gaussians (the C-GMVAE prior).
- `mixture_kl_single_sample`: single-sample estimate log q(z) - log p(z) of KL(q || mixture).
- `gaussian_kl`: analytic KL between diagonal Gaussians (the MPVAE / uni-Gaussian ablation).
- `label_contrastive_loss`: each anchor contrasted against all label embeddings.

Related multi-label losses (each docstring lists where it differs from the released code):

- `asymmetric_loss`: ASL (Ridnik et al., ICCV 2021), summed over labels.
- `kmcl_reconstruction_loss`, `kmcl_contrastive_loss`: KMCL (Sajedi et al., arXiv 2307.03967),
  kernel-mixture reconstruction and Bhattacharyya contrastive terms.
- `correct_missing_labels`, `clml_loss`: CLML (Ma et al., arXiv 2209.01314), label correction
  and the batch-level nuclear-norm objective.

This package imports only jax and the standard library, so `from cgmvae_jax import losses` works
with nothing but jax installed.
"""

from cgmvae_jax.losses._asl import asymmetric_loss as asymmetric_loss
from cgmvae_jax.losses._clml import clml_loss as clml_loss
from cgmvae_jax.losses._clml import correct_missing_labels as correct_missing_labels
from cgmvae_jax.losses._contrastive import label_contrastive_loss as label_contrastive_loss
from cgmvae_jax.losses._gaussian import gaussian_kl as gaussian_kl
from cgmvae_jax.losses._gaussian import log_normal_diag as log_normal_diag
from cgmvae_jax.losses._kmcl import kmcl_contrastive_loss as kmcl_contrastive_loss
from cgmvae_jax.losses._kmcl import kmcl_reconstruction_loss as kmcl_reconstruction_loss
from cgmvae_jax.losses._mixture import gaussian_mixture_log_density as gaussian_mixture_log_density
from cgmvae_jax.losses._mixture import mixture_kl_single_sample as mixture_kl_single_sample
