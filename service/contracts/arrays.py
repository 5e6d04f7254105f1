"""The array type both sides pass around: float64 values, any shape.

One alias for the whole project, so training and serving annotate the same thing the same
way (``FloatArray``), instead of one ``NDArray[np.float64]`` spelling per module.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

FloatArray: TypeAlias = NDArray[np.float64]
