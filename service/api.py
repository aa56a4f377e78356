"""The HTTP edge: app factory, routes, and the mapping of domain errors to responses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from service import __version__, catalogue, docs, media, problems
from service.analysis import analyze
from service.config import Settings, get_settings
from service.jobs import FigureFormat, FigureOptions
from service.media import Representation
from service.render import render_analysis, render_comparison, render_sweep
from service.results import Comparison, Variant
from service.runner import Runner
from service.schemas import (
    ActivationInfo,
    AnalyzeRequest,
    AnalyzeResponse,
    CompareRequest,
    CompareResponse,
    InitializerInfo,
    SweepRequest,
    SweepResponse,
    to_jobs,
)
from service.sweep import run_sweep

DESCRIPTION = """
Simulate a dense network's forward and backward pass at initialisation and see, before any
training, how its activations are distributed per layer, how the gradient decays from the last
layer to the first, and what to change. Reproduces chapter 6 of *Deep Learning from Scratch*
(std 1 vs 0.01 vs Xavier vs He) and reports every number it measures.

`POST /analyze` and `POST /compare` answer in JSON by default, or draw the result as PNG or
SVG: send `Accept: image/png` / `image/svg+xml`, or add `?format=png|svg` (handy here).
"""

VARY = {"Vary": "Accept"}
_FIGURE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON (default), or the figure when `image/png` or `image/svg+xml` is "
        "accepted or `?format=png|svg` is given.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/svg+xml": {"schema": {"type": "string"}},
        },
    },
    **problems.responses(400, 406, 413, 422, 503, 504),
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _runner(request: Request) -> Runner:
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


async def analyze_route(
    body: AnalyzeRequest,
    settings: SettingsDep,
    runner: RunnerDep,
    wanted: RepresentationDep,
    response: Response,
) -> Any:
    """Simulate the network on the requested input and return per-layer statistics, gradient
    decay and a diagnosis — as JSON, or drawn as PNG or SVG."""
    representation, options = wanted
    result = await runner.run(analyze, body.job(settings))
    if representation == "json":
        response.headers.update(VARY)
        return AnalyzeResponse.from_result(result)
    return _image(await runner.run(render_analysis, result, options), representation)


async def compare_route(
    body: CompareRequest,
    settings: SettingsDep,
    runner: RunnerDep,
    wanted: RepresentationDep,
    response: Response,
) -> Any:
    """Analyse 2 to 8 variants of a network on the same input and upstream gradient: every
    analysis and a comparison table, or one figure with a row per variant."""
    representation, options = wanted
    jobs = to_jobs(body, settings)
    results = await asyncio.gather(*(runner.run(analyze, job) for _, job in jobs))
    comparison = Comparison(
        tuple(Variant(name, result) for (name, _), result in zip(jobs, results, strict=True))
    )
    if representation == "json":
        response.headers.update(VARY)
        return CompareResponse.from_result(comparison)
    return _image(await runner.run(render_comparison, comparison, options), representation)


async def sweep_route(
    body: SweepRequest,
    settings: SettingsDep,
    runner: RunnerDep,
    wanted: RepresentationDep,
    response: Response,
) -> Any:
    """A grid over two of sigma_w^2 (or the weight std), sigma_b^2, depth and width for one
    activation: a metric per cell from simulation, mean-field theory or both, and the
    theoretical edge of chaos — as JSON or a heatmap."""
    representation, options = wanted
    result = await runner.run(run_sweep, body.job(settings))
    if representation == "json":
        response.headers.update(VARY)
        return SweepResponse.from_result(result)
    return _image(await runner.run(render_sweep, result, options), representation)


async def list_activations() -> tuple[ActivationInfo, ...]:
    """Every activation with its parameters, formula and PyTorch gain."""
    return catalogue.activations()


async def list_initializers() -> tuple[InitializerInfo, ...]:
    """Every weight and bias initialiser with its parameters, aliases and formula."""
    return catalogue.initializers()


async def livez() -> dict[str, str]:
    return {"status": "alive"}


async def readyz(request: Request) -> JSONResponse:
    ready = getattr(request.app.state, "runner", None) is not None
    return JSONResponse(
        {"status": "ready" if ready else "starting"},
        status_code=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = Runner(settings)
        app.state.runner = runner
        try:
            yield
        finally:
            app.state.runner = None
            runner.close()

    app = FastAPIOffline(
        title="initscope", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.runner = None
    for path, endpoint, model, summary in (
        ("/analyze", analyze_route, AnalyzeResponse, "Analyse a network's initialisation"),
        ("/compare", compare_route, CompareResponse, "Compare initialisations side by side"),
        ("/sweep", sweep_route, SweepResponse, "Phase diagram over two hyperparameters"),
    ):
        app.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            response_model=model,
            responses=_FIGURE_RESPONSES,
            summary=summary,
            tags=["analysis"],
            openapi_extra=docs.request_example(path),
        )
    app.add_api_route(
        "/activations",
        list_activations,
        methods=["GET"],
        response_model=list[ActivationInfo],
        tags=["catalogue"],
    )
    app.add_api_route(
        "/initializers",
        list_initializers,
        methods=["GET"],
        response_model=list[InitializerInfo],
        tags=["catalogue"],
    )
    app.add_api_route("/livez", livez, methods=["GET"], tags=["probes"])
    app.add_api_route("/readyz", readyz, methods=["GET"], tags=["probes"])
    problems.install(app, settings.max_body_bytes)
    docs.install(app, settings)
    return app
