"""The HTTP front of ``openmedlab serve`` (FastAPI; run by uvicorn).

Endpoints (JSON unless said otherwise; every one but ``/healthz`` needs the API key in
``Authorization: Bearer KEY``; session endpoints also need the session's ``X-Lease`` token):

=====================================  =======================================================
``GET /healthz``                       liveness, no key
``GET /capabilities``                  models, devices, versions, limits
``POST /sessions``                     ``{"model": NAME}`` -> ``{"session", "lease", "timeout_s"}``;
                                       503 at capacity
``PUT /sessions/{id}/volume``          body: zlib of the array; header ``X-Volume``: JSON
                                       ``{"shape", "dtype", "geometry"}``
``POST /sessions/{id}/predict``        prompts (see :mod:`engines.wire`) -> changed box + patch
``POST /sessions/{id}/reset``          forget the current object
``POST /sessions/{id}/heartbeat``      renew the lease
``DELETE /sessions/{id}``              release the session
=====================================  =======================================================

Errors are ``{"detail": "one line"}`` with a 4xx status for anything the client got wrong; an
unexpected failure is a 500 with a one-line message, never a traceback. The key is compared in
constant time and never logged. TLS belongs to a reverse proxy in front (see docs/server.md).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import platform
import threading
import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..engines import Cancelled, EngineError, PromptError
from ..engines.wire import WireError, decode_volume, encode_update, prompts_from_json
from ..io.geometry import Geometry
from ..io.volume import Volume
from .models import ModelPool
from .sessions import SessionError, SessionManager

log = logging.getLogger("napari_openmedlab.server")


class ServerConfig:
    def __init__(self, api_key: str, models: list[str], *, checkpoints: dict | None = None,
                 device: str = "auto", max_sessions: int = 4, timeout_s: float = 300.0,
                 max_upload_bytes: int = 512 << 20, max_voxels: int = 1024 * 1024 * 1024,
                 reap_interval_s: float = 5.0) -> None:
        if not api_key or len(api_key) < 16:
            raise ValueError("the API key must be at least 16 characters")
        self.api_key = api_key
        self.models = list(models)
        self.checkpoints = checkpoints or {}
        self.device = device
        self.max_sessions = max_sessions
        self.timeout_s = timeout_s
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_voxels = int(max_voxels)
        self.reap_interval_s = reap_interval_s


def create_app(config: ServerConfig, pool: ModelPool | None = None):
    pool = pool or ModelPool(config.models, config.checkpoints, config.device)
    manager = SessionManager(pool, config.max_sessions, config.timeout_s)
    stop_event = threading.Event()

    def reaper():
        while not stop_event.wait(config.reap_interval_s):
            for sid in manager.reap():
                log.info("session %s reaped (no request for %.0f s)", sid, config.timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        thread = threading.Thread(target=reaper, name="openmedlab-reaper", daemon=True)
        thread.start()
        yield
        stop_event.set()

    app = FastAPI(title="napari-openmedlab server", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.state.manager = manager
    key = config.api_key.encode()

    def fail(status: int, message: str):
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(SessionError)
    async def _session_error(request, err: SessionError):
        return fail(err.status, err.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, err):
        first = err.errors()[0] if err.errors() else {}
        return fail(422, f"malformed request: {first.get('msg', 'invalid body')} at {'.'.join(map(str, first.get('loc', [])))}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, err):
        return fail(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request, err):
        log.error("unexpected %s on %s: %s", type(err).__name__, request.url.path, err)
        return fail(500, f"internal error ({type(err).__name__}); the server log has the details")

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if request.url.path != "/healthz":
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not token or not hmac.compare_digest(token.encode(), key):
                return fail(401, "missing or wrong API key (send Authorization: Bearer KEY)")
        return await call_next(request)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/capabilities")
    def capabilities():
        import torch

        from ..models.device import available_devices

        return {
            "version": __version__,
            "models": pool.names,
            "loaded": pool.loaded(),
            "devices": available_devices(),
            "device": config.device,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "max_sessions": manager.max_sessions,
            "sessions": manager.count(),
            "session_timeout_s": manager.timeout_s,
            "max_upload_bytes": config.max_upload_bytes,
            "max_voxels": config.max_voxels,
        }

    async def json_body(request: Request, limit: int = 4 << 20):
        raw = await _read_limited(request, limit)
        try:
            return json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise SessionError(400, "the body is not valid JSON") from None

    async def _read_limited(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise SessionError(413, f"upload of {int(declared)} bytes exceeds the limit of {limit}")
            except ValueError:
                raise SessionError(400, "bad Content-Length") from None
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise SessionError(413, f"upload exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
        if declared is not None and len(data) != int(declared):
            raise SessionError(400, f"truncated upload: {len(data)} of {declared} bytes")
        return data

    @app.post("/sessions", status_code=201)
    async def claim(request: Request):
        body = await json_body(request)
        if not isinstance(body, dict) or "model" not in body:
            raise SessionError(400, "claim a session with {\"model\": NAME}")
        session = await run_in_threadpool(manager.claim, body["model"])
        log.info("session %s claimed for %s", session.id, body["model"])
        return {"session": session.id, "lease": session.lease, "timeout_s": manager.timeout_s,
                "model": body["model"]}

    @app.put("/sessions/{sid}/volume")
    async def upload(sid: str, request: Request):
        session = manager.get(sid, request.headers.get("x-lease"))
        try:
            header = json.loads(request.headers.get("x-volume", ""))
            if not isinstance(header, dict):
                raise ValueError
        except ValueError:
            raise SessionError(400, "header X-Volume must be JSON {shape, dtype, geometry}") from None
        body = await _read_limited(request, config.max_upload_bytes)

        def load():
            try:
                array = decode_volume(header, body, config.max_voxels)
                geometry = Geometry.from_dict(header.get("geometry") or Geometry().to_dict())
            except WireError as err:
                raise SessionError(400, str(err)) from None
            except (KeyError, TypeError, ValueError) as err:
                raise SessionError(400, f"bad geometry in X-Volume: {err}") from None
            if array.dtype.kind == "f" and not np.isfinite(array).any():
                raise SessionError(400, "the volume has no finite voxel")
            with session.lock:
                session.engine.set_volume(Volume(array, geometry))
                session.has_volume = True
                session.previous = None
            return {"shape": list(array.shape)}

        return await run_in_threadpool(load)

    @app.post("/sessions/{sid}/predict")
    async def predict(sid: str, request: Request):
        session = manager.get(sid, request.headers.get("x-lease"))
        if not session.has_volume:
            raise SessionError(409, "upload the volume first (PUT /sessions/{id}/volume)")
        body = await json_body(request, limit=64 << 20)

        def run():
            try:
                prompts = prompts_from_json(body, session.engine.volume.shape)
            except (WireError, PromptError) as err:
                raise SessionError(400, str(err)) from None
            t0 = time.perf_counter()
            with session.lock:
                try:
                    if _needs_accelerator_lock(session):
                        with session.model.lock:
                            prediction = session.engine.predict(prompts)
                    else:
                        prediction = session.engine.predict(prompts)
                except (PromptError, EngineError, Cancelled, ValueError) as err:
                    raise SessionError(400, str(err)) from None
                message = encode_update(session.previous, prediction)
                session.previous = prediction
                session.clicks += 1
            message["timings"]["server"] = time.perf_counter() - t0
            return message

        return await run_in_threadpool(run)

    @app.post("/sessions/{sid}/reset")
    def reset(sid: str, request: Request):
        session = manager.get(sid, request.headers.get("x-lease"))
        with session.lock:
            session.engine.reset()
            session.previous = None
        return {"ok": True}

    @app.post("/sessions/{sid}/heartbeat")
    def heartbeat(sid: str, request: Request):
        manager.get(sid, request.headers.get("x-lease"))
        return {"ok": True, "timeout_s": manager.timeout_s}

    @app.delete("/sessions/{sid}")
    def release(sid: str, request: Request):
        manager.release(sid, request.headers.get("x-lease"))
        log.info("session %s released", sid)
        return {"ok": True}

    return app


def _needs_accelerator_lock(session) -> bool:
    """Neural engines share one network and device: serialise them; the weight-free one runs freely."""
    return hasattr(session.engine, "model") or hasattr(session.engine, "network")
