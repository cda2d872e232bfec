"""``--server URL --api-key-file KEYFILE``: run ``segment``/``eval`` on an ``openmedlab serve`` box."""

from __future__ import annotations


def add_server_args(p) -> None:
    p.add_argument("--server", metavar="URL", help="use the engine of an `openmedlab serve` server")
    p.add_argument("--api-key-file", metavar="KEYFILE", help="the server's API key (with --server)")


def engine_from_args(args, **local_kwargs):
    """A :class:`RemoteEngine` with ``--server``, else the local engine (``create_engine``)."""
    server = getattr(args, "server", None)
    if server:
        from ..engines.remote import RemoteEngine, RemoteError, read_api_key

        if not getattr(args, "api_key_file", None):
            raise RemoteError("--server needs --api-key-file KEYFILE")
        return RemoteEngine(server, read_api_key(args.api_key_file), args.model)
    from ..engines import create_engine

    return create_engine(args.model, args.checkpoint, args.device, **local_kwargs)
