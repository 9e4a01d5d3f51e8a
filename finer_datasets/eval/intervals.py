"""95% intervals of a rate, in percent: the Wilson score interval and a percentile bootstrap.

A report gives paired accuracy with a percentile bootstrap over pairs (:func:`bootstrap_ci`,
resampling with its own ``numpy.random.default_rng(seed)``, never the global RNG) and each small
group of a breakdown (pairs with k entities, ...) with the Wilson score interval
(:func:`wilson_ci`): closed form, deterministic, and honest for small n and for rates of 0 or 100%,
where a bootstrap collapses to a single point.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["wilson_ci", "bootstrap_ci", "bootstrap_means", "Z95", "WILSON", "BOOTSTRAP", "PAIRED_TESTS"]

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
#: how each interval is described in a report
WILSON = "Wilson score interval"
BOOTSTRAP = "percentile bootstrap over pairs"
#: the paired significance tests of ``finer compare`` (here, light, for its argument parser)
PAIRED_TESTS = ("mcnemar", "bootstrap")


def wilson_ci(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval of ``successes / n`` in percent, ``[low, high]``; ``None`` when ``n`` is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [round(100.0 * max(0.0, centre - half), 10), round(100.0 * min(1.0, centre + half), 10)]


def bootstrap_ci(values: Sequence[bool], resamples: int, seed: int) -> list[float] | None:
    """Percentile 95% interval of the mean (in percent), resampling ``values`` with replacement."""
    if not len(values) or resamples <= 0:
        return None
    import numpy as np

    low, high = np.percentile(bootstrap_means(values, resamples, seed), [2.5, 97.5])
    return [float(100.0 * low), float(100.0 * high)]


def bootstrap_means(values: Sequence[float], resamples: int, seed: int) -> Any:
    """The means of ``resamples`` resamples of ``values`` with replacement (a numpy array), drawn
    with ``numpy.random.default_rng(seed)``."""
    import numpy as np

    n = len(values)
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=np.float64)
    means = np.empty(resamples, dtype=np.float64)
    rows = max(1, 2_000_000 // n)  # bound the index matrix to ~16 MB
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = data[idx].mean(axis=1)
    return means
