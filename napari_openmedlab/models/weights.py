"""Weights cache: where checkpoints live, download with SHA-256 check, local paths always win.

The cache folder is ``$OPENMEDLAB_CACHE_DIR`` when set, else the platform's user cache
(``~/.cache/napari-openmedlab`` on Linux). A download goes to a temporary ``.part`` file beside the
target (through :func:`io.atomic.atomic_path`), is hashed while it streams and again on disk, and is
renamed into place only when complete and matching; a broken transfer or a wrong hash leaves no
file under the final name, and one left by a killed process is removed at the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .registry import ModelSpec

DownloadProgress = Callable[[int, int | None], None]
"""Called with (bytes received so far, total bytes or None when the server does not say)."""

CACHE_ENV = "OPENMEDLAB_CACHE_DIR"
_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A checkpoint is missing, or a download failed or did not match its hash."""


class DownloadCancelled(WeightsError):
    """The caller cancelled a download; nothing was left in the cache."""


def cache_dir() -> Path:
    """The weights cache folder (created on demand)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("napari-openmedlab"))
    return path


def clean_cache() -> list[Path]:
    """Remove partial downloads and conversions left in the cache by killed processes."""
    from ..io.atomic import remove_stale_temporaries

    return remove_stale_temporaries(cache_dir(), recursive=True)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(spec: ModelSpec) -> Path:
    """Where ``spec``'s checkpoint sits in the cache (whether or not it is there)."""
    return cache_dir() / spec.filename


def find_weights(spec: ModelSpec, checkpoint: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint to use: an explicit local path first, then the cache; None if absent."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            raise WeightsError(f"checkpoint {path} is a folder; give the checkpoint file inside it")
        if not path.is_file():
            raise WeightsError(f"checkpoint {path} does not exist")
        return path
    path = cached_path(spec)
    return path if path.is_file() else None


def missing_weights_message(spec: ModelSpec) -> str:
    """What to tell a user whose weights are not there: where we looked, how to get them."""
    lines = [
        f"No weights for {spec.name}: looked for {cached_path(spec)} "
        f"(cache folder from ${CACHE_ENV}, else the user cache).",
    ]
    if spec.url:
        lines.append(f"Download them with `openmedlab download {spec.name}` (from {spec.url}),")
        lines.append("or pass a local file with --checkpoint PATH.")
    else:
        lines.append(f"Get {spec.filename} as described here: {spec.source}")
        lines.append(f"then pass it with --checkpoint PATH or copy it to {cached_path(spec)}.")
    return "\n".join(lines)


def download_weights(
    spec: ModelSpec,
    *,
    url: str | None = None,
    progress: DownloadProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``spec``'s checkpoint into the cache, checking its SHA-256 when one is known.

    Returns the cached path. When the registry has no published hash, the hash computed on
    first download is recorded in a ``.sha256`` sidecar and checked on later downloads.
    """
    url = url or spec.url
    if not url:
        raise WeightsError(missing_weights_message(spec))
    target = cached_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    from ..io.atomic import atomic_path
    from ..io.errors import FileWriteError

    expected = spec.sha256 or _recorded_hash(target)
    digest = hashlib.sha256()

    def verify(tmp: Path) -> None:  # the bytes on disk, not only those received, are the weights
        actual = sha256_of(tmp)
        if actual != digest.hexdigest():
            raise WeightsError(f"download of {spec.name}: the file on disk differs from the bytes received")
        if expected and actual != expected:
            raise WeightsError(
                f"download of {spec.name} has SHA-256 {actual}, expected {expected}; discarded"
            )

    received = 0
    try:
        with atomic_path(target, suffix=".part", verify=verify) as part:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length else None
                while True:
                    if cancel is not None and cancel():
                        raise DownloadCancelled(f"download of {spec.name} cancelled")
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total)
                out.flush()
                os.fsync(out.fileno())
            if total is not None and received != total:
                raise WeightsError(f"download of {spec.name} broke off after {received} of {total} bytes")
    except FileWriteError as err:
        if isinstance(err.__cause__, WeightsError):  # cancelled, broken off or wrong hash: say that
            raise err.__cause__ from None
        raise WeightsError(f"download of {spec.name} from {url} failed: {err}") from err
    except OSError as err:
        raise WeightsError(f"download of {spec.name} from {url} failed: {err}") from err
    if not spec.sha256:
        record_hash(target, digest.hexdigest())
    return target


def record_hash(path: Path, sha256: str) -> None:
    """Keep the SHA-256 computed on first use beside an unpublished-hash checkpoint."""
    from ..io.atomic import atomic_write_json

    atomic_write_json(path.with_name(path.name + ".sha256"), {"sha256": sha256})


def _recorded_hash(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        return json.loads(sidecar.read_text()).get("sha256")
    return None
