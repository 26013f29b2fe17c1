"""`hypoderm serve`: the mobile diagnosis web app and its JSON API (hypoderm.app.server)."""

from __future__ import annotations

import argparse
import sys

from hypoderm.app.limits import DEFAULT_SERVER_THREADS, SLOW_MIN_AGE_S, Limits
from hypoderm.app.state import WEB_ASSETS_ENV
from hypoderm.commands import path_text
from hypoderm.errors import UsageError

D = Limits()  # the defaults the options show


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, type=path_text,
                        help="model.onnx (or its folder) made by `hypoderm export`; default: the bundled model")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--web-assets", default=None, type=path_text,
                        help="folder holding onnxruntime-web/dist for in-browser inference "
                             f"(default: ${WEB_ASSETS_ENV} or the repository's node_modules)")
    parser.add_argument("--max-upload-mb", type=float, default=D.max_upload_bytes / 2**20,
                        help=f"largest accepted upload in MiB (default {D.max_upload_bytes / 2**20:g})")
    parser.add_argument("--max-pixels", type=int, default=D.max_pixels,
                        help=f"largest accepted image in pixels (default {D.max_pixels})")
    parser.add_argument("--threads", type=int, default=DEFAULT_SERVER_THREADS,
                        help=f"ONNX Runtime threads per server prediction (default {DEFAULT_SERVER_THREADS}; "
                             "predictions run in parallel up to --max-decodes)")
    limits = parser.add_argument_group("limits against slow, stalled or too many clients")
    limits.add_argument("--max-decodes", type=int, default=D.max_decodes,
                        help="photos decoded at once; memory is this times the worst image "
                             f"(default {D.max_decodes})")
    limits.add_argument("--header-timeout", type=float, default=D.header_timeout,
                        help=f"seconds to receive a request's headers (default {D.header_timeout:g})")
    limits.add_argument("--body-timeout", type=float, default=D.body_timeout,
                        help=f"seconds to receive an upload; slower gets 408 (default {D.body_timeout:g})")
    limits.add_argument("--keep-alive-timeout", type=float, default=D.keep_alive_timeout,
                        help=f"seconds an idle keep-alive connection stays open (default {D.keep_alive_timeout:g})")
    limits.add_argument("--limit-concurrency", type=int, default=D.limit_concurrency,
                        help="predictions whose upload has arrived (queued or decoding) before new ones get a JSON "
                             f"503; health and the page still answer (default {D.limit_concurrency})")
    limits.add_argument("--max-uploads", type=int, default=D.max_uploads,
                        help="uploads still arriving, all clients together, before new ones get a JSON 503 "
                             f"(default {D.max_uploads})")
    limits.add_argument("--max-uploads-per-client", type=int, default=D.max_uploads_per_client,
                        help="slow uploads (see --slow-upload-kib) still arriving from one client address before "
                             f"its slow ones get a JSON 429 (default {D.max_uploads_per_client}); fast uploads "
                             "are not capped per address")
    limits.add_argument("--slow-upload-kib", type=float, default=D.slow_upload_rate / 1024,
                        help="KiB/s under which an arriving upload counts as slow: its average since it began, "
                             f"judged once it is {SLOW_MIN_AGE_S:g} s old "
                             f"(default {D.slow_upload_rate / 1024:g})")
    limits.add_argument("--forwarded-allow-ips", default=D.forwarded_allow_ips, metavar="ADDRESSES",
                        help="comma-separated addresses of your reverse proxy (or *): their X-Forwarded-For header "
                             "gives the client's address (default: none; every header is ignored)")
    limits.add_argument("--max-buffered-mb", type=float, default=D.max_buffered_bytes / 2**20,
                        help="upload MiB held in memory by all requests together before new uploads get 503 "
                             f"(default {D.max_buffered_bytes / 2**20:g})")
    limits.add_argument("--max-connections", type=int, default=D.max_connections,
                        help=f"open connections before new ones are closed at once (default {D.max_connections})")


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The server's Limits from the parsed options (MiB and KiB/s to bytes; the buffered-bytes budget at least
    one upload)."""
    max_upload_bytes = int(args.max_upload_mb * 2**20)
    try:
        return Limits(max_upload_bytes=max_upload_bytes, max_pixels=args.max_pixels, max_decodes=args.max_decodes,
                      body_timeout=args.body_timeout, header_timeout=args.header_timeout,
                      keep_alive_timeout=args.keep_alive_timeout, limit_concurrency=args.limit_concurrency,
                      max_uploads=args.max_uploads, max_uploads_per_client=args.max_uploads_per_client,
                      slow_upload_rate=args.slow_upload_kib * 1024,
                      max_buffered_bytes=max(int(args.max_buffered_mb * 2**20), max_upload_bytes),
                      max_connections=args.max_connections, forwarded_allow_ips=args.forwarded_allow_ips)
    except ValueError as e:  # what the checks in run() do not catch: e.g. --max-upload-mb under one byte
        raise UsageError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from hypoderm.app.server import check_can_listen, create_app, serve
    from hypoderm.model_quality import metadata_problems

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise UsageError("--max-upload-mb and --max-pixels must be positive")
    positive = {"--max-decodes": args.max_decodes, "--header-timeout": args.header_timeout,
                "--body-timeout": args.body_timeout, "--keep-alive-timeout": args.keep_alive_timeout,
                "--limit-concurrency": args.limit_concurrency, "--max-connections": args.max_connections,
                "--max-uploads": args.max_uploads, "--max-uploads-per-client": args.max_uploads_per_client,
                "--max-buffered-mb": args.max_buffered_mb, "--slow-upload-kib": args.slow_upload_kib}
    bad = [name for name, value in positive.items() if not value > 0]
    if bad:
        raise UsageError(f"{', '.join(bad)} must be positive")
    limits = limits_from_args(args)
    # a model that cannot be used is a ModelLoadError (a user error: exit code 2, the server does not start)
    app = create_app(args.model, limits=limits, web_assets=args.web_assets, threads=args.threads)
    state = app.state.hypoderm
    if state.web_assets is None:
        print("hypoderm serve: onnxruntime-web not found; the page will use server inference "
              f"(run scripts/install_web_assets.sh or set {WEB_ASSETS_ENV})", file=sys.stderr)
    problems = metadata_problems(state.metadata)
    if problems:  # the page says so too; whoever starts the server should hear it first
        print(f"hypoderm serve: WARNING: this model failed its quality checks when it was exported "
              f"({'; '.join(p['message'] for p in problems)}); do not rely on its answers.", file=sys.stderr)
    check_can_listen(args.host, args.port)  # a taken port is said in words, before it says where it runs
    print(f"hypoderm serve: {state.metadata.get('model_name')} on http://{args.host}:{args.port}/ "
          f"(API docs at /docs). A decision aid, not a diagnosis.", file=sys.stderr)
    serve(app, args.host, args.port, limits)
    return 0
