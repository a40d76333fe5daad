"""``uclip serve``: serve an index over HTTP with a search page."""

from __future__ import annotations

import argparse
from typing import Any

from uclip.app.commands.common import add_model_argument, positive, seconds
from uclip.serve.settings import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_LIMIT_CONCURRENCY,
)


def run(ns: argparse.Namespace) -> int:
    from uclip.loading import SAVED_KINDS, parse_model_spec
    from uclip.serve.app import serve

    # The kind is checked here, the model loaded by serve() after the address checks.
    parse_model_spec(ns.model).require(SAVED_KINDS, "uclip serve")
    serve(
        ns.index,
        ns.model,
        host=ns.host,
        port=ns.port,
        images_root=ns.images,
        allowed_hosts=[h.strip() for h in ns.allowed_hosts.split(",")] if ns.allowed_hosts else (),
        limit_concurrency=ns.limit_concurrency,
        timeout_keep_alive=ns.timeout_keep_alive,
        header_timeout=ns.header_timeout,
    )
    return 0


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve an index over HTTP with a search page")
    serve.add_argument("--index", required=True)
    add_model_argument(serve, "the one the index was built with (uCLIP or CLT models only)")
    serve.add_argument(
        "--images",
        help="the image folder the index was built from (default: the index folder); the index "
        "itself never chooses which folder is served",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--allowed-hosts",
        help="comma-separated Host names to answer besides localhost, 127.0.0.1, [::1] and --host "
        "(e.g. search.example.org,*.example.org); needed with --host 0.0.0.0",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=positive,
        default=DEFAULT_LIMIT_CONCURRENCY,
        help="open connections above which requests get 503 (default %(default)s)",
    )
    serve.add_argument(
        "--timeout-keep-alive",
        type=seconds,
        default=DEFAULT_KEEP_ALIVE_S,
        help="seconds an idle keep-alive connection stays open (default %(default)s)",
    )
    serve.add_argument(
        "--header-timeout",
        type=seconds,
        default=DEFAULT_HEADER_TIMEOUT_S,
        help="seconds a client has to send a request's headers (default %(default)s)",
    )
    serve.set_defaults(func=run)
