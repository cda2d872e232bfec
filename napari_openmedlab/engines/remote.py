"""``RemoteEngine``: the engine contract served by ``openmedlab serve`` on another machine.

The widget, the CLI (``--server URL --api-key-file KEYFILE``) and the evaluation use it exactly like
a local engine. It claims a session on first use, uploads the volume once (zlib-compressed), sends
each prompt set as JSON and rebuilds the mask from the changed box + patch the server returns
(:mod:`.wire`), so the result equals the local engine's bit for bit. A background heartbeat keeps
the lease while the engine lives; :meth:`close` releases it. Uses only the standard library.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from ..io.volume import Volume
from .base import CancelFlag, Engine, EngineError, Prediction, ProgressCallback, PromptError, Prompts
from .wire import WireError, apply_update, encode_volume, prompts_to_json


class RemoteError(EngineError):
    """The server could not be reached, refused the key, was at capacity, or answered an error."""


class RemoteEngine(Engine):
    supports_boxes = True

    def __init__(self, url: str, api_key: str, model: str, *, timeout_s: float = 120.0,
                 heartbeat: bool = True) -> None:
        super().__init__()
        if not url.startswith(("http://", "https://")):
            raise RemoteError(f"server URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.name = model
        self.model = model
        self._key = api_key.strip()
        self.timeout_s = timeout_s
        self._session: str | None = None
        self._lease: str | None = None
        self._lease_timeout = 300.0
        self._previous: Prediction | None = None
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        caps = self.capabilities()
        if model not in caps.get("models", []):
            raise RemoteError(f"the server at {self.url} does not offer {model!r} (it offers {', '.join(caps.get('models', []))})")
        self.supports_boxes = model not in ("seeded-region", "sam-med3d-turbo", "sam-med3d")

    # --- HTTP -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 lease: bool = True) -> dict:
        hdrs = {"Authorization": f"Bearer {self._key}", **(headers or {})}
        if body is not None and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/json"
        if lease and self._lease:
            hdrs["X-Lease"] = self._lease
        req = urllib.request.Request(self.url + path, data=body, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read()).get("detail", "")
            except (ValueError, AttributeError):
                detail = ""
            if err.code == 401:
                raise RemoteError(f"the server at {self.url} refused the API key") from None
            if err.code == 503:
                raise RemoteError(f"the server at {self.url} is at capacity: {detail}") from None
            if err.code == 400 and path.endswith("/predict"):
                raise PromptError(detail or "the server refused the prompt") from None
            if err.code == 404 and self._session and path.startswith("/sessions/"):
                self._session = self._lease = None
                raise RemoteError(f"the server lost this session ({detail}); set the volume again") from None
            raise RemoteError(f"the server at {self.url} answered {err.code}: {detail or err.reason}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise RemoteError(f"cannot reach the server at {self.url} ({reason})") from None

    def capabilities(self) -> dict:
        return self._request("GET", "/capabilities", lease=False)

    def _claim(self) -> None:
        answer = self._request("POST", "/sessions", json.dumps({"model": self.model}).encode(), lease=False)
        self._session, self._lease = answer["session"], answer["lease"]
        self._lease_timeout = float(answer.get("timeout_s", 300.0))
        if self._heartbeat and self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="openmedlab-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(max(1.0, self._lease_timeout / 3)):
            if self._session:
                try:
                    self._request("POST", f"/sessions/{self._session}/heartbeat", b"{}")
                except EngineError:
                    pass  # the next real request reports the problem

    def close(self) -> None:
        """Release the server session (safe to call twice)."""
        self._stop.set()
        if self._session:
            try:
                self._request("DELETE", f"/sessions/{self._session}")
            except EngineError:
                pass
        self._session = self._lease = None

    def __del__(self) -> None:  # best effort; close() is the way
        try:
            self._stop.set()
        except Exception:
            pass

    # --- engine contract ----------------------------------------------------------------------
    def _set_volume(self, volume: Volume, progress: ProgressCallback | None) -> None:
        if self._session is None:
            self._claim()
        header, body = encode_volume(volume.array)
        header["geometry"] = volume.geometry.to_dict()
        if progress:
            progress(0.1, f"uploading {len(body) / 1e6:.1f} MB")
        try:
            self._request("PUT", f"/sessions/{self._session}/volume", body,
                          {"X-Volume": json.dumps(header), "Content-Type": "application/octet-stream"})
        except RemoteError as err:
            if self._session is None:  # lost (reaped/restarted): claim again once
                self._claim()
                self._request("PUT", f"/sessions/{self._session}/volume", body,
                              {"X-Volume": json.dumps(header), "Content-Type": "application/octet-stream"})
            else:
                raise err
        self._previous = None
        if progress:
            progress(1.0, "ready")

    def reset(self) -> None:
        self._previous = None
        if self._session:
            self._request("POST", f"/sessions/{self._session}/reset", b"{}")

    def _predict(self, prompts: Prompts, progress: ProgressCallback | None, cancel: CancelFlag | None) -> Prediction:
        if self._session is None:
            raise RemoteError("no server session: set the volume first")
        answer = self._request("POST", f"/sessions/{self._session}/predict",
                               json.dumps(prompts_to_json(prompts)).encode())
        try:
            prediction = apply_update(self._previous, answer)
        except WireError as err:
            raise RemoteError(f"the server sent a malformed mask ({err})") from None
        self._previous = prediction
        return prediction


def read_api_key(path) -> str:
    """The API key from a key file (first non-empty line); a clear error when unusable."""
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise RemoteError(f"{p}: cannot read the API key file ({err.strerror or err})") from None
    key = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(key) < 16:
        raise RemoteError(f"{p}: the API key must be at least 16 characters")
    return key
