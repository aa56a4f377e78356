"""``initscope``: serve the API, or analyse, compare, sweep, train and search from the command
line, and list the catalogue.

``initscope serve`` is the server (``initscope.http.server.serve``, as ``python -m initscope``).
Without ``--url`` a computation runs in this process through the operation the service's
route runs (``initscope.operations``: the same request model, validation and limits from the
``INITSCOPE_*`` settings, the same computation and response model or figure); with ``--url``
it is sent to a running service (``initscope.client``). On a terminal the answer is a table,
and the work shows progress on stderr (variants, sweep rows, training runs, search trials, or
a spinner while a service works); piped, or with ``--json``, the output is the API's JSON.

Exit status: 0 healthy (or done), 1 the diagnosis has findings, 2 usage or input errors
(printed like the API's 422: location and message per field), 3 the service failed or could
not be reached.

argparse parses; rich draws the tables and progress bars and decides whether a stream is a
terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2 as httpx
from pydantic import BaseModel, TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text
from threadpoolctl import threadpool_limits

from initscope import catalogue, client, errors
from initscope.config import Settings
from initscope.engine import cores
from initscope.engine.advice import describe
from initscope.http import problems, server
from initscope.http.problems import clean_loc
from initscope.jobs import FigureOptions
from initscope.labels import layer_extras, layer_span
from initscope.operations import OPERATIONS, Tick, run_here
from initscope.results import Patch
from initscope.schemas import (
    ActivationInfo,
    AnalyzeResponse,
    CompareResponse,
    InitializerInfo,
    SweepResponse,
)
from initscope.train_schemas import SearchResponse, TrainResponse

OK, FINDINGS, INPUT_ERROR, SERVICE_ERROR = 0, 1, 2, 3


class InputError(Exception):
    """A request file that cannot be read or parsed."""


@dataclass(frozen=True)
class Streams:
    """Where output goes; tests pass consoles writing to buffers."""

    out: Console
    err: Console
    binary: IO[bytes]

    @classmethod
    def system(cls) -> Streams:
        return cls(Console(), Console(stderr=True), sys.stdout.buffer)


# --- doing the work ------------------------------------------------------------------------


@contextmanager
def progress(err: Console, what: str, total: int | None) -> Iterator[Tick]:
    """A bar (``total`` steps) or a spinner on a terminal's stderr; nothing when redirected."""
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def compute_here(kind: str, body: Any, figure: FigureOptions | None, err: Console) -> Any:
    """``POST /{kind}`` in this process: the operation's request model, jobs, computation
    (with a progress bar on a terminal) and the response model, or the figure's bytes."""
    operation = OPERATIONS[kind]
    request = operation.request.model_validate(body)
    jobs = operation.to_jobs(request, Settings())
    with progress(err, operation.progress, operation.total(jobs)) as tick:
        result = run_here(operation, jobs, tick)
    return operation.to_json(result) if figure is None else operation.render(result, figure)


def read_spec(spec: str, stdin: IO[str] | None = None) -> Any:
    """The JSON of a request file, or of stdin for ``-``."""
    try:
        text = (stdin or sys.stdin).read() if spec == "-" else Path(spec).read_text()
    except OSError as exc:
        raise InputError(f"cannot read {spec}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{'stdin' if spec == '-' else spec} is not valid JSON: {exc}") from exc


def validation_problem(exc: ValidationError | errors.InvalidRequest) -> client.InvalidRequest:
    """What the service's 422 would say about the same body: a location and message per field."""
    if isinstance(exc, errors.InvalidRequest):
        found = [client.FieldProblem(e.loc, e.msg, e.type) for e in exc.errors]
    else:
        found = [
            client.FieldProblem(("body", *clean_loc(e["loc"])), e["msg"], e["type"])
            for e in exc.errors()
        ]
    detail = problems.validation_detail([(e.loc, e.msg) for e in found])
    return client.InvalidRequest(422, problems.VALIDATION_TITLE, detail, errors=found)


# --- showing the answer ---------------------------------------------------------------------


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def exit_status(answer: object) -> int:
    """1 when an analysis (or any variant of a comparison) has findings, else 0."""
    if isinstance(answer, AnalyzeResponse):
        verdicts = [answer.diagnosis.verdict]
    elif isinstance(answer, CompareResponse):
        verdicts = [row.verdict for row in answer.table]
    else:
        verdicts = []
    return OK if all(v == "healthy" for v in verdicts) else FINDINGS


def _table(title: str, columns: Sequence[str], right: Sequence[str] = ()) -> Table:
    table = Table(title=Text(title), title_justify="left")
    for column in columns:
        number = column in right
        table.add_column(
            Text(column),
            justify="right" if number else "left",
            no_wrap=number or column in ("adds", "verdict"),
            overflow="fold" if column == "patch" else "ellipsis",  # orthogonal(gain=10) folds
            min_width=len(column),
        )
    return table


def _row(table: Table, *cells: str) -> None:
    table.add_row(*(Text(cell) for cell in cells))  # Text: no markup, no highlighting


def show_analysis(out: Console, result: AnalyzeResponse) -> None:
    numbers = ("layer", "units", "std", "saturated", "dead", "E[phi'^2]", "gradient / last")
    first = result.layers[0]
    uniform = all((x.activation, x.init) == (first.activation, first.init) for x in result.layers)
    if uniform:  # one line instead of a repeated column
        out.print(Text(f"{len(result.layers)} layers of {first.activation}, {first.init}"))
        columns: tuple[str, ...] = numbers
    else:
        columns = ("layer", "units", "activation", "init", *numbers[2:])
    extras = [layer_extras(layer, short=True) for layer in result.layers]
    if any(extras):  # batch norm or dropout somewhere: a column says where
        columns = (*columns[:2], "adds", *columns[2:])
    table = _table("per layer", columns, right=numbers)
    for layer, extra in zip(result.layers, extras, strict=True):
        stats = layer.activations
        names = () if uniform else (layer.activation, layer.init)
        _row(
            table,
            str(layer.index),
            str(layer.units),
            *((extra or "-",) if any(extras) else ()),
            *names,
            _num(stats.std),
            _pct(stats.saturated_fraction),
            str(layer.dead_units),
            _num(layer.mean_derivative_sq),
            _num(layer.gradients.relative_to_last),
        )
    out.print(table)
    decay = result.gradient_decay
    lines = [
        f"gradient RMS, layer 1 / last layer: {_num(decay.first_to_last)} "
        f"({_num(decay.per_layer_factor)} per layer)"
    ]
    theory = result.theory
    if theory is not None and theory.applicable:
        lines.append(
            f"mean-field theory: {theory.phase}, chi_1(q*) = {_num(theory.chi_1)}, "
            f"q* = {_num(theory.q_star)}, trainable depth ~ "
            + ("unbounded" if theory.trainable_depth is None else _num(theory.trainable_depth))
        )
    for line in lines:
        out.print(Text(line))
    diagnosis = result.diagnosis
    for finding in diagnosis.findings:
        out.print(
            Text.assemble(
                (finding.code, "bold"), f" ({layer_span(finding.layers)}): {finding.message}"
            )
        )
    out.print(Text.assemble("verdict: ", (diagnosis.verdict, "bold")))
    advice = diagnosis.recommendation
    out.print(Text(f"recommendation: {advice.reason if advice else 'none (recommend: false)'}"))
    if advice is not None and advice.alternatives:
        columns = ("gradient 1 / last", "RMS last / first")
        table = _table("patches simulated, best first", ("patch", "verdict", *columns), columns)
        for option in (advice, *advice.alternatives):
            patch = Patch(option.init, option.bias, option.activation, option.batch_norm)
            outcome = option.verified
            _row(
                table,
                describe(patch),
                outcome.verdict,
                _num(outcome.first_to_last),
                _num(outcome.last_to_first_rms),
            )
        out.print(table)


def show_comparison(out: Console, result: CompareResponse) -> None:
    numbers = ("verdict", "gradient 1 / last", "last std", "saturated", "dead")
    table = _table("variants", ("variant", *numbers), right=numbers)
    table.columns[1].justify = "left"  # the verdict: a word, kept on one line
    for row in result.table:
        _row(
            table,
            row.name,
            row.verdict,
            _num(row.first_to_last),
            _num(row.last_layer_std),
            _pct(row.saturated_fraction),
            _pct(row.dead_fraction),
        )
    out.print(table)


def show_sweep(out: Console, result: SweepResponse) -> None:
    xs = [f"{x:g}" for x in result.x.values]
    for source, grid in (("simulation", result.simulation), ("theory", result.theory)):
        if grid is None:
            continue
        corner = f"{result.y.param} \\ {result.x.param}"
        title = f"{result.metric} from {source}, {result.activation}"
        table = _table(title, (corner, *xs), right=(corner, *xs))
        for y, row in zip(result.y.values, grid, strict=True):
            _row(table, f"{y:g}", *(v if isinstance(v, str) else _num(v) for v in row))
        out.print(table)
    if result.critical_curve:
        points = ", ".join(
            f"({p.sigma_w2:.3g}, {p.sigma_b2:.3g})" for p in result.critical_curve[::6]
        )
        out.print(Text(f"edge of chaos, (sigma_w2, sigma_b2): {points}"))
    out.print(Text(result.critical_note))


def show_initializers(out: Console, items: list[InitializerInfo]) -> None:
    table = _table("initializers", ("scheme", "kind", "aliases", "parameters", "formula"))
    for item in items:
        parameters = (p.name if p.required else f"{p.name}={p.default}" for p in item.parameters)
        _row(
            table,
            item.scheme,
            item.kind,
            ", ".join(item.aliases),
            ", ".join(parameters),
            item.formula,
        )
    out.print(table)


def show_activations(out: Console, items: list[ActivationInfo]) -> None:
    table = _table(
        "activations",
        ("name", "parameters", "formula", "PyTorch gain", "range"),
        right=("PyTorch gain",),
    )
    for item in items:
        low, high = item.natural_range
        _row(
            table,
            item.name,
            ", ".join(f"{p.name}={p.default}" for p in item.parameters),
            item.formula,
            _num(item.pytorch_gain),
            f"({'-inf' if low is None else _num(low)}, {'inf' if high is None else _num(high)})",
        )
    out.print(table)


def show_train(out: Console, result: TrainResponse) -> None:
    table = _table(
        "training",
        ("run", "verdict at step 0", "final val acc", "best val acc", "final train loss"),
        right=("final val acc", "best val acc", "final train loss"),
    )
    for row in result.table:
        _row(
            table,
            row.name + (" (diverged)" if row.diverged else ""),
            row.verdict,
            _num(row.final_val_accuracy),
            _num(row.best_val_accuracy),
            _num(row.final_train_loss),
        )
    out.print(table)
    for run in result.runs:
        for claim in run.check.claims:
            held = "held" if claim.held else "did not hold"
            out.print(Text(f"{run.name}: {claim.claim} {held}: {claim.evidence}"))


def show_search(out: Console, result: SearchResponse) -> None:
    table = _table(
        f"random search, median validation accuracy {_num(result.median_val_accuracy)}",
        ("rank", result.x_param, result.y_param, "val acc", "val loss", "train acc"),
        right=("rank", result.x_param, result.y_param, "val acc", "val loss", "train acc"),
    )
    for t in result.trials:
        _row(
            table,
            str(t.rank),
            _num(t.x),
            _num(t.y),
            _num(t.val_accuracy),
            _num(t.val_loss),
            _num(t.train_accuracy),
        )
    out.print(table)


SHOW: dict[str, Callable[[Console, Any], None]] = {
    "train": show_train,
    "search": show_search,
    "analyze": show_analysis,
    "compare": show_comparison,
    "sweep": show_sweep,
    "initializers": show_initializers,
    "activations": show_activations,
}


def _json(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    return TypeAdapter(type(value)).dump_json(value, indent=2).decode()


# --- commands --------------------------------------------------------------------------------


def _client(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> client.Client:
    return client.Client(
        args.url,
        timeout=args.timeout,
        retries=args.retries,
        transport=transport,
        api_key=args.api_key,
    )


def _emit(args: argparse.Namespace, streams: Streams, kind: str, answer: Any) -> int:
    """Write the answer where it belongs: a figure to -o or stdout; JSON to -o, and to stdout
    unless a table is shown there (on a terminal without --json)."""
    output: str | None = getattr(args, "output", None)
    if isinstance(answer, bytes):
        if output:
            Path(output).write_bytes(answer)
            streams.err.print(f"wrote {output} ({len(answer)} bytes)", highlight=False)
        else:
            streams.binary.write(answer)
            streams.binary.flush()
        return OK
    text = _json(answer)
    if output:
        Path(output).write_text(text + "\n")
    if streams.out.is_terminal and not args.json:
        SHOW[kind](streams.out, answer)
    elif not output:
        streams.out.file.write(text + "\n")
        streams.out.file.flush()
    return exit_status(answer)


def compute(
    args: argparse.Namespace, streams: Streams, transport: httpx.BaseTransport | None
) -> int:
    kind: str = args.command
    if args.format != "json" and not args.output and streams.out.is_terminal:
        raise InputError(
            f"not writing a {args.format.upper()} figure to a terminal: give -o FILE or redirect"
        )
    body = read_spec(args.spec)
    sizing = {"width": args.width, "height": args.height, "dpi": args.dpi}
    if args.format == "json" and any(v is not None for v in sizing.values()):
        raise InputError("--width, --height and --dpi size a figure: give --format png or svg")
    parts: int = getattr(args, "parts", 1)
    if parts != 1 and args.format != "json":
        raise InputError("--parts answers JSON: a figure needs the unsplit request")
    if args.url is None:
        figure = None
        if args.format != "json":
            figure = FigureOptions(args.format, args.width, args.height, args.dpi or 100)
        # a worker's configuration: one BLAS thread, its products cut for the pool's CPUs
        settings = Settings()
        cores.set_local(settings.threads_per_worker, settings.pool_cpus)
        with threadpool_limits(limits=1):
            if parts == 1:
                answer = compute_here(kind, body, figure, streams.err)
            else:  # one part after another here, merged: what --url's replicas would answer
                answers = [compute_here(kind, b, None, streams.err) for b in _split(body, parts)]
                answer = MERGE[kind](answers)
    else:
        with (
            _client(args, transport) as service,
            progress(streams.err, f"waiting for {args.url}", None),
        ):
            call = getattr(service, kind)
            if parts != 1:
                answer = call(body, parts=parts)
            elif args.format == "json":
                answer = call(body)
            else:
                answer = call(body, format=args.format, **sizing)
    return _emit(args, streams, kind, answer)


MERGE: dict[str, Callable[[Any], Any]] = {
    "sweep": client.merge_sweep,
    "search": client.merge_search,
}


def _split(body: Any, parts: int) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    try:
        return client.split(body, parts)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def list_catalogue(
    args: argparse.Namespace, streams: Streams, transport: httpx.BaseTransport | None
) -> int:
    what: str = args.what
    if args.url is None:
        items: Any = list(
            catalogue.initializers() if what == "initializers" else catalogue.activations()
        )
    else:
        with _client(args, transport) as service:
            items = service.initializers() if what == "initializers" else service.activations()
    return _emit(args, streams, what, items)


def serve(args: argparse.Namespace) -> int:
    overrides = {
        k: getattr(args, k) for k in ("host", "port", "workers") if getattr(args, k) is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # an INITSCOPE_* variable that is not valid
        raise InputError(f"invalid settings: {exc}") from exc
    server.serve(settings)
    return OK


# --- the parser ----------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="initscope",
        description="Network-initialisation analysis: serve the API, or analyse from the shell.",
        epilog="exit status: 0 healthy, 1 findings, 2 usage or input error, 3 service error",
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serving = commands.add_parser(
        "serve",
        help="serve the HTTP API (uvicorn; drains on SIGTERM); also python -m initscope",
        description="Serve the HTTP API until SIGTERM or SIGINT, then drain and exit 0.",
    )
    serving.add_argument("--host", help="interface to listen on (default: INITSCOPE_HOST, 0.0.0.0)")
    serving.add_argument("--port", type=_positive, help="port (default: INITSCOPE_PORT, 8000)")
    serving.add_argument(
        "--workers", type=_positive, help="worker processes for the NumPy work (default: CPUs)"
    )

    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--url", help="a running service (default: compute in this process)")
    remote.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for --url (300)"
    )
    remote.add_argument(
        "--retries", type=int, default=3, help="retries of a 503 with Retry-After (3)"
    )
    remote.add_argument(
        "--api-key",
        default=os.environ.get("INITSCOPE_API_KEY"),
        help="the service's API key, sent as Authorization: Bearer (default: INITSCOPE_API_KEY;"
        " the variable keeps it out of the process list)",
    )
    remote.add_argument("--json", action="store_true", help="print JSON even on a terminal")

    for kind, help_text in (
        ("analyze", "per-layer statistics, gradient decay and a diagnosis of one network"),
        ("compare", "2 to 8 variants of a network on the same input"),
        ("sweep", "a phase diagram over two hyperparameters"),
        ("train", "train a network (or variants) on a task and check the diagnosis"),
        ("search", "random search over two hyperparameters, ranked by validation accuracy"),
    ):
        command = commands.add_parser(kind, parents=[remote], help=help_text, description=help_text)
        command.add_argument(
            "spec", metavar="SPEC.json", help=f"the /{kind} request body; - reads stdin"
        )
        command.add_argument("--format", choices=("json", "png", "svg"), default="json")
        command.add_argument(
            "-o", "--output", metavar="FILE", help="write the JSON or the figure here"
        )
        command.add_argument("--width", type=_positive, help="figure width, px")
        command.add_argument("--height", type=_positive, help="figure height, px")
        command.add_argument("--dpi", type=_positive, help="figure resolution (100)")
        if kind in MERGE:
            share = "row" if kind == "sweep" else "trial"
            command.add_argument(
                "--parts",
                type=_positive,
                default=1,
                metavar="K",
                help=f"split the job into K requests (each every K-th {share}) sent at once "
                "to --url, whose replicas share it, and merge their JSON into the unsplit "
                "answer; without --url the parts run one after another here (1)",
            )

    listing = commands.add_parser("list", parents=[remote], help="the catalogue")
    listing.add_argument("what", choices=("initializers", "activations"))
    return main_parser


def run(
    argv: Sequence[str] | None = None,
    streams: Streams | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """The command's exit status; ``transport`` replaces the network for ``--url`` (tests)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    streams = streams or Streams.system()
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "list":
            return list_catalogue(args, streams, transport)
        return compute(args, streams, transport)
    except InputError as exc:
        return _fail(streams, str(exc), INPUT_ERROR)
    except (ValidationError, errors.InvalidRequest) as exc:
        return _fail(streams, validation_problem(exc).message, INPUT_ERROR)
    except (client.InvalidRequest, client.NotAcceptable) as exc:
        return _fail(streams, exc.message, INPUT_ERROR)
    except client.ClientError as exc:
        return _fail(streams, str(exc), SERVICE_ERROR)


def _fail(streams: Streams, message: str, status: int) -> int:
    streams.err.print(f"initscope: {message}", highlight=False, markup=False, soft_wrap=True)
    return status


def main() -> None:
    sys.exit(run())
