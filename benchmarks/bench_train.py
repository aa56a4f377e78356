"""Training benchmark: steps per second of :func:`initscope.training.loop.fit` against PyTorch eager
on the same network, data, batches and update rule.

Run by hand: ``.venv/bin/python benchmarks/bench_train.py [--epochs N]``. PyTorch is this
benchmark's own optional dependency, never the project's: when ``import torch`` fails the
comparison is skipped with a message (``PYTHONPATH=/path/to/torch-site`` is enough to add it).

Shape: the book's digits network (64 -> 5 x 100 ReLU, He normal -> 10), SGD lr 0.1, batch 100,
float32, one BLAS / intra-op thread each. Both sides start from the same weights (copied from
initscope's network), see the same batches in the same order, and evaluate nothing inside the
timed region: the initscope side is the loop ``fit`` runs (``loss_and_gradients`` then
``Update.step`` per batch), the torch side the plain loop of
``zero_grad / forward / cross_entropy / backward / step``. Best of 3 runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from initscope.config import Settings
from initscope.train_schemas import TrainRequest
from initscope.training.loop import build_network, dataset, evaluate, loss_and_gradients
from initscope.training.optimizers import Update
from threadpoolctl import threadpool_limits

BODY = {
    "network": {
        "input_dim": 64,
        "depth": 5,
        "width": 100,
        "activation": "relu",
        "init": "he_normal",
    },
    "task": {"name": "digits"},
    "optimizer": {"name": "sgd", "learning_rate": 0.1},
    "batch_size": 100,
}


def initscope_steps(epochs: int) -> tuple[float, int, float]:
    [(_, job)] = TrainRequest.model_validate({**BODY, "epochs": epochs}).jobs(Settings())
    data = dataset(job)
    network = build_network(job, data.x_train[:256])
    update = Update(job.optimizer, network.parameters())
    order = np.random.default_rng(0)
    batches = [
        perm[i : i + job.batch_size]
        for perm in (order.permutation(len(data.y_train)) for _ in range(epochs))
        for i in range(0, len(perm), job.batch_size)
    ]
    start = time.perf_counter()
    for batch in batches:
        loss_and_gradients(network, data.x_train[batch], data.y_train[batch], 0.0)
        update.step()
    seconds = time.perf_counter() - start
    _, accuracy = evaluate(network, data.x_val, data.y_val)
    return len(batches) / seconds, len(batches), accuracy


def torch_steps(epochs: int) -> tuple[float, float] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    [(_, job)] = TrainRequest.model_validate({**BODY, "epochs": epochs}).jobs(Settings())
    data = dataset(job)
    ours = build_network(job, data.x_train[:256])
    modules: list[torch.nn.Module] = []
    for index, block in enumerate(ours.blocks):
        linear = torch.nn.Linear(*block.dense.w.value.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(block.dense.w.value.T.copy()))
            linear.bias.copy_(torch.from_numpy(block.dense.b.value.copy()))
        modules.append(linear)
        if index < len(ours.blocks) - 1:
            modules.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*modules)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train.astype(np.int64))
    order = np.random.default_rng(0)
    batches = [
        torch.from_numpy(perm[i : i + job.batch_size].astype(np.int64))
        for perm in (order.permutation(len(data.y_train)) for _ in range(epochs))
        for i in range(0, len(perm), job.batch_size)
    ]
    start = time.perf_counter()
    for batch in batches:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.x_val)).argmax(1).numpy()
    return len(batches) / seconds, float(np.mean(predicted == data.y_val))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        ours = max((initscope_steps(args.epochs) for _ in range(3)), key=lambda r: r[0])
        rate, steps, accuracy = ours
        print(f"initscope: {rate:8.0f} steps/s ({steps} steps, val accuracy {accuracy:.3f})")
        theirs = [torch_steps(args.epochs) for _ in range(3)]
    if theirs[0] is None:
        print(
            "PyTorch not importable: comparison skipped (the Makefile's dev environment has "
            "its CPU build; it is not a dependency of the server)"
        )
        return
    torch_rate, torch_accuracy = max((r for r in theirs if r is not None), key=lambda r: r[0])
    print(f"PyTorch:   {torch_rate:8.0f} steps/s (val accuracy {torch_accuracy:.3f})")
    print(f"ratio initscope / PyTorch eager: {rate / torch_rate:.2f}")


if __name__ == "__main__":
    main()
