"""Weights cache and download, against a small file served on 127.0.0.1 (no internet)."""

import hashlib
import http.server
import threading
from dataclasses import replace
from functools import partial

import pytest

from napari_openmedlab.models.registry import MODELS, UnknownModelError, get_spec
from napari_openmedlab.models.weights import (
    DownloadCancelled,
    WeightsError,
    cache_dir,
    cached_path,
    download_weights,
    find_weights,
    missing_weights_message,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path == "/broken.pth":  # announces more bytes than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            self.connection.close()
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "weights.pth").write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _spec(sha=hashlib.sha256(PAYLOAD).hexdigest()):
    return replace(MODELS["sam-med3d-turbo"], filename="tiny.pth", sha256=sha)


def test_cache_dir_from_environment(cache):
    assert cache_dir() == cache


def test_download_checks_hash_and_reports_progress(server, cache):
    seen = []
    path = download_weights(_spec(), url=f"{server}/weights.pth", progress=lambda r, t: seen.append((r, t)))
    assert path == cached_path(_spec()) and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert find_weights(_spec()) == path


def test_wrong_hash_leaves_nothing(server, cache):
    with pytest.raises(WeightsError, match="expected"):
        download_weights(_spec(sha="0" * 64), url=f"{server}/weights.pth")
    assert not any(cache.iterdir())


def test_broken_transfer_leaves_nothing(server, cache):
    with pytest.raises(WeightsError):
        download_weights(_spec(), url=f"{server}/broken.pth")
    assert not any(p for p in cache.iterdir())


def test_cancel_leaves_nothing(server, cache):
    with pytest.raises(DownloadCancelled):
        download_weights(_spec(), url=f"{server}/weights.pth", cancel=lambda: True)
    assert not any(cache.iterdir())


def test_unpublished_hash_is_recorded_on_first_use(server, cache):
    spec = _spec(sha=None)
    path = download_weights(spec, url=f"{server}/weights.pth")
    sidecar = path.with_name(path.name + ".sha256")
    assert hashlib.sha256(PAYLOAD).hexdigest() in sidecar.read_text()


def test_local_path_wins_and_missing_path_is_an_error(tmp_path, cache):
    local = tmp_path / "mine.pth"
    local.write_bytes(b"x")
    assert find_weights(_spec(), local) == local
    with pytest.raises(WeightsError, match="does not exist"):
        find_weights(_spec(), tmp_path / "absent.pth")


def test_missing_weights_message_says_where_and_how(cache):
    spec = get_spec("sam-med3d-turbo")
    assert find_weights(spec) is None
    message = missing_weights_message(spec)
    assert str(cached_path(spec)) in message and "openmedlab download sam-med3d-turbo" in message
    assert "--checkpoint" in missing_weights_message(get_spec("sam-med2d"))


def test_registry_names():
    assert {"sam-med3d-turbo", "sam-med2d", "medsam", "sam-vit-b", "seeded-region"} <= set(MODELS)
    assert get_spec("sam-med3d-turbo").sha256 == "899a46d04d3b70f723282ceb489149373558bf0aaba389a346f5ab57da5cdd3c"
    with pytest.raises(UnknownModelError, match="known: "):
        get_spec("nope")
