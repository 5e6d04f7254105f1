"""The status of every served row, decided in one place: good, uncertain or bad, with reasons.

The rules follow Emerson DeltaV's neural network block, the industrial precedent for a soft
sensor's output status (DeltaV Books Online, "Neural Network function block status
handling"): the estimate is Good when its inputs are good and inside the training range,
Uncertain when an input is uncertain or any input (or the output) is outside the training
range, Bad when an input is bad or more than five inputs are outside the training range.
Here, per row:

===================================================  =========  =========================
evidence                                              status     reason
===================================================  =========  =========================
a value outside its signal's valid (physical) range   bad        ``out_of_range:<signal>``
more than ``bad_outside_limit(n)`` signals outside     bad        (their reasons below)
more than ``bad_outside_limit(n)`` bad inputs          bad        (their reasons below)
an input the historian marks bad (or a digital state)  uncertain  ``quality_bad:<signal>``
an input the historian marks uncertain                 uncertain  ``quality_uncertain:<s>``
a signal outside its training range                   uncertain  ``outside_training:<s>``
Hotelling T2 above its 99 % limit                      uncertain  ``t2``
SPE (Q) above its 99 % limit                           uncertain  ``spe``
lags reaching before the stream's first sample         uncertain  ``missing_history``
a value not sent, carried forward                      uncertain  ``imputed:<signal>``
a sensor unchanged past its frozen window              uncertain  ``frozen:<signal>``
a sensor the stream's drift detector flags             uncertain  ``drift:<signal>``
the estimate clamped to the target's physical range    uncertain  ``clamped``
the stream's analyzer silent: its bias is stale        uncertain  ``bias_stale``
===================================================  =========  =========================

DeltaV's "more than five" is of a block with up to 20 inputs, a quarter of them; a model with
fewer inputs gets the same share, ``round(n / 4)``, at least one: a 12-signal model is bad
with four signals outside, a 3-signal model with two. Counted per signal, not per lagged
feature, since a sensor out of range takes its lagged copies with it.

Differences from DeltaV, on purpose: a bad input is substituted (carried forward, the card's
policy for a gap) and makes the row uncertain, not bad, up to the same quarter of the signals
(DeltaV makes the output Bad at the first Bad input; an operator would rather see an uncertain
estimate than none when one transmitter of twelve drops out); a value outside its physical
range is treated as a bad input (DeltaV has the transmitter's own status for that); T2 and
SPE add the multivariate check DeltaV lacks (a row can be inside every single range and
still unlike training).
Evidence comes in two shapes, per signal and per row; input qualities sent by a historian
(``service.scoring.qualities``) are per-signal evidence like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

Flags = NDArray[np.bool_]
GOOD, UNCERTAIN, BAD = 0, 1, 2
STATUS_NAMES = ("good", "uncertain", "bad")


def bad_outside_limit(signals: int) -> int:
    """Signals outside the training range a row may have before it is bad (DeltaV's 5 of 20)."""
    return max(1, round(signals / 4))


class SignalEvidence(NamedTuple):
    """Per-signal evidence: ``flags`` [n, len(names)] gives a flagged row at least ``level``;
    more than ``bad_above`` flags in one row make it bad. (Tuples: built for every request.)"""

    reason: str
    names: Sequence[str]
    flags: Flags
    level: int = UNCERTAIN
    bad_above: int | None = None


class RowEvidence(NamedTuple):
    """Per-row evidence: ``flags`` [n] gives a flagged row at least ``level``."""

    reason: str
    flags: Flags
    level: int = UNCERTAIN


@dataclass(frozen=True)
class Statuses:
    """Each row's status code (``STATUS_NAMES`` index) and, for rows not good, its reasons."""

    codes: NDArray[np.uint8]
    reasons: dict[int, list[str]]

    def name(self, i: int) -> str:
        return STATUS_NAMES[int(self.codes[i])]


def _read_only(level: int) -> NDArray[np.uint8]:
    codes = np.array([level], dtype=np.uint8)
    codes.flags.writeable = False
    return codes


_ONE_ROW = tuple(_read_only(level) for level in range(len(STATUS_NAMES)))  # shared, never written


def one_row(why: list[str], level: int = UNCERTAIN) -> Statuses:
    """The status of a single row with these reasons (good without any)."""
    return Statuses(_ONE_ROW[level if why else GOOD], {0: why} if why else {})


def decide(
    n: int, per_signal: Sequence[SignalEvidence], per_row: Sequence[RowEvidence]
) -> Statuses:
    """Apply the rules: a row's status is the worst level any of its evidence gives."""
    if n == 1:
        return _decide_one(per_signal, per_row)
    codes = np.zeros(n, dtype=np.uint8)
    hit_signal: list[SignalEvidence] = []
    hit_row: list[RowEvidence] = []
    for s in per_signal:
        if s.flags.any():
            hit_signal.append(s)
            rows = s.flags.any(axis=1)
            np.maximum(codes, np.where(rows, s.level, GOOD).astype(np.uint8), out=codes)
            if s.bad_above is not None:
                codes[s.flags.sum(axis=1) > s.bad_above] = BAD
    for r in per_row:
        if r.flags.any():
            hit_row.append(r)
            np.maximum(codes, np.where(r.flags, r.level, GOOD).astype(np.uint8), out=codes)
    reasons: dict[int, list[str]] = {}
    for i in np.flatnonzero(codes).tolist():
        why = []
        for s in hit_signal:
            why += [
                f"{s.reason}:{name}" for name, hit in zip(s.names, s.flags[i], strict=True) if hit
            ]
        why += [r.reason for r in hit_row if r.flags[i]]
        reasons[i] = why
    return Statuses(codes, reasons)


def _decide_one(per_signal: Sequence[SignalEvidence], per_row: Sequence[RowEvidence]) -> Statuses:
    """``decide`` for one row (a historian's poll), in Python: the same rules and reasons."""
    level, why = GOOD, []
    for s in per_signal:
        row = s.flags[0]
        if row.any():
            hits = [name for name, hit in zip(s.names, row.tolist(), strict=True) if hit]
            why += [f"{s.reason}:{name}" for name in hits]
            level = max(level, s.level)
            if s.bad_above is not None and len(hits) > s.bad_above:
                level = BAD
    for r in per_row:
        if r.flags[0]:
            why.append(r.reason)
            level = max(level, r.level)
    return one_row(why, level)
