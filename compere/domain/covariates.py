"""Entity attributes as covariates of a fitted board (style control).

An entity may carry named numeric attributes (``{"length": 512, "markdown_headers": 3}``).
A board that controls for some of them fits ``P(i beats j) = sigmoid(s_i - s_j + beta .
(z_i - z_j))`` (:func:`compere.domain.bt.fit_bradley_terry` with ``covariates``), where
``z`` are the attributes standardised over the board's entities (:func:`design`): ``s``
is then each entity's strength with what the attributes explain taken out, and ``beta``
what one standard deviation of each attribute is worth in logits.

Standardising (rather than the per-battle ``(a - b) / (a + b)`` of Chatbot Arena, whose
answers differ from battle to battle) suits attributes that belong to the entity: every
``z`` has mean 0, so the adjusted scores keep the unadjusted board's level, and the
coefficients of attributes on different scales (characters, headers) compare directly.
An entity without a controlled attribute gets the board's mean (``z = 0``: no
adjustment for that attribute) and is flagged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the API client validates names here and must not load NumPy
    import numpy as np

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_ATTRIBUTES = 16


def check_attributes(value: object) -> dict[str, float]:
    """An entity's attributes as given by a client, checked: at most
    :data:`MAX_ATTRIBUTES` names of :data:`NAME`, each a finite number."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("must be an object of attribute names to numbers")
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"must have at most {MAX_ATTRIBUTES} attributes")
    checked: dict[str, float] = {}
    for name, number in value.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(
                f"attribute name {str(name)[:40]!r} must be 1 to 32 characters of a-z, 0-9 and _, "
                "starting with a letter"
            )
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ValueError(f"attribute {name!r} must be a number")
        try:
            as_float = float(number)
        except OverflowError:
            as_float = math.inf
        if not math.isfinite(as_float):
            raise ValueError(f"attribute {name!r} must be a finite number")
        checked[name] = as_float
    return checked


def parse_names(text: str) -> list[str]:
    """``control=length,markdown_headers`` as a list of distinct names, in order."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not NAME.fullmatch(name):
            raise ValueError(
                f"{name[:40]!r} is not an attribute name (1 to 32 characters of a-z, 0-9 and _, "
                "starting with a letter)"
            )
        if name not in names:
            names.append(name)
    if len(names) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes can be controlled for")
    return names


class Design(NamedTuple):
    """Standardised covariates of a board's entities, one column per controlled attribute."""

    z: np.ndarray  # (entities, attributes), float64; 0 where imputed
    mean: np.ndarray  # each attribute's mean over the entities that have it
    scale: np.ndarray  # its standard deviation there
    imputed: list[list[str]]  # per entity, the controlled attributes it lacks


class DesignError(ValueError):
    """The controlled attributes cannot be fitted on this board."""


def design(attributes: Sequence[Mapping[str, float]], names: Sequence[str]) -> Design:
    """Standardise ``names`` over the entities (``attributes[k]`` is entity ``k``'s).

    Raises :class:`DesignError` naming an attribute no entity has (unknown) or one
    that does not vary across the entities that have it (nothing to control for).
    """
    import numpy as np

    n = len(attributes)
    z = np.zeros((n, len(names)), dtype=np.float64)
    mean = np.zeros(len(names))
    scale = np.ones(len(names))
    imputed: list[list[str]] = [[] for _ in range(n)]
    for col, name in enumerate(names):
        have = [k for k in range(n) if name in attributes[k]]
        if not have:
            raise DesignError(f"no entity on this board has the attribute {name!r}")
        values = np.array([attributes[k][name] for k in have], dtype=np.float64)
        mean[col] = float(values.mean())
        scale[col] = float(values.std())
        # A spread lost in rounding next to the mean is no spread either.
        if not scale[col] > 1e-12 * max(1.0, abs(mean[col])):
            raise DesignError(f"the attribute {name!r} has the same value on every entity that has it")
        z[have, col] = (values - mean[col]) / scale[col]
        for k in range(n):
            if name not in attributes[k]:
                imputed[k].append(name)
    return Design(z, mean, scale, imputed)
