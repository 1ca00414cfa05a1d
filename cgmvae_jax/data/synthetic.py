"""A built-in synthetic multi-label data set with correlated labels (label clusters).

The L labels are divided into K = round(sqrt(L)) contiguous clusters. Each example activates
one cluster (two with probability 0.35 when K > 1); inside an active cluster every label is on
with probability 0.6 and at least one is on; outside, labels are on with probability 0.03. So
labels co-occur far more often within a cluster than across clusters. Features are a linear
function of the labels and of the active clusters plus Gaussian noise:

    x = y @ A + c @ C + noise        # [n, F]; A [L, F], C [K, F], noise ~ N(0, 1)

so they are informative but not perfectly separable. Deterministic for a seed.
"""

import numpy as np

from cgmvae_jax.data import dataset as dataset_lib

P_SECOND_CLUSTER = 0.35
P_IN_CLUSTER = 0.6
P_OUT_OF_CLUSTER = 0.03


def label_clusters(num_labels: int) -> np.ndarray:
    """Cluster id of each label: int64 [L], K = round(sqrt(L)) contiguous clusters."""
    k = max(1, int(round(np.sqrt(num_labels))))
    return (np.arange(num_labels) * k) // num_labels


def synthetic_dataset(
    num_examples: int = 2000, num_features: int = 64, num_labels: int = 12, *, seed: int = 0
) -> dataset_lib.Dataset:
    """Generates the synthetic data set (no predefined split; see the module docstring).

    Args:
      num_examples: n.
      num_features: F.
      num_labels: L.
      seed: random seed.

    Returns:
      Dataset named "synthetic" with label names "c{cluster}_l{label}".
    """
    for name, value in (
        ("num_examples", num_examples),
        ("num_features", num_features),
        ("num_labels", num_labels),
    ):
        if int(value) < 1:
            raise ValueError(f"synthetic_dataset: {name}={value} must be >= 1.")
    n, f, num_l = int(num_examples), int(num_features), int(num_labels)
    rng = np.random.default_rng(seed)
    cluster = label_clusters(num_l)  # [L]
    k = int(cluster.max()) + 1

    first = rng.integers(k, size=n)
    active = np.zeros((n, k), bool)  # [n, K]
    active[np.arange(n), first] = True
    if k > 1:
        second = (first + rng.integers(1, k, size=n)) % k
        two = rng.random(n) < P_SECOND_CLUSTER
        active[np.nonzero(two)[0], second[two]] = True

    in_cluster = active[:, cluster]  # [n, L]
    p = np.where(in_cluster, P_IN_CLUSTER, P_OUT_OF_CLUSTER)
    y = rng.random((n, num_l)) < p
    for c in range(k):  # at least one label of every active cluster
        members = np.nonzero(cluster == c)[0]
        rows = np.nonzero(active[:, c])[0]
        y[rows, members[rng.integers(members.size, size=rows.size)]] = True

    a = rng.normal(size=(num_l, f))
    c_load = rng.normal(size=(k, f))
    x = y @ a + active @ c_load + rng.normal(size=(n, f))
    return dataset_lib.Dataset(
        x=x.astype(np.float32),
        y=y.astype(np.uint8),
        label_names=tuple(f"c{cluster[j]}_l{j}" for j in range(num_l)),
        feature_names=tuple(f"feature_{j}" for j in range(f)),
        split=None,
        name="synthetic",
        source="synthetic",
    )
