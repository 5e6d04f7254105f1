"""Column A's data: the nominal parameters (Skogestad's ``colamod.m``), the inputs held over
a sample interval, and the flows at one state. The model itself is ``training.column``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.contracts.arrays import FloatArray


@dataclass(frozen=True)
class ColumnParams:
    """Physical and control parameters of Column A (defaults: Skogestad's nominal values)."""

    n_stages: int = 41  # NT: reboiler + 39 trays + total condenser
    feed_stage: int = 21  # NF, 1-based, counted from the bottom
    alpha: float = 1.5  # constant relative volatility
    tau_l: float = 0.063  # min, time constant of the linearised tray hydraulics
    lam: float = 0.0  # K2 effect: change of tray liquid outflow per change of vapour flow
    holdup: float = 0.5  # kmol, nominal tray holdup M0
    holdup_reboiler: float = 0.5  # kmol, M_B set point of the reboiler level loop
    holdup_condenser: float = 0.5  # kmol, M_D set point of the condenser level loop
    reflux0: float = 2.70629  # kmol/min, nominal reflux L0
    boilup0: float = 3.20629  # kmol/min, nominal boilup V0
    feed0: float = 1.0  # kmol/min, nominal feed F0
    z_feed0: float = 0.5  # nominal feed composition
    q_feed0: float = 1.0  # nominal feed liquid fraction (1 = saturated liquid)
    distillate0: float = 0.5  # kmol/min, bias of the condenser level controller
    bottoms0: float = 0.5  # kmol/min, bias of the reboiler level controller
    k_distillate: float = 10.0  # (kmol/min)/kmol, P gain of the condenser level loop
    k_bottoms: float = 10.0  # (kmol/min)/kmol, P gain of the reboiler level loop
    t_light: float = 341.9  # K, boiling point of the light component
    t_heavy: float = 355.4  # K, boiling point of the heavy component

    def __post_init__(self) -> None:
        if self.n_stages < 4:
            raise ValueError(f"n_stages must be at least 4, got {self.n_stages}")
        if not 2 <= self.feed_stage <= self.n_stages - 1:
            raise ValueError(f"feed_stage must be a tray (2..{self.n_stages - 1})")
        positive = {
            "alpha": self.alpha - 1.0,
            "tau_l": self.tau_l,
            "holdup": self.holdup,
            "holdup_reboiler": self.holdup_reboiler,
            "holdup_condenser": self.holdup_condenser,
            "k_distillate": self.k_distillate,
            "k_bottoms": self.k_bottoms,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive (alpha > 1), got {getattr(self, name)}")

    @property
    def n_states(self) -> int:
        return 2 * self.n_stages

    @property
    def reflux0_bottom(self) -> float:
        """L0_b: nominal liquid flow below the feed (the liquid part of the feed adds to L0)."""
        return self.reflux0 + self.q_feed0 * self.feed0

    @property
    def boilup0_top(self) -> float:
        """V0_t: nominal vapour flow above the feed (the vapour part of the feed adds to V0)."""
        return self.boilup0 + (1.0 - self.q_feed0) * self.feed0

    def nominal_inputs(self) -> Inputs:
        return Inputs(self.reflux0, self.boilup0, self.feed0, self.z_feed0, self.q_feed0)

    def temperature(self, x: FloatArray | float) -> FloatArray:
        """Stage temperature in K, linear in composition between the two boiling points."""
        xa = np.asarray(x, dtype=np.float64)
        return xa * self.t_light + (1.0 - xa) * self.t_heavy


@dataclass(frozen=True)
class Inputs:
    """The column's manipulated inputs and disturbances, held constant over an interval."""

    reflux: float  # L_T, kmol/min
    boilup: float  # V_B, kmol/min
    feed: float  # F, kmol/min
    z_feed: float  # z_F, mole fraction light component in the feed
    q_feed: float  # q_F, liquid fraction of the feed

    def as_array(self) -> FloatArray:
        return np.array([self.reflux, self.boilup, self.feed, self.z_feed, self.q_feed])


@dataclass(frozen=True)
class Flows:
    """Every internal and product flow at one state, kmol/min."""

    liquid: FloatArray  # L_i leaving trays 2..NT-1 downwards (the reboiler outflow is B)
    vapour: FloatArray  # V_i leaving stage i upwards, i = 1..NT-1
    distillate: float
    bottoms: float
    reflux: float
