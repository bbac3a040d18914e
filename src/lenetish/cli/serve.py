"""The ``lenetish serve`` command: its options (torch-free) and running the service.

Only :func:`serve_command` imports the serving stack (FastAPI, uvicorn, torch), so
``lenetish --help`` and ``lenetish serve --help`` answer at once, with or without the extra.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from lenetish.catalog import DATASETS

__all__ = ["add_serve_parser", "serve_command"]

_EXAMPLES = """examples:
  lenetish serve                                # shipped weights, http://127.0.0.1:8000/
  lenetish serve runs/a/model.safetensors --port 8080
  lenetish serve --weights best --host 0.0.0.0 --allow-host myhost.lan  # others may connect
  curl -H 'Content-Type: image/png' --data-binary @digit.png http://127.0.0.1:8000/predict"""


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type=``: a number of ``kind`` from ``low`` to ``high``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__}: {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


def add_serve_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``serve`` command and its options to the ``lenetish`` parser's commands."""
    about = "serve predictions over HTTP, with a page to draw a digit (needs lenetish[serve])"
    serve = commands.add_parser(
        "serve",
        help=about,
        description=about,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "checkpoint",
        nargs="?",
        metavar="WEIGHTS",
        help="a weights file (.pt, .safetensors, a plain state dict; default: the shipped "
        "weights, see --weights)",
    )
    serve.add_argument(
        "--weights", metavar="NAME", default=None, help="without WEIGHTS: which shipped weights"
    )
    serve.add_argument(
        "--dataset",
        default="auto",
        choices=["auto", *sorted(DATASETS)],
        help="auto (default): what the weights file records, else mnist",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, loopback: only this machine; "
        "0.0.0.0: every interface)",
    )
    serve.add_argument(
        "--port", type=_bounded(int, 0, 65535), default=8000, help="default: 8000 (0: any free)"
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        default=None,
        help="a name requests may give in their Host header, besides localhost, 127.0.0.1, "
        "[::1] and --host (repeat it for more; '*': any name). Others get status 421, which "
        "keeps pages of other sites out (DNS rebinding)",
    )
    serve.add_argument(
        "--max-connections",
        type=_bounded(int, 1, 100_000),
        default=512,
        help="most connections open at once (default: 512); beyond it the longest idle one "
        "is closed",
    )
    serve.add_argument(
        "--api-docs",
        action="store_true",
        help="serve /docs and /redoc (their scripts come from a CDN); /openapi.json is always "
        "served",
    )
    serve.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cpu)")
    serve.add_argument(
        "--threads",
        type=_bounded(int, 1, 1024),
        default=1,
        help="torch CPU threads of the model (default: 1, which leaves the other cores to the "
        "HTTP side; small batches gain little from more)",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=_bounded(float, 0.001, 1024),
        default=5.0,
        help="largest request body taken, in MiB (default: 5); larger ones get status 413",
    )
    serve.add_argument(
        "--max-batch",
        type=_bounded(int, 1, 65536),
        default=256,
        help="most images in one forward pass (default: 256)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=_bounded(float, 0, 1000),
        default=5.0,
        help="how long a request may wait for others to share its pass (default: 5)",
    )
    serve.add_argument(
        "--no-batching", action="store_true", help="one request per forward pass (to compare)"
    )
    return serve


def _allowed_hosts(host: str, extra: list[str] | None) -> tuple[str, ...] | None:
    """The Host names taken: the default ones and ``--allow-host`` (``None``: the default)."""
    from lenetish.serve.settings import ServeSettings

    if not extra:
        return None
    return (*ServeSettings(host=host).host_names, *extra)


def serve_command(args: argparse.Namespace) -> None:
    """Load the model, bind the socket, say where, and serve until SIGINT or SIGTERM."""
    from lenetish.cli.models import is_weights_path
    from lenetish.cli.output import say
    from lenetish.errors import InvalidArgumentError
    from lenetish.serve import ServeSettings, create_app, listen, run_server
    from lenetish.shipped import pretrained

    if args.checkpoint is not None:
        if args.weights is not None:
            raise InvalidArgumentError(
                f"--weights {args.weights} picks shipped weights, but {args.checkpoint} was "
                "given too; drop one of them"
            )
        if not is_weights_path(args.checkpoint):
            raise InvalidArgumentError(
                f"{args.checkpoint} is not a weights file (.pt, .safetensors or a state dict); "
                "for shipped weights pass --weights NAME"
            )
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        allowed_hosts=_allowed_hosts(args.host, args.allow_host),
        max_connections=args.max_connections,
        api_docs=args.api_docs,
        max_upload_bytes=max(1, round(args.max_upload_mb * 2**20)),
        batching=not args.no_batching,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        device=args.device,
        threads=args.threads,
    )
    if args.checkpoint is not None:
        from lenetish.saving.weightfiles import load_model

        model, source = load_model(args.checkpoint), str(args.checkpoint)
    else:
        name = args.weights or "default"
        model, source = pretrained(name), f"shipped weights {name!r}"
    app = create_app(model, settings=settings, dataset=args.dataset, source=source)
    sock = listen(settings.host, settings.port)
    try:
        run_server(app, sock, what=f"{type(model).__name__} ({source})", say=say)
    finally:
        sock.close()
