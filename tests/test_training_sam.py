"""SAM / ASAM: one step on a quadratic matches the closed form; the wrapper behaves as an optimizer."""

from __future__ import annotations

import pytest
import torch

from training.sam import SAM

A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)  # symmetric PD
W0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
LR, RHO = 0.1, 0.05


def quadratic(w: torch.Tensor) -> torch.Tensor:
    """f(w) = 0.5 w^T A w, gradient A w."""
    return 0.5 * w @ A @ w


def sam_step_closed_form(w: torch.Tensor, adaptive: bool = False) -> torch.Tensor:
    g = A @ w
    if adaptive:  # ASAM: e = rho * w^2 g / || |w| g ||
        e = RHO * w * w * g / torch.linalg.norm(w.abs() * g)
    else:  # SAM: e = rho * g / ||g||
        e = RHO * g / torch.linalg.norm(g)
    return w - LR * (A @ (w + e))


def new_sam(adaptive: bool = False) -> tuple[torch.nn.Parameter, SAM]:
    w = torch.nn.Parameter(W0.clone())
    return w, SAM([w], torch.optim.SGD, rho=RHO, adaptive=adaptive, lr=LR)


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_step_with_first_and_second_step_matches_the_closed_form(adaptive):
    w, opt = new_sam(adaptive)
    quadratic(w).backward()
    opt.first_step(zero_grad=True)
    quadratic(w).backward()
    opt.second_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), sam_step_closed_form(W0, adaptive), rtol=1e-12, atol=1e-12)
    assert w.grad is None and not opt.perturbed


def test_sam_closed_form_by_hand():
    # w - lr * A (w + rho * A w / ||A w||), written out once more without the helper
    g = A @ W0
    expected = W0 - LR * A @ (W0 + RHO * g / g.norm())
    w, opt = new_sam()
    quadratic(w).backward()

    def closure():
        opt.zero_grad()
        loss = quadratic(w)
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=1e-12)


def test_sam_with_a_tiny_rho_is_plain_sgd():
    w = torch.nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=1e-12, lr=LR)
    quadratic(w).backward()
    opt.first_step(zero_grad=True)
    quadratic(w).backward()
    opt.second_step()
    torch.testing.assert_close(w.detach(), W0 - LR * A @ W0)


def test_restore_puts_the_weights_back_exactly():
    w, opt = new_sam()
    quadratic(w).backward()
    opt.first_step()
    assert opt.perturbed and not torch.equal(w.detach(), W0)
    opt.restore()
    assert torch.equal(w.detach(), W0) and not opt.perturbed


def test_step_without_closure_finishes_a_started_step():
    w, opt = new_sam()
    quadratic(w).backward()
    opt.first_step(zero_grad=True)
    quadratic(w).backward()
    opt.step()  # what the Hugging Face trainer calls
    torch.testing.assert_close(w.detach(), sam_step_closed_form(W0), rtol=1e-12, atol=1e-12)


def test_scheduler_and_state_dict_reach_the_base_optimizer():
    w = torch.nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.AdamW, rho=RHO, lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert opt.base_optimizer.param_groups[0]["lr"] == 0.5
    quadratic(w).backward()
    opt.first_step(zero_grad=True)
    quadratic(w).backward()
    opt.step()
    scheduler.step()
    state = opt.state_dict()
    assert "exp_avg" in state["state"][0]  # AdamW's moments, not SAM's (empty) state
    other = SAM([torch.nn.Parameter(W0.clone())], torch.optim.AdamW, rho=RHO, lr=1.0)
    other.load_state_dict(state)
    assert torch.equal(other.base_optimizer.state_dict()["state"][0]["exp_avg"], state["state"][0]["exp_avg"])


def test_fp16_parameters_are_refused_with_a_clear_message():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    with pytest.raises(ValueError, match="SAM/ASAM cannot train in fp16.*use bf16 or fp32"):
        SAM([w], torch.optim.SGD, lr=0.1)


@pytest.mark.parametrize("call, message", [
    (lambda opt: opt.first_step(), "found no gradients; call backward first"),
])
def test_misuse_is_explained(call, message):
    _, opt = new_sam()
    with pytest.raises(RuntimeError, match=message):
        call(opt)


def test_first_step_twice_is_an_error():
    w, opt = new_sam()
    quadratic(w).backward()
    opt.first_step()
    with pytest.raises(RuntimeError, match="first_step called twice"):
        opt.first_step()


def test_rho_must_be_positive():
    with pytest.raises(ValueError, match="rho must be positive, got 0"):
        SAM([torch.nn.Parameter(W0.clone())], torch.optim.SGD, rho=0, lr=0.1)
