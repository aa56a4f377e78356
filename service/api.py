"""The HTTP edge: app factory, routes, and the mapping of domain errors to responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from service import __version__, catalogue
from service.analysis import analyze
from service.config import Settings, get_settings
from service.errors import InvalidRequest
from service.runner import Runner
from service.schemas import ActivationInfo, AnalyzeRequest, AnalyzeResponse, InitializerInfo, to_job

DESCRIPTION = """
Simulate a dense network's forward and backward pass at initialisation and see, before any
training, how its activations are distributed per layer, how the gradient decays from the last
layer to the first, and what to change. Reproduces chapter 6 of *Deep Learning from Scratch*
(std 1 vs 0.01 vs Xavier vs He) and reports every number it measures.
"""


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


SettingsDep = Annotated[Settings, Depends(_settings)]
RunnerDep = Annotated[Runner, Depends(_runner)]


async def analyze_route(
    body: AnalyzeRequest, settings: SettingsDep, runner: RunnerDep
) -> AnalyzeResponse:
    """Simulate the network on the requested input and return per-layer statistics, gradient
    decay and a diagnosis."""
    job = to_job(body, settings)
    result = await runner.run(analyze, job)
    return AnalyzeResponse.from_result(result)


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


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidRequest)
    detail = [
        {"type": e.type, "loc": list(e.loc), "msg": e.msg, "input": e.input} for e in exc.errors
    ]
    return JSONResponse(
        jsonable_encoder({"detail": detail}), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
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

    app = FastAPI(
        title="initscope", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.runner = None
    app.add_api_route(
        "/analyze",
        analyze_route,
        methods=["POST"],
        response_model=AnalyzeResponse,
        summary="Analyse a network's initialisation",
        tags=["analysis"],
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
    app.add_exception_handler(InvalidRequest, invalid_request)
    return app
