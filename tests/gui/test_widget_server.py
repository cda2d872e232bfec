"""Issue #18 in the widget: the model panel's Server choice runs the engine on `openmedlab serve`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

_spec = importlib.util.spec_from_file_location("server_live", Path(__file__).parents[1] / "server" / "conftest.py")
live = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(live)


def _key_file(tmp_path, key=live.KEY):
    path = tmp_path / "key.txt"
    path.write_text(key)
    return path


def _serve(**kwargs):
    return live.LiveServer(live.make_app(**kwargs), live.free_port())


def test_server_choice_runs_the_engine_remotely(make_widget, tmp_path):
    from napari_openmedlab.engines.remote import RemoteEngine

    viewer, w = make_widget()  # a local stand-in engine first
    with _serve(max_sessions=1) as server:
        w.models.server.set_server(server.url, _key_file(tmp_path))
        assert w.wait_for_prediction(30)
        assert isinstance(w.runner.engine, RemoteEngine), w.status_text
        assert "Runs on the server" in w.models.weights_label.text()
        w.add_point_voxel((12, 16, 16))
        assert w.wait_for_prediction(30)
        remote = w.session.model.preview()  # the server's real seeded-region engine answered
        assert remote.patch.sum() > 100 and remote.to_mask()[12, 16, 16], w.status_text
        w.commit("ball")
        assert w.session.structures.mask("ball").sum() == remote.patch.sum()
        w.models.server.set_server(None)  # back to the local engine: the server session is given back
        assert w.wait_for_prediction(30)
        assert not isinstance(w.runner.engine, RemoteEngine)
        other = RemoteEngine(server.url, live.KEY, "seeded-region", heartbeat=False)
        other.set_volume(w.session.volume)  # the one session is free again
        # now the server is full: the widget says so in one line
        w.models.server.set_server(server.url, _key_file(tmp_path))
        assert w.wait_for_prediction(30)
        assert w.runner.engine is None and "at capacity" in w.status_text, w.status_text
        other.close()
        bad = tmp_path / "bad"
        bad.mkdir()
        w.models.server.set_server(server.url, _key_file(bad, "wrong-key-0123456789abcdef"))
        assert w.wait_for_prediction(30)
        assert "refused the API key" in w.status_text, w.status_text
    w.models.server.set_server(server.url, _key_file(tmp_path))  # the server is gone now
    assert w.wait_for_prediction(30)
    assert "cannot reach the server" in w.status_text and w.runner.engine is None, w.status_text
