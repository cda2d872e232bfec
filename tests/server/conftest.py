"""A real `openmedlab serve` app on the loopback address, in a thread, stopped after the module."""

import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app, port: int) -> None:
        import uvicorn

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_app(models=("seeded-region",), checkpoints=None, **kwargs):
    from napari_openmedlab.server.app import ServerConfig, create_app

    config = ServerConfig(KEY, list(models), checkpoints=checkpoints or {}, device="cpu", **kwargs)
    return create_app(config)


@pytest.fixture
def live_server():
    """Start a server with given settings: ``with live_server(models=..., max_sessions=...) as s``."""

    def start(**kwargs):
        return LiveServer(make_app(**kwargs), free_port())

    return start
