"""Sessions with leases: claim, use, heartbeat, release; idle ones are reaped and their memory freed.

A client claims a session for one model and gets a session id plus a secret lease token; every
later request names both, so one user cannot drive another's session even with the API key. Each
request renews the lease. A session not renewed within ``timeout_s`` is reaped (its engine, volume
and embedding cache dropped) and the capacity comes back.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from ..engines import Engine, Prediction
from .models import LoadedModel, ModelPool


class SessionError(Exception):
    """A request that cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Session:
    id: str
    lease: str
    model: LoadedModel
    engine: Engine
    created: float
    last_seen: float
    has_volume: bool = False
    previous: Prediction | None = None
    clicks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionManager:
    def __init__(self, pool: ModelPool, max_sessions: int = 4, timeout_s: float = 300.0,
                 clock=time.monotonic) -> None:
        self.pool = pool
        self.max_sessions = int(max_sessions)
        self.timeout_s = float(timeout_s)
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def claim(self, model: str) -> Session:
        if not isinstance(model, str) or model not in self.pool.names:
            raise SessionError(400, f"unknown model {model!r}; this server offers {', '.join(self.pool.names)}")
        self.reap()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise SessionError(503, f"the server is at capacity ({self.max_sessions} sessions); try again later")
            sid = secrets.token_hex(8)
            # reserve the slot before the (possibly slow) model load
            placeholder = Session(sid, secrets.token_urlsafe(24), None, None, self._clock(), self._clock())  # type: ignore[arg-type]
            self._sessions[sid] = placeholder
        try:
            loaded = self.pool.get(model)
            placeholder.model = loaded
            placeholder.engine = loaded.new_engine()
        except Exception:
            with self._lock:
                self._sessions.pop(sid, None)
            raise
        return placeholder

    def get(self, sid: str, lease: str | None) -> Session:
        self.reap()
        with self._lock:
            session = self._sessions.get(sid)
        if session is None or session.engine is None:
            raise SessionError(404, f"no session {sid!r} (it may have expired; claim a new one)")
        if not lease or not hmac.compare_digest(str(lease).encode(), session.lease.encode()):
            raise SessionError(403, "this lease does not hold that session")
        session.last_seen = self._clock()
        return session

    def release(self, sid: str, lease: str | None) -> None:
        session = self.get(sid, lease)
        with self._lock:
            self._sessions.pop(session.id, None)

    def reap(self) -> list[str]:
        """Drop sessions idle past the timeout; returns their ids."""
        now = self._clock()
        with self._lock:
            dead = [sid for sid, s in self._sessions.items()
                    if s.engine is not None and now - s.last_seen > self.timeout_s]
            for sid in dead:
                self._sessions.pop(sid)
        return dead

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)
