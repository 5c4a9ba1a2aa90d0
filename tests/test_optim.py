"""The shared optimiser: fused AdamW where the parameters allow it, the same update as torch's default loop."""
import torch

from r1lab.optim import make_optimizer


def test_fused_adamw_makes_the_default_loops_update():
    torch.manual_seed(0)
    fused_model, plain_model = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)
    plain_model.load_state_dict(fused_model.state_dict())
    start = fused_model.weight.detach().clone()
    optimizer, _ = make_optimizer(fused_model, lr=1e-2, weight_decay=0.1, schedule="constant", total_updates=3)
    assert optimizer.param_groups[0]["fused"]
    reference = torch.optim.AdamW(plain_model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        x = torch.randn(4, 16)
        for model, opt in ((fused_model, optimizer), (plain_model, reference)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert (fused_model.weight - start).abs().max() > 1e-3  # the updates were not no-ops
