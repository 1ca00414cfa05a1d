"""The published numbers (spec/PAPER_RESULTS.md): test split, `official` threshold protocol."""

# The metrics of the paper's tables, in the order of the tuples below.
PAPER_METRICS = ("example_f1", "micro_f1", "macro_f1", "hamming_accuracy", "precision_at_1")

# C-GMVAE, paper Tables 1-3 (means over 3 seeds; std <= 0.003).
PAPER_CGMVAE = {
    "ebird": (0.576, 0.633, 0.538, 0.847, 0.825),
    "mirflickr": (0.534, 0.575, 0.440, 0.903, 0.732),
    "nus_vec": (0.481, 0.510, 0.226, 0.984, 0.595),
    "yeast": (0.656, 0.665, 0.487, 0.796, 0.751),
    "scene": (0.777, 0.762, 0.769, 0.915, 0.788),
    "sider": (0.771, 0.803, 0.691, 0.767, 0.962),
    "reuters": (0.917, 0.890, 0.582, 0.997, 0.939),
    "bookmarks": (0.392, 0.377, 0.291, 0.992, 0.465),
    "delicious": (0.381, 0.403, 0.197, 0.983, 0.707),
}  # (ex-F1, mi-F1, ma-F1, HA, P@1)
# Baselines from the same tables (ex-F1 / ma-F1 only): the strongest one and BR.
PAPER_BASELINES = {
    "yeast": {"MPVAE": (0.648, 0.482), "BR": (0.630, 0.373)},
    "scene": {"ASL": (0.770, 0.765), "MPVAE": (0.751, 0.750), "BR": (0.606, 0.704)},
    "reuters": {"LaMP": (0.906, 0.520)},
    "delicious": {"BR": (0.174, 0.066)},
}


def paper_rows(dataset: str) -> list[tuple[str, dict[str, float]]]:
    """[(label, {metric: value})] of the paper's numbers for `dataset` (may be empty)."""
    out = []
    if dataset in PAPER_CGMVAE:
        out.append(("paper: C-GMVAE", dict(zip(PAPER_METRICS, PAPER_CGMVAE[dataset], strict=True))))
    for name, (ex_f1, ma_f1) in PAPER_BASELINES.get(dataset, {}).items():
        out.append((f"paper: {name}", {"example_f1": ex_f1, "macro_f1": ma_f1}))
    return out
