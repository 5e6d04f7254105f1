"""The column's operator in the simulation: reflux and boilup set points as ratios to the
feed, unprompted moves, and a cautious trim of the cut from the two analyzers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.simulation_config import OperatorConfig


@dataclass
class Operator:
    """The operator's current set points (ratios to the feed) and pending actions."""

    cfg: OperatorConfig
    reflux_ratio: float
    boilup_ratio: float

    def clamp(self) -> None:
        lo, hi = self.cfg.reflux_ratio_range
        self.reflux_ratio = min(max(self.reflux_ratio, lo), hi)
        cut_lo, cut_hi = self.cfg.cut_range
        cut = min(max(self.boilup_ratio - self.reflux_ratio, cut_lo), cut_hi)
        self.boilup_ratio = self.reflux_ratio + cut

    def move(self, internal: bool, size: float) -> None:
        """An unprompted set-point move: internal flows together, or the cut (V/F) alone."""
        if internal:
            self.reflux_ratio += size * self.cfg.internal_move
            self.boilup_ratio += size * self.cfg.internal_move
        else:
            self.boilup_ratio += size * self.cfg.cut_move
        self.clamp()

    def trim(self, xb: float, yd: float) -> None:
        """Move the cut (V/F with L/F fixed, about D/F) when one product is clearly worse.

        Whether to act is judged on log impurities (an operator thinks "three times too
        much"): half the difference of the two log impurities against their targets must
        exceed the deadband. How far to move is a mass balance: shifting the cut by
        ``delta`` moves about ``delta`` kmol of light component per kmol of feed between
        the products, so the move that would put both halfway back is
        ``0.5 * (B/F * excess_B - D/F * excess_D)`` with D/F = B/F = 1/2; the operator
        applies ``gain`` of it. Internal flows (L and V together) hardly change either
        product in an LV column, so they are not the tool for this.
        """
        c = self.cfg
        e_b = math.log(max(xb, 1e-6) / c.target_xb)
        e_d = math.log(max(1.0 - yd, 1e-6) / (1.0 - c.target_yd))
        if abs(0.5 * (e_b - e_d)) <= c.deadband:
            return
        excess_b = xb - c.target_xb
        excess_d = (1.0 - yd) - (1.0 - c.target_yd)
        step = c.gain * 0.25 * (excess_b - excess_d)
        self.boilup_ratio += max(-c.max_trim, min(c.max_trim, step))
        self.clamp()
