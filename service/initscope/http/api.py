"""The HTTP edge: the app factory and the routes, a ``POST`` per operation of
``initscope.operations`` (errors become problem+json in ``initscope.http.problems``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import Body, Depends, FastAPI, Query, Request, Response, status
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from initscope import __version__, catalogue
from initscope.config import Settings, get_settings
from initscope.http import auth, cache, docs, logs, media, metrics, problems
from initscope.http.media import Representation
from initscope.jobs import FigureFormat, FigureOptions
from initscope.operations import OPERATIONS, RENDER_COST, Operation
from initscope.runner import Runner, Work
from initscope.schemas import ActivationInfo, InitializerInfo

DESCRIPTION = """
Simulate a dense network's forward and backward pass at initialisation and see, before any
training, how its activations are distributed per layer, how the gradient decays from the last
layer to the first, and what to change. Reproduces chapter 6 of *Deep Learning from Scratch*
(std 1 vs 0.01 vs Xavier vs He) and reports every number it measures.

Beyond the first step: `POST /sweep` draws phase diagrams against mean-field theory, `POST
/train` trains the network for a few epochs to confirm the diagnosis, and `POST /search` runs a
random hyperparameter search.

Every `POST` answers in JSON by default, or draws the result as PNG or SVG: send
`Accept: image/png` / `image/svg+xml`, or add `?format=png|svg` (handy here). Errors are RFC
9457 `application/problem+json`.
"""

# The request files of initscope/examples/ (package data, so an installed wheel has them too),
# in the order Swagger UI lists them; the first is what "Try it out" starts from.
EXAMPLE_SUMMARIES = {
    "analyze-sigmoid-std1": "The book: sigmoid, weights with std 1 (saturation)",
    "analyze-relu-he": "The book: ReLU with He (healthy in every layer)",
    "analyze-leaky-relu-he": "Leaky ReLU (0.2) with He at the matching negative_slope",
    "analyze-tanh-edge-of-chaos": "30 tanh layers at the edge of chaos, Jacobian spectrum",
    "analyze-lsuv-deep": "LSUV on 12 ReLU layers",
    "analyze-constant-symmetric": "Constant weights: every unit computes the same function",
    "compare-sigmoid": "The book: sigmoid with std 1, std 0.01 and Xavier",
    "compare-tanh": "The book: tanh with std 1, std 0.01 and Xavier",
    "compare-relu": "The book: ReLU with std 0.01, Xavier and He",
    "compare-leaky-relu": "Leaky ReLU: He with the matching slope, with ReLU's gain, Xavier",
    "compare-batch-norm": "The book: sigmoid with std 0.01 and std 1, without and with batch norm",
    "compare-dropout": "ReLU with He: dropout 0, 0.2 and 0.5 (inverted scaling)",
    "sweep-tanh": "tanh phase diagram over sigma_w^2 and sigma_b^2",
    "train-digits-inits": "The book: std 0.01, Xavier and He on real digits (sigmoid, ReLU)",
    "train-spirals-relu-he": "Spirals: ReLU with He reaches high validation accuracy",
    "train-digits-overfitting": "Overfitting on 300 digits, and what weight decay does",
    "train-batch-norm": "Batch norm rescues sigmoid with std 0.01 on digits (before or after)",
    "search-digits-lr-wd": "Random search over learning rate and weight decay on digits",
}


def request_examples(kind: str) -> dict[str, Example]:
    """``{name: {summary, value}}`` for the files ``initscope/examples/{kind}-*.json``."""
    folder = resources.files("initscope") / "examples"
    return {
        name: Example(summary=summary, value=json.loads((folder / f"{name}.json").read_text()))
        for name, summary in EXAMPLE_SUMMARIES.items()
        if name.startswith(f"{kind}-")
    }


VARY = {"Vary": "Accept"}
_FIGURE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON (default), or the figure when `image/png` or `image/svg+xml` is "
        "accepted or `?format=png|svg` is given.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/svg+xml": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **problems.responses(400, 406, 413, 415, 422, 503, 504, 507),
}


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready: `state` says starting, draining or degraded.",
        "content": {
            problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
        },
    }
}


# async, although they do not wait: FastAPI runs a plain ``def`` dependency in its thread pool,
# two thread hops per request for an attribute read.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


async def _representation(
    request: Request,
    format: Annotated[  # the public name of the query parameter
        Representation | None,
        Query(description="Overrides the Accept header: json, png or svg."),
    ] = None,
    width: Annotated[int | None, Query(ge=200, le=4000, description="Figure width, px.")] = None,
    height: Annotated[int | None, Query(ge=200, le=4000, description="Figure height, px.")] = None,
    dpi: Annotated[int, Query(ge=50, le=300, description="Figure resolution.")] = 100,
) -> tuple[Representation, FigureOptions]:
    chosen = media.choose(request.headers.get("accept"), format)
    figure_format: FigureFormat = "svg" if chosen == "svg" else "png"
    return chosen, FigureOptions(figure_format, width, height, dpi)


SettingsDep = Annotated[Settings, Depends(_settings)]
RunnerDep = Annotated[Runner, Depends(_runner)]
RepresentationDep = Annotated[tuple[Representation, FigureOptions], Depends(_representation)]


def _image(content: bytes, representation: Representation) -> Response:
    return Response(content, media_type=media.MEDIA_TYPES[representation], headers=VARY)


Result = TypeVar("Result")


def _json(model: BaseModel) -> Response:
    """The bytes FastAPI would write for the response model (kept whole by the cache)."""
    return Response(model.model_dump_json(), media_type="application/json", headers=VARY)


async def _answer(
    request: Request,
    body: BaseModel,
    wanted: tuple[Representation, FigureOptions],
    runner: Runner,
    compute: Callable[[], Awaitable[Result]],
    to_json: Callable[[Result], BaseModel],
    render: Callable[[Result, FigureOptions], bytes],
    work: list[Work],
) -> Response:
    """The shape of every computing route: a cached answer, or admission (by the expected
    wait for ``work``, the jobs ``compute`` runs in the pool) and a deadline, then the
    response model or the figure."""
    representation, options = wanted

    async def respond() -> Response:
        drawn = [] if representation == "json" else [(render, RENDER_COST)]
        async with runner.admit(work + drawn):
            result = await compute()
            if representation == "json":
                return _json(to_json(result))
            figure = await runner.run(render, result, options, cost=RENDER_COST)
            return _image(figure, representation)

    return await cache.respond(request, body, wanted, respond)


Job = TypeVar("Job")


async def _each(
    runner: Runner, fn: Callable[[Job], Result], jobs: list[tuple[str, Job]], costs: list[int]
) -> list[tuple[str, Result]]:
    """``fn`` on every named job, concurrently in the pool: the names with their results."""
    runs = (runner.run(fn, job, cost=cost) for (_, job), cost in zip(jobs, costs, strict=True))
    results = await asyncio.gather(*runs)
    return [(name, result) for (name, _), result in zip(jobs, results, strict=True)]


# What Swagger UI says under each operation's summary.
DESCRIPTIONS = {
    "analyze": "Simulate the network on the requested input and return per-layer statistics, "
    "gradient decay and a diagnosis — as JSON, or drawn as PNG or SVG.",
    "compare": "Analyse 2 to 8 variants of a network on the same input and upstream gradient: "
    "every analysis and a comparison table, or one figure with a row per variant.",
    "sweep": "A grid over two of sigma_w^2 (or the weight std), sigma_b^2, depth and width for "
    "one activation: a metric per cell from simulation, mean-field theory or both, and the "
    "theoretical edge of chaos — as JSON or a heatmap.",
    "train": "Train the network (or 2 to 8 variants on the same data, batches and seed) on a "
    "task: per-epoch loss and accuracy, per-layer gradient RMS, and whether the step-0 "
    "diagnosis held — as JSON, or loss and accuracy curves as PNG or SVG.",
    "search": "Random search over two hyperparameters (uniform or log-uniform): every trial "
    "trained from the same weights on the same batches, ranked by validation accuracy — as "
    "JSON or a scatter plot.",
}


def operation_route(operation: Operation[Any, Any, Any, Any]) -> Callable[..., Awaitable[Response]]:
    """``POST /{operation.name}``: the operation's jobs concurrently in the pool, combined,
    answered by :func:`_answer` (the body is the operation's request model)."""

    async def route(
        request: Request,
        body: BaseModel,
        settings: SettingsDep,
        runner: RunnerDep,
        wanted: RepresentationDep,
    ) -> Response:
        jobs = operation.to_jobs(body, settings)
        costs = [operation.cost(job) for _, job in jobs]

        async def compute() -> Any:
            return operation.combine(await _each(runner, operation.compute, jobs, costs))

        work: list[Work] = [(operation.compute, cost) for cost in costs]
        return await _answer(
            request, body, wanted, runner, compute, operation.to_json, operation.render, work
        )

    # FastAPI reads the body's model and examples from the annotation; the name makes the
    # operationId (analyze_route_analyze_post, ...).
    route.__annotations__["body"] = Annotated[
        operation.request, Body(openapi_examples=request_examples(operation.name))
    ]
    route.__name__ = route.__qualname__ = f"{operation.name}_route"
    return route


async def list_activations() -> tuple[ActivationInfo, ...]:
    """Every activation with its parameters, formula and PyTorch gain."""
    return catalogue.activations()


async def list_initializers() -> tuple[InitializerInfo, ...]:
    """Every weight and bias initialiser with its parameters, aliases and formula."""
    return catalogue.initializers()


async def livez() -> dict[str, str]:
    return {"status": "alive"}


async def readyz(request: Request) -> JSONResponse:
    runner: Runner | None = request.app.state.runner
    if runner is None:
        state = "starting"
    elif runner.draining:
        state = "draining"
    else:
        state = "ready" if runner.ready else "degraded"
    if state == "ready":
        return JSONResponse({"status": state})
    return problems.problem(
        request.scope,
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"not ready: {state}",
        type_=problems.TYPES + "not-ready",
        title="Not ready",
        state=state,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = Runner(settings, observer=app.state.metrics)
        app.state.runner = runner
        try:
            yield
        finally:
            await runner.shutdown()

    app = FastAPIOffline(
        title="initscope",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        servers=[{"url": "/", "description": "The server that serves this document."}],
        license_info={"name": "MIT", "identifier": "MIT"},
    )
    app.state.settings = settings
    app.state.runner = None
    cache.install(app, settings)
    for operation in OPERATIONS.values():
        app.add_api_route(
            f"/{operation.name}",
            operation_route(operation),
            methods=["POST"],
            operation_id=operation.name,
            response_model=operation.response,
            responses={**_FIGURE_RESPONSES, **auth.responses()},
            # auth first: a caller without a key learns nothing about the body (401, then 415)
            dependencies=[Depends(auth.admitted), Depends(media.json_body)],
            summary=operation.summary,
            description=DESCRIPTIONS[operation.name],
            tags=["analysis"],
        )
    app.add_api_route(
        "/activations",
        list_activations,
        methods=["GET"],
        operation_id="list_activations",
        response_model=list[ActivationInfo],
        responses=problems.responses(413),
        tags=["catalogue"],
    )
    app.add_api_route(
        "/initializers",
        list_initializers,
        methods=["GET"],
        operation_id="list_initializers",
        response_model=list[InitializerInfo],
        responses=problems.responses(413),
        tags=["catalogue"],
    )
    app.add_api_route(
        "/livez",
        livez,
        methods=["GET"],
        operation_id="livez",
        responses=problems.responses(413),
        tags=["probes"],
    )
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        operation_id="readyz",
        responses={**problems.responses(413), **NOT_READY},
        tags=["probes"],
    )
    problems.install(app, settings.max_body_bytes)
    docs.install(app, settings)
    metrics.install(app)  # the runner's observer is app.state.metrics
    auth.install(app, settings, observer=app.state.metrics)
    logs.install(app)  # after metrics: its middleware is the outer one
    return app
