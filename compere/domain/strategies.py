"""The names of the pair selection strategies (the algorithms are in ``selection.py``).

Kept apart from ``selection.py`` so the request models and the Python client can name
the strategies without importing numpy.
"""

from __future__ import annotations

from typing import Literal, get_args

Strategy = Literal["active", "ucb", "random"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
DEFAULT_STRATEGY: Strategy = "active"
