"""``quiver serve [REPO] [--host H] [--port P] ...``"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from quiver.errors import QuiverError
from quiver.settings import Settings


def register(subparsers: Any) -> None:
    docs = Settings.docs()
    parser = subparsers.add_parser(
        "serve",
        help="Serve a model repository over the Open Inference Protocol (HTTP and gRPC).",
        description="Serve a model repository. Without REPO, serves the built-in example repository "
        "(generated offline on first use). Settings also come from --config FILE and QUIVER_* variables.",
    )
    parser.add_argument("repository", nargs="?", default=None, help=docs["repository"])
    parser.add_argument("--config", help="A TOML file of settings (the names below, with underscores).")
    parser.add_argument("--host", help=docs["host"] + " Default 127.0.0.1.")
    parser.add_argument("--port", type=int, help=docs["port"] + " Default 8000.")
    parser.add_argument("--grpc-port", type=int, help=docs["grpc_port"] + " Default 8001.")
    parser.add_argument("--max-body-mb", type=float, help=docs["max_body_mb"] + " Default 64.")
    parser.add_argument("--access-log", action="store_true", default=None, help=docs["access_log"])
    parser.add_argument("--log-level", help=docs["log_level"])
    parser.add_argument("--strict-readiness", action="store_true", default=None, help=docs["strict_readiness"])
    parser.add_argument("--shutdown-timeout-s", type=float, help=docs["shutdown_timeout_s"])
    parser.add_argument("--poll-interval-s", type=float, help=docs["poll_interval_s"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(
            args.config,
            repository=args.repository,
            host=args.host,
            port=args.port,
            grpc_port=args.grpc_port,
            max_body_mb=args.max_body_mb,
            access_log=args.access_log,
            log_level=args.log_level,
            strict_readiness=args.strict_readiness,
            shutdown_timeout_s=args.shutdown_timeout_s,
            poll_interval_s=args.poll_interval_s,
        )
    except QuiverError as exc:
        print(f"quiver serve: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.repository:
        repository = Path(settings.repository)
        if not repository.is_dir():
            print(f"quiver serve: model repository {repository} is not a folder", file=sys.stderr)
            return 2
    else:
        from quiver.zoo.examples import ensure_example_repository

        repository = ensure_example_repository()
    from quiver.server.app import serve

    _install_uvloop()
    try:
        return asyncio.run(serve(settings, repository))
    except OSError as exc:  # a port that cannot be bound, most often
        print(f"quiver serve: {exc}", file=sys.stderr)
        return 2


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
