"""Training: the book's init experiment reproduced on the synthetic tasks, backprop against
finite differences, PyTorch's optimiser rules, determinism, and the /train route."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.engine.initializers import Lsuv
from initscope.engine.layers import BatchNorm, Parameter
from initscope.train_schemas import TrainRequest
from initscope.training.datasets import Digits, Spirals, Teacher, make_dataset, validation_count
from initscope.training.loop import (
    ANALYSIS_ROWS,
    TrainJob,
    analysis_job,
    build_network,
    dataset,
    loss_and_gradients,
    train,
)
from initscope.training.optimizers import Adam, Momentum, Sgd, Update

EXAMPLES = Path(__file__).resolve().parent.parent / "service" / "initscope" / "examples"


def _job(body: dict[str, Any], settings: Settings | None = None) -> TrainJob:
    [(_, job)] = TrainRequest.model_validate(body).jobs(settings or Settings())
    return job


def _body(activation: str, init: Any, task: dict[str, Any], **extra: Any) -> dict[str, Any]:
    dim = task.get("input_dim", 2)
    network = {"input_dim": dim, "depth": 4, "width": 64, "activation": activation, "init": init}
    return {"network": network, "task": task, "epochs": 15, **extra}


SPIRALS = {"name": "spirals", "samples": 450}
TEACHER = {"name": "teacher", "samples": 1500, "input_dim": 8}


@pytest.mark.parametrize(("task", "accuracy"), [(SPIRALS, 0.9), (TEACHER, 0.8)])
def test_relu_with_he_trains_past_a_stated_validation_accuracy(
    task: dict[str, Any], accuracy: float
) -> None:
    result = train(_job(_body("relu", "he_normal", task, optimizer={"name": "sgd"})))
    assert result.history[-1].val_accuracy >= accuracy
    assert result.check.moved
    assert not result.diverged


@pytest.mark.parametrize("task", [SPIRALS, TEACHER])
def test_sigmoid_with_std_001_does_not_move_and_the_diagnosis_held(task: dict[str, Any]) -> None:
    body = _body("sigmoid", {"scheme": "normal", "std": 0.01}, task, optimizer={"name": "sgd"})
    result = train(_job(body))
    first, last = result.history[0], result.history[-1]
    assert first.train_loss is not None
    assert last.train_loss is not None
    assert last.train_loss > 0.97 * first.train_loss  # the book's flat curve
    assert last.val_accuracy <= result.chance_accuracy + 0.05
    check = result.check
    assert "vanishing_gradients" in check.predicted
    assert check.vanishing_steps > 0.9
    assert all(claim.held for claim in check.claims)
    assert "vanishing gradients predicted" in check.claims[0].evidence


def _grads(params: list[Parameter]) -> list[np.ndarray]:
    grads = [p.grad for p in params]
    assert all(g is not None for g in grads)
    return [np.array(g) for g in grads]


def _tiny(dtype: str = "float64", **extra: Any) -> TrainJob:
    body = {
        "network": {
            "input_dim": 3,
            "layers": [
                {"units": 5, "activation": "tanh", "init": "xavier_normal"},
                {
                    "units": 4,
                    "activation": "softplus",
                    "init": "he_normal",
                    "bias": {"scheme": "normal", "std": 0.1},
                },
            ],
        },
        "task": {"name": "teacher", "samples": 40, "input_dim": 3, "classes": 3},
        "dtype": dtype,
        **extra,
    }
    return _job(body)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_backprop_matches_central_finite_differences(weight_decay: float) -> None:
    job = _tiny(weight_decay=weight_decay)
    data = make_dataset(job.task, np.random.default_rng(1), "float64")
    network = build_network(job, data.x_train)
    x, y = data.x_train[:16], data.y_train[:16]
    loss_and_gradients(network, x, y, weight_decay)
    params = network.parameters()
    analytic = _grads(params)
    eps = 1e-6
    for p, grad in zip(params, analytic, strict=True):
        numeric = np.zeros_like(p.value)
        for index in np.ndindex(p.value.shape):
            keep = p.value[index]
            p.value[index] = keep + eps
            up, _ = loss_and_gradients(network, x, y, weight_decay)
            p.value[index] = keep - eps
            down, _ = loss_and_gradients(network, x, y, weight_decay)
            p.value[index] = keep
            numeric[index] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_backprop_through_dropout_matches_finite_differences_with_the_mask_fixed() -> None:
    job = _tiny(dropout=0.5)
    data = make_dataset(job.task, np.random.default_rng(1), "float64")
    network = build_network(job, data.x_train)
    x, y = data.x_train[:16], data.y_train[:16]
    loss_and_gradients(network, x, y, 0.0)  # draws the masks
    masks = [b.dropout.mask for b in network.blocks if b.dropout is not None]
    assert len(masks) == 2
    assert all(m is not None and (m == 0).any() and (m == 2).any() for m in masks)
    w = network.blocks[0].dense.w
    [analytic] = _grads([w])

    def loss_with_masks() -> float:
        h = x
        for block in network.blocks:
            a = h @ block.dense.w.value + block.dense.b.value
            h = block.activation.fn.forward(a)
            if block.dropout is not None:
                assert block.dropout.mask is not None
                h = h * block.dropout.mask
        z = h - h.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

    eps, numeric = 1e-6, np.zeros_like(w.value)
    for index in np.ndindex(w.value.shape):
        keep = w.value[index]
        w.value[index] = keep + eps
        up = loss_with_masks()
        w.value[index] = keep - eps
        down = loss_with_masks()
        w.value[index] = keep
        numeric[index] = (up - down) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def _tiny_bn(placement: str, **extra: Any) -> TrainJob:
    """``_tiny`` with batch norm (non-default gamma, beta) in both hidden layers."""
    job = _tiny(**extra)
    bn = {"placement": placement, "gamma": 1.5, "beta": 0.2}
    body = {
        "network": {
            "input_dim": 3,
            "layers": [
                {"units": 5, "activation": "tanh", "init": "xavier_normal", "batch_norm": bn},
                {"units": 4, "activation": "softplus", "init": "he_normal", "batch_norm": bn},
            ],
        },
        "task": dataclasses.asdict(job.task),
        "dtype": "float64",
        **extra,
    }
    return _job(body)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_backprop_through_batch_norm_matches_central_finite_differences(placement: str) -> None:
    job = _tiny_bn(placement, weight_decay=0.1)
    assert all(layer.batch_norm is not None for layer in job.layers)
    data = make_dataset(job.task, np.random.default_rng(1), "float64")
    network = build_network(job, data.x_train)
    first = network.blocks[0]
    assert (first.before is not None) == (placement == "before")
    assert (first.after is not None) == (placement == "after")
    x, y = data.x_train[:16], data.y_train[:16]
    loss_and_gradients(network, x, y, 0.1)
    params = network.parameters()
    assert len(params) == 2 * 3 + 2 * 2  # W, b per layer; gamma, beta per hidden layer
    analytic = _grads(params)
    eps = 1e-6
    for p, grad in zip(params, analytic, strict=True):
        numeric = np.zeros_like(p.value)
        for index in np.ndindex(p.value.shape):
            keep = p.value[index]
            p.value[index] = keep + eps
            up, _ = loss_and_gradients(network, x, y, 0.1)
            p.value[index] = keep - eps
            down, _ = loss_and_gradients(network, x, y, 0.1)
            p.value[index] = keep
            numeric[index] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # BN removes a shift of its input: the bias before it gets no gradient
    if placement == "before":
        np.testing.assert_allclose(_grads([first.dense.b])[0], 0, atol=1e-12)


def test_batch_norm_keeps_pytorchs_running_statistics_and_evaluates_with_them() -> None:
    job = _tiny_bn("before")
    data = make_dataset(job.task, np.random.default_rng(1), "float64")
    network = build_network(job, data.x_train)
    first = network.blocks[0]
    bn = first.before
    assert isinstance(bn, BatchNorm)
    np.testing.assert_array_equal(bn.gamma.value, 1.5)
    np.testing.assert_array_equal(bn.beta.value, 0.2)
    x = data.x_train[:16]
    a = x @ first.dense.w.value + first.dense.b.value
    first.forward(x, "train")
    # torch.nn.BatchNorm1d(momentum=0.1): running = 0.9 running + 0.1 batch (unbiased var)
    np.testing.assert_allclose(bn.running_mean, 0.1 * a.mean(axis=0))
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * a.var(axis=0, ddof=1))
    batch = data.x_train[:8]
    alone = network.forward(batch[:1], "eval")
    with_others = network.forward(batch, "eval")[:1]
    np.testing.assert_allclose(alone, with_others, rtol=1e-12)
    # in training mode the same row's output does depend on its batch
    trained_alone = network.forward(batch[:2], "train")[:1]
    trained_with_others = network.forward(batch, "train")[:1]
    assert not np.allclose(trained_alone, trained_with_others)


def test_layer_dropout_wins_over_the_requests_and_weight_decay_spares_gamma_and_beta() -> None:
    job = _tiny(dropout=0.3)
    layered = dataclasses.replace(
        job, layers=(dataclasses.replace(job.layers[0], dropout=0.6), job.layers[1])
    )
    network = build_network(
        layered, make_dataset(job.task, np.random.default_rng(1), "float64").x_train
    )
    rates = [[b.dropout.rate] if b.dropout is not None else [] for b in network.blocks]
    assert rates == [[0.6], [0.3], []]
    bn_network = build_network(_tiny_bn("after"), np.ones((4, 3)))
    assert [p.decay for p in bn_network.blocks[0].parameters()] == [True, False, False, False]


def _one_parameter_trajectory(optimizer: Sgd | Momentum | Adam, grads: list[float]) -> list[float]:
    p = Parameter(np.array([1.0]), decay=True)
    update = Update(optimizer, [p])
    out = []
    for g in grads:
        p.grad = np.array([g])
        update.step()
        out.append(float(p.value[0]))
    return out


def test_optimisers_follow_pytorchs_update_rules() -> None:
    grads = [0.5, -0.2, 0.3]
    assert _one_parameter_trajectory(Sgd(learning_rate=0.1), grads) == pytest.approx(
        [0.95, 0.97, 0.94]
    )
    # torch.optim.SGD(momentum=0.9): v = 0.5, 0.25, 0.525
    assert _one_parameter_trajectory(Momentum(learning_rate=0.1), grads) == pytest.approx(
        [0.95, 0.925, 0.8725]
    )
    # torch.optim.Adam: the first step moves by lr * sign(g) (up to eps)
    adam = _one_parameter_trajectory(Adam(learning_rate=0.1), grads)
    assert adam[0] == pytest.approx(0.9, abs=1e-7)
    m = 0.9 * 0.05 + 0.1 * -0.2
    s = 0.999 * 0.001 * 0.25 + 0.001 * 0.04
    step2 = 0.1 * (m / (1 - 0.81)) / (np.sqrt(s / (1 - 0.999**2)) + 1e-8)
    assert adam[1] == pytest.approx(adam[0] - step2, rel=1e-12)


def test_training_is_deterministic_for_a_seed_and_seeds_differ() -> None:
    job = _tiny("float32", dropout=0.2, optimizer={"name": "adam"}, epochs=3)
    assert train(job).history == train(job).history
    other = train(dataclasses.replace(job, seed=1)).history
    assert other != train(job).history


def test_float32_and_float64_runs_start_from_one_network() -> None:
    """Issue 12: one seed, one network in every dtype. The data, the step-0 parameters (the
    readout included) and the dropout masks of a float32 run are the float64 run's, rounded,
    so the two runs start from the same loss."""
    runs = {dtype: _tiny(dtype, dropout=0.5) for dtype in ("float32", "float64")}
    data = {dtype: dataset(job) for dtype, job in runs.items()}
    np.testing.assert_array_equal(
        data["float32"].x_train, data["float64"].x_train.astype(np.float32)
    )
    nets = {
        dtype: build_network(job, data[dtype].x_train[:ANALYSIS_ROWS])
        for dtype, job in runs.items()
    }
    single, double = nets["float32"].parameters(), nets["float64"].parameters()
    assert len(single) == len(double) == 3 * 2
    for p32, p64 in zip(single, double, strict=True):
        assert p32.value.dtype == np.float32
        np.testing.assert_array_equal(p32.value, p64.value.astype(np.float32))
    x32, x64 = data["float32"].x_train[:16], data["float64"].x_train[:16]
    nets["float32"].forward(x32, "train")
    nets["float64"].forward(x64, "train")
    masks = [
        [b.dropout.mask for b in nets[dtype].blocks if b.dropout is not None] for dtype in nets
    ]
    assert len(masks[0]) == 2
    for m32, m64 in zip(*masks, strict=True):
        assert m32 is not None
        assert m64 is not None
        np.testing.assert_array_equal(m32, m64.astype(np.float32))
    first = {dtype: train(job).history[0] for dtype, job in runs.items()}
    assert first["float32"].train_loss == pytest.approx(first["float64"].train_loss, rel=1e-5)


def test_the_step_0_analysis_measures_the_network_that_trains() -> None:
    """A training-mode pass of /train's network at step 0 on the analysis rows gives the
    per-layer statistics /train's step-0 analysis reports (LSUV and batch norm included)."""
    job = _tiny_bn("before")
    lsuv = dataclasses.replace(job.layers[1], init=Lsuv(), batch_norm=None)
    job = dataclasses.replace(job, layers=(job.layers[0], lsuv))
    data = make_dataset(job.task, np.random.default_rng(0), "float64")
    rows = data.x_train[:8]
    network = build_network(job, rows)
    measured = analyze(analysis_job(job, rows)).simulation.layers
    h = rows
    for block, layer in zip(network.blocks[:-1], measured, strict=True):
        h = block.forward(h, "train")
        assert layer.activations.mean == pytest.approx(float(h.mean()), rel=1e-9, abs=1e-12)
        assert layer.activations.std == pytest.approx(float(h.std()), rel=1e-9)
    assert measured[1].lsuv is not None
    assert measured[1].lsuv.iterations > 0


def test_tasks_split_once_into_disjoint_parts() -> None:
    rng = np.random.default_rng(0)
    for task in (Spirals(samples=101), Teacher(samples=50), Digits(samples=300)):
        data = make_dataset(task, rng, "float32")
        assert len(data.y_val) == validation_count(task)
        assert len(data.y_train) + len(data.y_val) == task.samples
        if isinstance(task, Teacher):  # continuous rows: a shared row would be a leak
            rows = {tuple(r) for r in data.x_train.tolist()}
            assert not rows & {tuple(r) for r in data.x_val.tolist()}
    digits = make_dataset(Digits(), rng, "float64")
    assert digits.x_train.shape[1] == 64
    assert digits.x_train.min() >= 0.0
    assert digits.x_train.max() == 1.0
    assert sorted(set(digits.y_train.tolist())) == list(range(10))


# --- the route ---------------------------------------------------------------------------------


def test_train_route_compares_variants_on_the_same_batches(client: TestClient) -> None:
    body = _body("relu", "he_normal", {"name": "spirals", "samples": 300}, epochs=3)
    body["variants"] = [
        {"name": "he", "init": "he_normal"},
        {"name": "tiny", "activation": "sigmoid", "init": {"scheme": "normal", "std": 0.01}},
        {"name": "he again", "init": "he_normal", "weight_decay": 0.0},
    ]
    response = client.post("/train", json=body)
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert [r["name"] for r in runs] == ["he", "tiny", "he again"]
    assert runs[0]["history"] == runs[2]["history"]  # same seed, data, order: same run
    assert len(runs[0]["history"]) == 4
    assert len(runs[0]["history"][1]["grad_rms"]) == 4
    assert response.json()["table"][1]["verdict"] == "vanishing_gradients"


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_train_route_draws_the_curves(client: TestClient, fmt: str, magic: bytes) -> None:
    response = client.post(
        f"/train?format={fmt}", json=_body("relu", "he_normal", SPIRALS, epochs=2)
    )
    assert response.status_code == 200
    assert response.content.startswith(magic)


def test_train_route_refuses_a_run_over_the_budget_naming_it(client: TestClient) -> None:
    body = _body("relu", "he_normal", {"name": "spirals", "samples": 4000}, epochs=1000)
    response = client.post("/train", json=body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["type"] == "compute_budget"
    assert "epochs" in error["msg"]


def test_train_route_names_a_mismatched_input_dim(client: TestClient) -> None:
    body = _body("relu", "he_normal", SPIRALS)
    body["network"]["input_dim"] = 5
    response = client.post("/train", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "network", "input_dim"]


def test_inline_task_trains_within_the_row_limit(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2)).round(3)
    task = {"name": "inline", "x": x.tolist(), "y": [int(a > 0) for a in x[:, 0]]}
    body = {
        "network": {
            "input_dim": 2,
            "depth": 2,
            "width": 16,
            "activation": "relu",
            "init": "he_normal",
        },
        "task": task,
        "epochs": 30,
        "optimizer": {"name": "adam", "learning_rate": 0.02},
    }
    response = client.post("/train", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["runs"][0]["history"][-1]["val_accuracy"] >= 0.75
    too_many = {**body, "task": {**task, "x": x.tolist() * 2, "y": task["y"] * 2}}
    refused = client.post("/train", json=too_many)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "task", "x"]


def test_the_book_init_example_runs_on_real_digits(default_client: TestClient) -> None:
    body = json.loads((EXAMPLES / "train-digits-inits.json").read_text())
    response = default_client.post("/train", json=body)
    assert response.status_code == 200
    table = {row["name"]: row for row in response.json()["table"]}
    assert table["std 0.01"]["final_val_accuracy"] < 0.2  # does not learn in 8 epochs
    assert table["He"]["final_val_accuracy"] > 0.85
    assert table["Xavier"]["final_val_accuracy"] > 0.7


def test_batch_norm_rescues_sigmoid_with_std_001_on_digits(default_client: TestClient) -> None:
    body = json.loads((EXAMPLES / "train-batch-norm.json").read_text())
    response = default_client.post("/train", json=body)
    assert response.status_code == 200
    runs = {run["name"]: run for run in response.json()["runs"]}
    plain = runs["std 0.01"]
    # measured (seed 0, 8 epochs): 0.117 (chance 0.117), BN before 0.922, BN after 0.911
    assert plain["history"][-1]["val_accuracy"] <= plain["chance_accuracy"] + 0.05
    assert plain["check"]["verdict"] == "vanishing_gradients"
    for name in ("std 0.01, BN before", "std 0.01, BN after"):
        assert runs[name]["history"][-1]["val_accuracy"] > 0.85
        assert runs[name]["check"]["verdict"] == "healthy"
        assert runs[name]["check"]["moved"]
