"""The HTTP edge: app factory, routes, and the mapping of domain errors to responses."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
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


# Fields holding a tagged union: pydantic puts the tag in the error location
# (network.layers.layers.0.init.normal.std); users wrote network.layers.0.init.std.
_TAGGED = frozenset({"network", "activation", "init", "bias", "distribution", "gradient"})


def _clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    return [
        part
        for i, part in enumerate(loc)
        if not (i and isinstance(part, str) and loc[i - 1] in _TAGGED)
    ]


def _json_safe(value: Any) -> Any:
    """Echoed input may hold NaN or inf (Python's JSON parser accepts them): spell them out."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _unprocessable(errors: Iterable[Mapping[str, Any]]) -> JSONResponse:
    detail = []
    for error in errors:
        item = {
            "type": error["type"],
            "loc": list(error["loc"]),
            "msg": error["msg"],
            "input": error.get("input"),
        }
        if ctx := error.get("ctx"):
            item["ctx"] = {
                k: v if isinstance(v, int | float | str) else str(v) for k, v in ctx.items()
            }
        detail.append(item)
    body = _json_safe(jsonable_encoder({"detail": detail}))
    return JSONResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidRequest)
    return _unprocessable(
        {"type": e.type, "loc": e.loc, "msg": e.msg, "input": e.input} for e in exc.errors
    )


async def invalid_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _unprocessable({**e, "loc": _clean_loc(e["loc"])} for e in exc.errors())


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
    app.add_exception_handler(RequestValidationError, invalid_body)
    return app
