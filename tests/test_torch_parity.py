"""Parity with PyTorch autograd: the engine's forward and backward pass, layer by layer.

The same weights, biases, input, dropout masks and upstream gradient (drawn by the engine) go
through ``torch.nn.functional`` in float64: ``a = h W + b``, batch norm in training mode
(``F.batch_norm(training=True)``, the biased batch variance), the activation, the inverted
dropout multiplier, and ``L = sum(g * h_L)`` differentiated by autograd. Every number the
simulation reports per layer is compared: the output's mean and std, phi's input's mean and
std, E[phi'(z)^2] (phi' by autograd, so the conventions at the kinks are PyTorch's), the RMS
of dL/dh, the norm of the sample-mean dL/dW and the RMS of dL/dx, for every activation with and
without a bias, batch norm on either side of phi, and dropout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from initscope.engine.layers import BatchNorm
from initscope.engine.network import gradient_stream, input_stream
from initscope.engine.simulation import analysis_network, make_input, make_upstream, simulate

from tests.helpers import make_job

Phi = Callable[[torch.Tensor], torch.Tensor]

ACTIVATIONS: dict[str, tuple[Any, Phi]] = {
    "linear": ("linear", lambda z: z),
    "sigmoid": ("sigmoid", torch.sigmoid),
    "tanh": ("tanh", torch.tanh),
    "relu": ("relu", F.relu),
    "leaky_relu": (
        {"name": "leaky_relu", "negative_slope": 0.2},
        lambda z: F.leaky_relu(z, 0.2),
    ),
    "elu": ({"name": "elu", "alpha": 0.5}, lambda z: F.elu(z, 0.5)),
    "selu": ("selu", F.selu),
    "gelu": ("gelu", lambda z: F.gelu(z, approximate="none")),
    "silu": ("silu", F.silu),
    "softplus": (
        {"name": "softplus", "beta": 2.0, "threshold": 3.0},
        lambda z: F.softplus(z, beta=2.0, threshold=3.0),
    ),
    "hard_tanh": (
        {"name": "hard_tanh", "min_val": -0.5, "max_val": 0.5},
        lambda z: F.hardtanh(z, -0.5, 0.5),
    ),
}

EXTRAS: dict[str, dict[str, Any]] = {
    "plain": {},
    "bias": {"bias": {"scheme": "normal", "std": 0.3}},
    "bn before": {"batch_norm": {"placement": "before", "gamma": 1.5, "beta": 0.1}},
    "bn after + dropout": {"batch_norm": {"placement": "after"}, "dropout": 0.3},
}


def near(expected: Any) -> Any:
    """Equal to float64 rounding: the two pass the same operations in different orders."""
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().square().mean().sqrt())


def _batch_norm(t: torch.Tensor, norm: BatchNorm) -> torch.Tensor:
    """Training mode: the batch's mean and biased variance, the engine's gamma and beta."""
    gamma, beta = torch.tensor(norm.gamma.value), torch.tensor(norm.beta.value)
    return F.batch_norm(t, None, None, gamma, beta, training=True, eps=float(norm.eps))


def _torch_pass(job: Any, phi: Phi) -> dict[str, list[float]]:
    """The pass in PyTorch on the engine's own draws: what each layer reports."""
    network = analysis_network(job)
    x = make_input(job, input_stream(job.seed))
    network.forward(x, "train")  # draws each layer's dropout mask, as the simulation does
    h = leaf = torch.tensor(x, requires_grad=True)
    n = x.shape[0]
    report: dict[str, list[float]] = {key: [] for key in ("mean", "std", "z_mean", "z_std")}
    report["d2"], outputs, weights = [], [], []
    for block in network.blocks:
        w = torch.tensor(block.dense.w.value, requires_grad=True)
        a = h @ w + torch.tensor(block.dense.b.value)
        z = a
        if block.before is not None:
            z = _batch_norm(a, block.before)
        zd = z.detach().requires_grad_()
        (slope,) = torch.autograd.grad(phi(zd).sum(), zd)
        u = phi(z)
        if block.after is not None:
            u = _batch_norm(u, block.after)
        if block.dropout is not None:
            assert block.dropout.mask is not None
            u = u * torch.tensor(block.dropout.mask)
        h = u
        outputs.append(h)
        weights.append(w)
        out, pre = h.detach(), z.detach()
        report["mean"].append(float(out.mean()))
        report["std"].append(float(out.std(correction=0)))
        report["z_mean"].append(float(pre.mean()))
        report["z_std"].append(float(pre.std(correction=0)))
        report["d2"].append(float(slope.square().mean()))
    upstream = torch.tensor(make_upstream(job, gradient_stream(job.seed)))
    depth = len(weights)
    grads = torch.autograd.grad((outputs[-1] * upstream).sum(), [leaf, *weights, *outputs])
    report["input_grad"] = [_rms(grads[0])]
    report["weight_grad"] = [float((g / n).norm()) for g in grads[1 : 1 + depth]]
    report["grad_rms"] = [_rms(g) for g in grads[1 + depth :]]
    return report


@pytest.mark.parametrize("extra", EXTRAS, ids=list(EXTRAS))
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=list(ACTIVATIONS))
def test_the_engine_matches_pytorch_autograd(activation: str, extra: str) -> None:
    spec, phi = ACTIVATIONS[activation]
    job = make_job(
        {
            "network": {
                "input_dim": 24,
                "depth": 4,
                "width": 32,
                "activation": spec,
                "init": {"scheme": "normal", "std": 0.3},
                **EXTRAS[extra],
            },
            "input": {"samples": 64},
            "gradient": {"source": "random_normal"},
            "dtype": "float64",
            "theory": False,
            "recommend": False,
            "seed": 5,
        }
    )
    ours = simulate(job)
    theirs = _torch_pass(job, phi)
    layers = ours.layers
    assert [x.activations.mean for x in layers] == near(theirs["mean"])
    assert [x.activations.std for x in layers] == near(theirs["std"])
    assert [x.preactivations.mean for x in layers] == near(theirs["z_mean"])
    assert [x.preactivations.std for x in layers] == near(theirs["z_std"])
    assert [x.mean_derivative_sq for x in layers] == near(theirs["d2"])
    grads = [x.gradients for x in layers]
    assert [g.output_grad_rms for g in grads] == near(theirs["grad_rms"])
    assert [g.weight_grad_norm for g in grads] == near(theirs["weight_grad"])
    assert ours.input_grad_rms == near(theirs["input_grad"][0])
