"""Pruners: masks, the cubic schedule, connection appraisal's rules and its safety limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.appraisal import CAPruner
from training.config import CAConfig, NetworkConfig
from training.network import MaskedMLP
from training.pruning import (
    GMPPruner,
    MagnitudePruner,
    RandomPruner,
    Schedule,
    prune_connections,
)


def _model(seed: int = 0, hidden: tuple[int, ...] = (8, 6)) -> MaskedMLP:
    torch.manual_seed(seed)
    return MaskedMLP(5, 1, NetworkConfig(hidden=hidden, linear_path=False))


def _adam(model: MaskedMLP) -> torch.optim.Adam:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(16, 5)
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    return opt


def test_prune_connections_zeroes_weight_mask_and_adam_moments() -> None:
    """A removed connection loses its weight, mask and optimizer memory together."""
    model = _model()
    opt = _adam(model)
    layer = model.masked_layers()[0]
    drop = torch.zeros_like(layer.mask, dtype=torch.bool)
    drop[0, :3] = True
    assert prune_connections(layer, drop, opt) == 3
    assert prune_connections(layer, drop, opt) == 0  # already gone: no double count
    state = opt.state[layer.weight]
    for t in (layer.mask, layer.weight, state["exp_avg"], state["exp_avg_sq"]):
        assert torch.all(t[0, :3] == 0)
    assert torch.all(layer.weight[1] != 0)


def test_pruned_connections_stay_zero_through_training() -> None:
    """No regrowth: after more steps the pruned weights are still exactly zero."""
    model = _model()
    opt = _adam(model)
    layer = model.masked_layers()[1]
    drop = torch.rand(layer.mask.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    prune_connections(layer, drop, opt)
    for _ in range(20):
        opt.zero_grad()
        model(torch.randn(16, 5)).pow(2).mean().backward()
        opt.step()
        model.apply_masks()
    assert torch.all(layer.weight[drop] == 0)
    assert model.pruning_rate() == pytest.approx(int(drop.sum()) / 94)  # 5*8 + 8*6 + 6*1 weights


def test_schedule_warmup_and_freeze() -> None:
    """Warm-up is max(3, 10%); masks are frozen for the last 15%."""
    s = Schedule.plan(200, 0.1, 3, 0.15)
    assert (s.warmup_epochs, s.freeze_epoch) == (20, 170)
    s = Schedule.plan(10, 0.1, 3, 0.15)
    assert (s.warmup_epochs, s.freeze_epoch) == (3, 9)


def test_gmp_follows_the_cubic_schedule_to_the_target() -> None:
    """Zhu & Gupta: s_t = s_f + (s_i - s_f)(1 - progress)^3, reaching s_f before the freeze."""
    model = _model()
    opt = _adam(model)
    pruner = GMPPruner([0.5, 0.7, 0.3])
    pruner.start(model, opt, 100)
    t0, t_end = pruner.schedule.warmup_epochs, pruner.schedule.freeze_epoch - 1
    mid = (t0 + t_end) // 2
    progress = (mid - t0) / (t_end - t0)
    assert pruner.sparsity_at(mid, 0.5) == pytest.approx(0.5 - 0.5 * (1 - progress) ** 3)
    for epoch in range(100):
        pruner.end_epoch(epoch, model, opt, 0.0)
        if epoch == mid:
            expected = round(pruner.sparsity_at(mid, 0.7) * 48) / 48
            assert model.pruning_rate_per_layer()[1] == pytest.approx(expected)
    rates = model.pruning_rate_per_layer()
    assert rates == pytest.approx([0.5, round(0.7 * 48) / 48, round(0.3 * 6) / 6])


def test_magnitude_one_shot_removes_the_smallest_weights() -> None:
    """Han et al.: prune once at the given point; survivors are the largest weights."""
    model = _model()
    opt = _adam(model)
    pruner = MagnitudePruner(0.5, prune_at=0.5)
    pruner.start(model, opt, 10)
    layer = model.masked_layers()[0]
    before = layer.weight.detach().abs().clone()
    for epoch in range(10):
        removed = pruner.end_epoch(epoch, model, opt, 0.0)
        assert (removed > 0) == (epoch == 5)
    kept = before[layer.mask.bool()]
    gone = before[~layer.mask.bool()]
    assert kept.min() >= gone.max()
    assert layer.mask.mean().item() == pytest.approx(0.5)


def test_random_pruning_reaches_the_target_and_depends_on_seed() -> None:
    masks = []
    for seed in (0, 1):
        model = _model()
        opt = _adam(model)
        pruner = RandomPruner(0.6, seed=seed, prune_at=0.1)
        pruner.start(model, opt, 10)
        for epoch in range(10):
            pruner.end_epoch(epoch, model, opt, 0.0)
        assert model.pruning_rate_per_layer()[0] == pytest.approx(0.6)
        masks.append(model.masked_layers()[0].mask.clone())
    assert not torch.equal(masks[0], masks[1])


def _appraise(pruner: CAPruner, model: MaskedMLP, opt: torch.optim.Optimizer, epoch: int) -> int:
    return pruner.end_epoch(epoch, model, opt, 1.0)


def _ca_with_scores(
    scores: list[torch.Tensor], **kw: object
) -> tuple[CAPruner, MaskedMLP, torch.optim.Optimizer]:
    model = _model(hidden=(4,))
    opt = _adam(model)
    pruner = CAPruner(CAConfig(min_warmup=0, warmup_fraction=0, freeze_fraction=0, **kw))  # type: ignore[arg-type]
    pruner.start(model, opt, 100)
    for i, s in enumerate(scores):
        pruner.scores_[i] = s.clone()
    return pruner, model, opt


def test_ca_prunes_only_after_patience_consecutive_appraisals() -> None:
    """A connection below tau is removed at the third appraisal in a row, not before."""
    s0 = torch.ones(4, 5)
    s0[0, 0] = 0.1  # r ~ 0.1 / 0.955 < 0.5
    pruner, model, opt = _ca_with_scores([s0, torch.ones(1, 4)], patience=3)
    layer = model.masked_layers()[0]
    assert _appraise(pruner, model, opt, 0) == 0
    assert _appraise(pruner, model, opt, 1) == 0
    assert layer.mask[0, 0] == 1
    assert _appraise(pruner, model, opt, 2) == 1
    assert layer.mask[0, 0] == 0
    assert int(layer.mask.sum()) == 19


def test_ca_counter_resets_when_a_connection_recovers() -> None:
    """Consistency: one appraisal above tau resets the count."""
    s0 = torch.ones(4, 5)
    s0[0, 0] = 0.1
    pruner, model, opt = _ca_with_scores([s0, torch.ones(1, 4)], patience=3)
    _appraise(pruner, model, opt, 0)
    _appraise(pruner, model, opt, 1)
    pruner.scores_[0][0, 0] = 1.0
    _appraise(pruner, model, opt, 2)
    pruner.scores_[0][0, 0] = 0.1
    _appraise(pruner, model, opt, 3)
    assert model.masked_layers()[0].mask[0, 0] == 1
    assert int(pruner.counts_[0][0, 0]) == 1


def test_ca_relative_importance_is_against_active_connections() -> None:
    """r divides by the mean over the layer's active connections only."""
    s0 = torch.full((4, 5), 2.0)
    pruner, model, opt = _ca_with_scores([s0, torch.ones(1, 4)])
    layer = model.masked_layers()[0]
    drop = torch.zeros_like(layer.mask, dtype=torch.bool)
    drop[:, 0] = True
    prune_connections(layer, drop, opt)
    pruner.scores_[0][:, 0] = 0.0
    r = pruner.relative_importance(0, layer)
    assert torch.allclose(r[:, 1:], torch.ones(4, 4))
    assert torch.all(r[:, 0] == 0)


def test_ca_caps_each_appraisal_at_a_fifth_of_the_layer() -> None:
    """At most 20% of a layer's active connections go per appraisal, the weakest first."""
    s0 = torch.ones(4, 5)
    s0[:2, :] = torch.linspace(0.01, 0.1, 10).view(2, 5)  # 10 connections below tau
    pruner, model, opt = _ca_with_scores([s0, torch.ones(1, 4)], patience=1)
    layer = model.masked_layers()[0]
    assert _appraise(pruner, model, opt, 0) == 4
    assert torch.all(layer.mask[0, :4] == 0) and layer.mask[0, 4] == 1


def test_ca_keeps_the_strongest_input_of_an_output_neuron() -> None:
    """The output neuron is never cut off: its strongest input survives any threshold."""
    pruner, model, opt = _ca_with_scores(
        [torch.ones(4, 5), torch.tensor([[0.1, 0.2, 0.05, 0.3]])],
        patience=1,
        tau=10.0,
        max_prune_fraction=1.0,
    )
    _appraise(pruner, model, opt, 0)
    out_mask = model.masked_layers()[1].mask
    assert out_mask.tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_ca_min_density_guard() -> None:
    """With a minimum density, a layer is never pruned below it."""
    pruner, model, opt = _ca_with_scores(
        [torch.rand(4, 5, generator=torch.Generator().manual_seed(0)), torch.ones(1, 4)],
        patience=1,
        tau=10.0,
        max_prune_fraction=1.0,
        min_density=0.3,
    )
    for epoch in range(5):
        _appraise(pruner, model, opt, epoch)
    assert int(model.masked_layers()[0].mask.sum()) == 6


def test_ca_window_and_leaky_variants() -> None:
    """window: below tau in >= q of the last W; leaky: v <- rho v + (r - tau) < -kappa."""
    s0 = torch.ones(4, 5)
    s0[0, 0] = 0.1
    pruner, model, opt = _ca_with_scores(
        [s0, torch.ones(1, 4)], consistency="window", window=5, window_fraction=0.6
    )
    layer = model.masked_layers()[0]
    removed = [_appraise(pruner, model, opt, e) for e in range(3)]
    assert removed == [0, 0, 1] and layer.mask[0, 0] == 0

    pruner, model, opt = _ca_with_scores(
        [s0, torch.ones(1, 4)], consistency="leaky", leak=0.5, kappa=0.6
    )
    # r = 0.1 / 0.955: v after 1 appraisal = -0.395, after 2 = -0.593, after 3 = -0.692
    removed = [_appraise(pruner, model, opt, e) for e in range(3)]
    assert removed == [0, 0, 1]


def test_ca_activity_criterion_reads_the_layer_input() -> None:
    """c_ij = |w_ij| * mean_b |a_j|: a dead input makes its connections worthless."""
    model = _model(hidden=(4,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pruner = CAPruner(CAConfig(beta=0.0))
    pruner.start(model, opt, 100)
    x = torch.randn(32, 5)
    x[:, 2] = 0.0
    model.train()
    model(x)
    pruner.after_step(model)
    layer = model.masked_layers()[0]
    expected = layer.weight.abs() * x.abs().mean(0)
    assert torch.allclose(pruner.scores_[0], expected)
    assert torch.all(pruner.scores_[0][:, 2] == 0)


def test_ca_taylor_criterion_uses_gradients() -> None:
    model = _model(hidden=(4,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pruner = CAPruner(CAConfig(beta=0.0, criterion="taylor"))
    pruner.start(model, opt, 100)
    model(torch.randn(8, 5)).pow(2).mean().backward()
    pruner.after_backward(model)
    layer = model.masked_layers()[0]
    assert layer.weight.grad is not None
    assert torch.allclose(pruner.scores_[0], (layer.weight * layer.weight.grad).abs())


@pytest.mark.parametrize(
    ("field", "value"), [("tau", -1.0), ("patience", 0), ("beta", 1.0), ("criterion", "x")]
)
def test_ca_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"invalid CA setting {field}"):
        CAConfig(**{field: value})  # type: ignore[arg-type]


def test_gmp_needs_matching_layer_count() -> None:
    model = _model()
    with pytest.raises(ValueError, match="needs 3 values"):
        GMPPruner([0.5, 0.5]).start(model, _adam(model), 10)


def test_no_numpy_state_leaks_between_pruners() -> None:
    """Two CA pruners on two models keep separate state."""
    a, b = CAPruner(), CAPruner()
    ma, mb = _model(0), _model(1)
    a.start(ma, _adam(ma), 10)
    b.start(mb, _adam(mb), 10)
    a.scores_[0].fill_(3.0)
    assert not np.allclose(b.scores_[0].numpy(), 3.0)
