"""The figure and file conventions every benchmark plot shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def figure(rows: int, cols: int, **kw: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=kw.pop("figsize"), layout="constrained")
    return fig, fig.subplots(rows, cols, **kw)


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
