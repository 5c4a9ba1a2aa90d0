"""The shared optimiser: fused AdamW where the parameters allow it, its state made up front, the same update as
torch's default loop with its state made at the first step."""
import pytest
import torch

from r1lab.optim import make_optimizer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # fused; the per-tensor path (fp64 is not fusable)
def test_our_adamw_makes_the_default_loops_update(dtype):
    torch.manual_seed(0)
    ours_model, plain_model = torch.nn.Linear(16, 8).to(dtype), torch.nn.Linear(16, 8).to(dtype)
    plain_model.load_state_dict(ours_model.state_dict())
    start = ours_model.weight.detach().clone()
    optimizer, _ = make_optimizer(ours_model, lr=1e-2, weight_decay=0.1, schedule="constant", total_updates=3)
    assert bool(optimizer.param_groups[0]["fused"]) == (dtype == torch.float32)
    assert all(len(optimizer.state[p]) == 3 for p in ours_model.parameters())  # made before any step
    reference = torch.optim.AdamW(plain_model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        x = torch.randn(4, 16, dtype=dtype)
        for model, opt in ((ours_model, optimizer), (plain_model, reference)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert (ours_model.weight - start).abs().max() > 1e-3  # the updates were not no-ops
    assert all(float(optimizer.state[p]["step"]) == 3 for p in ours_model.parameters())


def test_a_resumed_optimizer_takes_the_saved_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer, _ = make_optimizer(model, lr=1e-2, weight_decay=0.0, schedule="constant", total_updates=2)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()
    resumed, _ = make_optimizer(model, lr=1e-2, weight_decay=0.0, schedule="constant", total_updates=2)
    resumed.load_state_dict(saved)
    for p in model.parameters():
        assert float(resumed.state[p]["step"]) == 1
        assert torch.equal(resumed.state[p]["exp_avg"], optimizer.state[p]["exp_avg"])
