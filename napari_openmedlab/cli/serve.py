"""``openmedlab serve``: share one GPU box with the department (see docs/server.md)."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve the engines over HTTP to many users (one GPU box)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; put TLS in a reverse proxy)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--api-key-file", required=True, help="file whose first line is the API key (>= 16 chars)")
    p.add_argument("--max-sessions", type=int, default=4)
    p.add_argument("--session-timeout", type=float, default=300.0, help="seconds without a request before a session is reaped")
    p.add_argument("--models", default="seeded-region", help="comma-separated registry names")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                   help="local checkpoint for a model; repeatable")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--max-upload-mb", type=float, default=512)
    p.add_argument("--preload", action="store_true", help="load every model at start")
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        import uvicorn  # noqa: F401

        from ..server.app import ServerConfig, create_app
    except ImportError as err:
        print(f"openmedlab: error: the server needs the [server] extra ({err.name} is missing): "
              "pip install 'napari-openmedlab[server]'", file=sys.stderr)
        return 2
    from ..engines.remote import read_api_key
    from ..server.models import ModelPool

    key = read_api_key(args.api_key_file)
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            print(f"openmedlab: error: --checkpoint is MODEL=PATH; got {item!r}", file=sys.stderr)
            return 2
        checkpoints[name] = path
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    pool = ModelPool(models, checkpoints, args.device)
    if args.preload:
        pool.preload()
    config = ServerConfig(key, models, checkpoints=checkpoints, device=args.device,
                          max_sessions=args.max_sessions, timeout_s=args.session_timeout,
                          max_upload_bytes=int(args.max_upload_mb * (1 << 20)))
    app = create_app(config, pool)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"openmedlab serve: listening on {args.host}: put a TLS reverse proxy in front", file=sys.stderr)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
