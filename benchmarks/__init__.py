"""Benchmarks and result reproduction of cgmvae_jax (installed with the package, not part of it).

- `step_throughput`: training-step throughput of the compiled program against the PyTorch
  reference (`torch_reference`), timed with `hardware`.
- `reproduction`: the paper's experiment grids, their result rows, Markdown tables and plots
  (`launch/reproduce.py` is its command line); `baselines`: binary relevance for those tables.

The core package `cgmvae_jax` never imports this one (it needs scikit-learn and torch here).
"""
