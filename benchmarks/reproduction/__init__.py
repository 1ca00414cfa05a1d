"""Reproduction of the paper's tables: experiment grids, result rows, Markdown, plots.

`launch/reproduce.py` is the command line of `run_grid`. The modules, one concept each:

- `grids`: the grids (data sets x variants x fractions x split seeds), cells and their names;
- `paper`: the published numbers;
- `cells`: a cell's config, run directory, and running it (trainer or binary relevance);
- `rows`: result rows (reproduce.json) from results.json files, merging, means over splits;
- `tables`, `comparisons`: the Markdown tables; `plots`: the fraction figure;
- `summary`: the main-table summary quoted in docs/results.md;
- `runner`: `run_grid`, which ties them together.
"""

from benchmarks.reproduction import rows as rows
from benchmarks.reproduction import summary as summary
from benchmarks.reproduction.grids import GRIDS as GRIDS
from benchmarks.reproduction.grids import Cell as Cell
from benchmarks.reproduction.grids import Grid as Grid
from benchmarks.reproduction.runner import run_grid as run_grid
