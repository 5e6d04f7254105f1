"""Skogestad's "Column A": a first-principles model of a binary distillation column.

The equations, nominal data and reference behaviour are those of Skogestad's ``colamod.m``
and ``cola_lv.m`` (summarised in ``reference/column_a.md``): 41 stages counted from the
bottom (reboiler = stage 1, total condenser = stage 41), feed on stage 21, constant relative
volatility 1.5, constant molar flows, no vapour holdup, linearised tray hydraulics
(``tau_L = 0.063 min``, K2 effect ``lambda``) and P controllers on the two levels (the "LV
configuration": reflux ``L_T`` and boilup ``V_B`` are the free inputs, ``D`` and ``B`` follow
the condenser and reboiler holdups). Time is in minutes, flows in kmol/min.

State vector ``z = [x_1 .. x_41, M_1 .. M_41]`` (liquid mole fraction of the light component,
then liquid holdup in kmol); inputs ``u = [L_T, V_B, F, z_F, q_F]``. Arrays are 0-based, so
``x[0]`` is the reboiler (x_B) and ``x[40]`` the condenser (y_D = x_D).

Why the composition equation is written as it is: substituting the total balance into the
component balance gives ``M_i dx_i/dt = L_in (x_{i+1} - x_i) + V_in (y_{i-1} - x_i)
- V_out (y_i - x_i) + F (z_F - x_i)``, in which the liquid leaving the stage drops out. That
form has fewer terms, keeps the analytic Jacobian short, and is exactly equivalent.

Integrator: the model is stiff (liquid hydraulics ``tau_L = 0.063 min`` and single-tray
composition modes around 0.1 min, next to a dominant time constant of about 194 min), so an
explicit method would need steps far below the 1-minute sample interval. A historian-style
simulation also holds the inputs constant over each sample interval (zero-order hold, as a
DCS does), so the integrator restarts at every sample: adaptive multistep codes
(``solve_ivp`` BDF/LSODA) pay their start-up (initial step search, order 1, fresh Jacobian
and LU) 10,080 times a week. :meth:`ColumnModel.advance` therefore uses the two-stage
Rosenbrock method ROS2 (Verwer et al., SIAM J. Sci. Comput. 20 (1999) 1456) with a few fixed
substeps per interval: it is L-stable, second order, linearly implicit (no Newton
iterations), and stays second order with a Jacobian frozen over the interval (it is a
W-method), so one analytic Jacobian and one 82x82 LU factorisation serve a whole sample
interval. Fixed steps also make runs bit-for-bit reproducible. The tests check it against
``solve_ivp(method="Radau")`` at tight tolerance.

The steady state is found by pseudo-transient continuation (implicit-Euler steps whose
length grows as the residual falls, ending in plain Newton steps) instead of simulating
20,000 minutes as ``cola_lv.m`` does: a few dozen linear solves instead of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import lapack

from service.contracts.arrays import FloatArray
from training.column_params import ColumnParams, Flows, Inputs
from training.errors import SimulationError

__all__ = ["FEED", "ColumnModel", "ColumnParams", "Flows", "Inputs", "SteadyStateError"]

# Index of each input in the input vector u.
REFLUX, BOILUP, FEED, Z_FEED, Q_FEED = range(5)
INPUT_NAMES = ("L_T", "V_B", "F", "z_F", "q_F")

# ROS2 parameter. Both roots of gamma^2 - 2 gamma + 1/2 = 0 make the method L-stable; on
# this column 1 - 1/sqrt(2) is several times more accurate per step than 1 + 1/sqrt(2)
# (checked against Radau in the tests), and it is still above the A-stability bound 1/4.
_ROS2_GAMMA = 1.0 - 1.0 / np.sqrt(2.0)


class SteadyStateError(SimulationError):
    """The steady-state iteration did not converge (inputs far outside the column's range)."""


@dataclass
class ColumnModel:
    """Right-hand side, Jacobian, steady state, linearisation and integration of Column A.

    >>> model = ColumnModel()
    >>> z = model.steady_state(model.params.nominal_inputs())
    >>> round(float(z[0]), 4), round(float(z[40]), 4)
    (0.01, 0.99)
    """

    params: ColumnParams = field(default_factory=ColumnParams)
    # Precomputed constants (set in __post_init__; not constructor arguments).
    _m0: FloatArray = field(init=False, repr=False)
    _l_base: FloatArray = field(init=False, repr=False)
    _inv_tau: float = field(init=False, repr=False)
    _above: FloatArray = field(init=False, repr=False)
    _dlin_dm: FloatArray = field(init=False, repr=False)
    _jac_template: FloatArray = field(init=False, repr=False)
    _flat_xx: NDArray[np.intp] = field(init=False, repr=False)
    _flat_xup: NDArray[np.intp] = field(init=False, repr=False)
    _flat_xdown: NDArray[np.intp] = field(init=False, repr=False)
    _flat_xm: NDArray[np.intp] = field(init=False, repr=False)
    _flat_xmup: NDArray[np.intp] = field(init=False, repr=False)
    _eye: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p = self.params
        n = p.n_stages
        f = p.feed_stage - 1
        m0 = np.full(n, p.holdup)
        m0[0] = p.holdup_reboiler
        m0[-1] = p.holdup_condenser
        self._m0 = m0
        self._inv_tau = 1.0 / p.tau_l
        # Nominal weir flows: L0_b on trays 2..NF, L0 above the feed.
        self._l_base = np.where(np.arange(1, n - 1) <= f, p.reflux0_bottom, p.reflux0)
        # 1 for the vapour streams (leaving stage k = 0..n-2) that carry the feed's vapour.
        self._above = (np.arange(n - 1) >= f).astype(np.float64)
        # d(L_in of stage k)/d(M_{k+1}): 1/tau_L when the stage above is a tray, else 0
        # (the reflux into the top tray is an input, not a weir flow).
        dlin = np.zeros(n)
        dlin[: n - 2] = 1.0 / p.tau_l
        self._dlin_dm = dlin
        # The holdup rows of the Jacobian are constant (the total balances are linear in M);
        # the composition rows are filled through flat indices, one assignment per band.
        template = np.zeros((2 * n, 2 * n))
        k = np.arange(n)
        dlout = np.full(n, 1.0 / p.tau_l)
        dlout[0] = p.k_bottoms
        dlout[-1] = p.k_distillate
        template[n + k, n + k] = -dlout
        template[n + k[:-1], n + k[:-1] + 1] = dlin[:-1]
        self._jac_template = template
        width = 2 * n
        self._flat_xx = k * width + k
        self._flat_xup = k[:-1] * width + k[:-1] + 1
        self._flat_xdown = k[1:] * width + k[1:] - 1
        self._flat_xm = k * width + n + k
        self._flat_xmup = k[:-1] * width + n + k[:-1] + 1
        self._eye = np.eye(2 * n)

    # ------------------------------------------------------------------ flows and RHS

    def _tray_liquid(self, m: FloatArray, ua: FloatArray) -> FloatArray:
        """Liquid leaving trays 2..NT-1 (linearised weir with optional K2 effect)."""
        lv = self._l_base + (m[1:-1] - self._m0[1:-1]) * self._inv_tau
        p = self.params
        if p.lam != 0.0:
            v_below = float(ua[BOILUP])
            v_above = v_below + (1.0 - float(ua[Q_FEED])) * float(ua[FEED])
            lam = np.where(self._above[1:], v_above - p.boilup0_top, v_below - p.boilup0)
            lv = lv + p.lam * lam
        return lv

    def _vapour(self, ua: FloatArray) -> FloatArray:
        """Vapour leaving stages 1..NT-1: V_B below the feed, plus the feed's vapour above."""
        return float(ua[BOILUP]) + (1.0 - float(ua[Q_FEED])) * float(ua[FEED]) * self._above

    def product_flows(self, z: FloatArray) -> tuple[float, float]:
        """(D, B) from the level P controllers."""
        p = self.params
        d = p.distillate0 + p.k_distillate * (float(z[-1]) - p.holdup_condenser)
        b = p.bottoms0 + p.k_bottoms * (float(z[p.n_stages]) - p.holdup_reboiler)
        return d, b

    def flows(self, z: FloatArray, u: Inputs | FloatArray) -> Flows:
        """All flows at state ``z``: used for sensors and for physical sanity checks."""
        ua = _as_array(u)
        d, b = self.product_flows(z)
        return Flows(
            liquid=self._tray_liquid(z[self.params.n_stages :], ua),
            vapour=self._vapour(ua),
            distillate=d,
            bottoms=b,
            reflux=float(ua[REFLUX]),
        )

    def rhs(self, z: FloatArray, u: Inputs | FloatArray) -> FloatArray:
        """dz/dt at state ``z`` and inputs ``u`` (``u`` held constant)."""
        return self._evaluate(z, _as_array(u), jacobian=False)[0]

    def jacobian(self, z: FloatArray, u: Inputs | FloatArray) -> FloatArray:
        """Analytic d(rhs)/dz, dense 82x82 (tridiagonal blocks; dense LU is cheap at 82)."""
        jac = self._evaluate(z, _as_array(u), jacobian=True)[1]
        assert jac is not None
        return jac

    def _evaluate(
        self, z: FloatArray, ua: FloatArray, *, jacobian: bool
    ) -> tuple[FloatArray, FloatArray | None]:
        """The right-hand side and, on request, its Jacobian, sharing the intermediate terms.

        Written with whole-array operations on the stage vectors (a Python loop over 41
        stages would dominate the run time of a week-long simulation).
        """
        p = self.params
        n = p.n_stages
        f = p.feed_stage - 1
        lt, vb, feed, zf, qf = ua.tolist()
        x = z[:n]
        m = z[n:]
        alpha = p.alpha
        y = alpha * x / (1.0 + (alpha - 1.0) * x)
        v = vb + (1.0 - qf) * feed * self._above  # V_k leaving stage k, k = 0..n-2
        lv = self._tray_liquid(m, ua)  # L_k leaving tray k, k = 1..n-2
        d, b = self.product_flows(z)
        lin = np.empty(n - 1)  # liquid into stage k from above, k = 0..n-2
        lin[:-1] = lv
        lin[-1] = lt

        dm = np.empty(n)
        dm[0] = lv[0] - vb - b
        dm[1:-1] = lin[1:] - lv
        dm[f] += qf * feed
        dm[-1] = v[-1] - lt - d

        dxs = x[1:] - x[:-1]
        num = np.zeros(n)
        num[:-1] = lin * dxs - v * (y[:-1] - x[:-1])
        num[1:] += v * (y[:-1] - x[1:])
        num[f] += feed * (zf - x[f])
        out = np.empty(2 * n)
        dxdt = num / m
        out[:n] = dxdt
        out[n:] = dm
        if not jacobian:
            return out, None

        dy = alpha / (1.0 + (alpha - 1.0) * x[:-1]) ** 2
        diag = np.empty(n)
        diag[:-1] = -lin - v * (dy - 1.0)
        diag[-1] = 0.0
        diag[1:] -= v
        diag[f] -= feed
        jac = self._jac_template.copy()
        jac.flat[self._flat_xx] = diag / m
        jac.flat[self._flat_xup] = lin / m[:-1]
        jac.flat[self._flat_xdown] = v * dy / m[1:]
        jac.flat[self._flat_xm] = -dxdt / m
        jac.flat[self._flat_xmup] = self._dlin_dm[:-1] * dxs / m[:-1]
        return out, jac

    def input_jacobian(self, z: FloatArray, u: Inputs | FloatArray) -> FloatArray:
        """d(rhs)/du by central differences: five columns, used offline for linearisation."""
        ua = _as_array(u).copy()
        out = np.empty((z.size, ua.size))
        for j in range(ua.size):
            h = 1e-6 * max(1.0, abs(ua[j]))
            up, dn = ua.copy(), ua.copy()
            up[j] += h
            dn[j] -= h
            out[:, j] = (self.rhs(z, up) - self.rhs(z, dn)) / (2.0 * h)
        return out

    # ------------------------------------------------------------------ steady state

    def initial_guess(self) -> FloatArray:
        """A smooth composition profile and nominal holdups to start the steady-state search."""
        p = self.params
        n = p.n_stages
        z = np.empty(2 * n)
        z[:n] = 0.5 + 0.45 * np.tanh(np.linspace(-3.0, 3.0, n))
        z[n:] = self._m0
        return z

    def steady_state(
        self,
        u: Inputs | FloatArray,
        guess: FloatArray | None = None,
        *,
        tol: float = 1e-12,
        max_iter: int = 400,
    ) -> FloatArray:
        """The state where ``rhs(z, u) = 0``, by pseudo-transient continuation.

        Each iteration is an implicit-Euler step ``(I/h - J) dz = f``; ``h`` grows as the
        residual falls (switched evolution relaxation), so the first steps follow the
        physical transient (robust from a poor guess) and the last ones are Newton steps
        (quadratic convergence). Steps that leave the physical region are retried shorter.

        >>> model = ColumnModel()
        >>> z = model.steady_state(model.params.nominal_inputs())
        >>> bool(abs(model.rhs(z, model.params.nominal_inputs())).max() < 1e-10)
        True
        """
        ua = _as_array(u)
        n = self.params.n_stages
        z = (self.initial_guess() if guess is None else np.asarray(guess, dtype=np.float64)).copy()
        res = self.rhs(z, ua)
        norm = float(np.abs(res).max())
        h = 1.0
        for _ in range(max_iter):
            if norm < tol:
                return z
            jac = self.jacobian(z, ua)
            dz = np.linalg.solve(self._eye / h - jac, res)
            z_new = z + dz
            if np.all(z_new[:n] > 0) and np.all(z_new[:n] < 1) and np.all(z_new[n:] > 0):
                res_new = self.rhs(z_new, ua)
                norm_new = float(np.abs(res_new).max())
                if np.isfinite(norm_new) and norm_new < 10.0 * norm:
                    h = min(h * max(norm / max(norm_new, 1e-300), 0.5), 1e15)
                    z, res, norm = z_new, res_new, norm_new
                    continue
            h *= 0.25
            if h < 1e-8:
                break
        if norm < 1e3 * tol:
            return z
        raise SteadyStateError(
            f"no steady state found for inputs {dict(zip(INPUT_NAMES, ua.tolist(), strict=True))}"
            f" (residual {norm:.3g})"
        )

    # ------------------------------------------------------------------ linearisation

    def linearise(self, z: FloatArray, u: Inputs | FloatArray) -> tuple[FloatArray, FloatArray]:
        """(A, B) of ``dz/dt = A dz + B du`` around (z, u)."""
        return self.jacobian(z, u), self.input_jacobian(z, u)

    def steady_state_gain(self, z: FloatArray, u: Inputs | FloatArray) -> FloatArray:
        """d[y_D, x_B]/du at steady state, ``-C A^-1 B`` with C picking x_NT and x_1."""
        a, b = self.linearise(z, u)
        dz = -np.linalg.solve(a, b)
        n = self.params.n_stages
        return np.vstack([dz[n - 1], dz[0]])

    @staticmethod
    def dominant_time_constant(a: FloatArray) -> float:
        """1/|Re lambda| of the slowest non-integrating eigenvalue of ``a``, in minutes.

        Eigenvalues within 1e-9 of zero are integrators (open level loops) and are skipped.
        """
        re = np.linalg.eigvals(a).real
        stable = re[re < -1e-9]
        return float(1.0 / np.abs(stable).min())

    # ------------------------------------------------------------------ integration

    def advance(
        self, z: FloatArray, u: Inputs | FloatArray, dt: float, substeps: int = 4
    ) -> FloatArray:
        """Integrate ``dt`` minutes with inputs held constant, by ``substeps`` ROS2 steps.

        One Jacobian and LU factorisation at the start serve every substep (ROS2 keeps
        second order with an approximate Jacobian). Four substeps of 0.25 min keep the
        error on x_B well below analyzer noise (see the tests against Radau).
        """
        ua = _as_array(u)
        h = dt / substeps
        f0, jac = self._evaluate(z, ua, jacobian=True)
        assert jac is not None
        # LAPACK getrf/getrs directly: the scipy.linalg wrappers' argument checks cost more
        # than the 82x82 solves themselves, and a simulated week needs about 80,000 solves.
        lu, piv, info = lapack.dgetrf(self._eye - (_ROS2_GAMMA * h) * jac)
        if info != 0:
            raise np.linalg.LinAlgError(f"singular iteration matrix (getrf info {info})")
        zc = z
        for i in range(substeps):
            if i > 0:
                f0 = self._evaluate(zc, ua, jacobian=False)[0]
            k1 = lapack.dgetrs(lu, piv, f0)[0]
            f1 = self._evaluate(zc + h * k1, ua, jacobian=False)[0]
            k2 = lapack.dgetrs(lu, piv, f1 - 2.0 * k1)[0]
            zc = zc + (1.5 * h) * k1 + (0.5 * h) * k2
        return np.asarray(zc, dtype=np.float64)


def _as_array(u: Inputs | FloatArray) -> FloatArray:
    return u.as_array() if isinstance(u, Inputs) else np.asarray(u, dtype=np.float64)
