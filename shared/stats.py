"""Statistics both tiers need, in plain Python (no numpy, no database).

The engine's metrics (``worker.fine_tuning.metrics``) and the web's model comparison
(``shared.deployment.comparison``) both use McNemar's exact test; it lives here so that
there is one implementation and neither tier imports the other.
"""

from __future__ import annotations

import math


def mcnemar_exact_p_value(a_right_b_wrong: int, a_wrong_b_right: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs at 1/2."""
    discordant = a_right_b_wrong + a_wrong_b_right
    if discordant == 0:
        return 1.0
    smaller = min(a_right_b_wrong, a_wrong_b_right)
    tail = sum(math.comb(discordant, k) for k in range(smaller + 1)) / 2**discordant
    return min(1.0, 2 * tail)
