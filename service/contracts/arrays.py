"""The array type both sides pass around: float64 values, any shape.

One alias for the whole project, so training and serving annotate the same thing the same
way (``FloatArray``), instead of one ``NDArray[np.float64]`` spelling per module.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

FloatArray: TypeAlias = NDArray[np.float64]


def all_finite(values: FloatArray) -> bool:
    """Every value finite; one value (a poll's row, the usual case on the request path)
    without numpy's calls, which cost more than the check."""
    return math.isfinite(values[0]) if values.shape == (1,) else bool(np.isfinite(values).all())
