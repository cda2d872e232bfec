"""`openmedlab serve` and RemoteEngine on the loopback address: equality with the local engine,
leases, capacity, reaping, restarts and bad requests. Every loop here is bounded."""

import json
import random
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from napari_openmedlab.engines import PromptError, Prompts, create_engine
from napari_openmedlab.engines.remote import RemoteEngine, RemoteError
from napari_openmedlab.engines.wire import encode_volume
from napari_openmedlab.io import read_volume

from .conftest import KEY, LiveServer, free_port, make_app


def call(url, method="GET", body=None, key=KEY, headers=None, timeout=30):
    hdrs = dict(headers or {})
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=body, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def ct(shared_data):
    return read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")


def clicks(ct, n, seed):
    rng = np.random.default_rng(seed)
    shape = np.array(ct.shape)
    pts = [rng.integers(shape // 4, 3 * shape // 4) for _ in range(n)]
    return [(p, i == 0 or rng.random() > 0.3) for i, p in enumerate(pts)]


def run_clicks(engine, ct, seq):
    engine.set_volume(ct)
    out, prompts = [], Prompts()
    for point, positive in seq:
        prompts = prompts.add_point(point, positive)
        out.append(engine.predict(prompts).to_mask())
    return out


def test_remote_engine_equals_local_seeded(live_server, ct):
    seq = clicks(ct, 5, 0)
    local = run_clicks(create_engine("seeded-region"), ct, seq)
    with live_server() as server:
        remote_engine = RemoteEngine(server.url, KEY, "seeded-region")
        remote = run_clicks(remote_engine, ct, seq)
        remote_engine.close()
    for a, b in zip(local, remote):
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_remote_engine_equals_local_sam_med3d(live_server, ct, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from make_random_checkpoint import make

    ckpt = tmp_path / "sam_med3d_turbo.pth"
    make("sam-med3d-turbo", str(ckpt))
    seq = clicks(ct, 2, 1)
    local = run_clicks(create_engine("sam-med3d-turbo", ckpt, "cpu"), ct, seq)
    with live_server(models=("sam-med3d-turbo",), checkpoints={"sam-med3d-turbo": ckpt}) as server:
        engine = RemoteEngine(server.url, KEY, "sam-med3d-turbo")
        remote = run_clicks(engine, ct, seq)
        engine.close()
    for a, b in zip(local, remote):
        assert np.array_equal(a, b)


def test_auth_health_and_capabilities(live_server):
    with live_server() as server:
        assert call(server.url + "/healthz", key=None) == (200, {"status": "ok", "version": call(server.url + "/healthz", key=None)[1]["version"]})
        assert call(server.url + "/capabilities", key=None)[0] == 401
        code, body = call(server.url + "/capabilities", key="wrong-key-0123456789")
        assert code == 401 and "API key" in body["detail"]
        code, body = call(server.url + "/capabilities")
        assert code == 200 and body["models"] == ["seeded-region"] and "cpu" in body["devices"]
        with pytest.raises(RemoteError, match="refused the API key"):
            RemoteEngine(server.url, "wrong-key-0123456789", "seeded-region")
        with pytest.raises(RemoteError, match="does not offer"):
            RemoteEngine(server.url, KEY, "sam-med2d")


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(RemoteError, match="cannot reach"):
        RemoteEngine(f"http://127.0.0.1:{free_port()}", KEY, "seeded-region", timeout_s=2)


def test_capacity_leases_and_release(live_server, ct):
    with live_server(max_sessions=2) as server:
        a = RemoteEngine(server.url, KEY, "seeded-region", heartbeat=False)
        b = RemoteEngine(server.url, KEY, "seeded-region", heartbeat=False)
        a.set_volume(ct)
        b.set_volume(ct)
        c = RemoteEngine(server.url, KEY, "seeded-region", heartbeat=False)
        with pytest.raises(RemoteError, match="capacity"):
            c.set_volume(ct)
        # another session's lease does not work
        code, body = call(f"{server.url}/sessions/{a._session}/reset", "POST", {}, headers={"X-Lease": b._lease})
        assert code == 403 and "lease" in body["detail"]
        a.close()
        c.set_volume(ct)  # capacity came back
        assert call(server.url + "/capabilities")[1]["sessions"] == 2
        b.close(), c.close()


def test_idle_client_is_reaped_and_capacity_returns(live_server, ct):
    with live_server(max_sessions=1, timeout_s=0.5, reap_interval_s=0.1) as server:
        gone = RemoteEngine(server.url, KEY, "seeded-region", heartbeat=False)
        gone.set_volume(ct)  # then the client "dies": no heartbeat, no release
        deadline = time.monotonic() + 10
        while call(server.url + "/capabilities")[1]["sessions"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert call(server.url + "/capabilities")[1]["sessions"] == 0
        other = RemoteEngine(server.url, KEY, "seeded-region", heartbeat=False)
        other.set_volume(ct)
        with pytest.raises(RemoteError, match="lost this session"):
            gone.predict(Prompts([[15, 60, 40]], [1]))
        other.close()


def test_server_restart_gives_a_clear_error_then_claims_again(ct):
    port = free_port()
    engine = None
    with LiveServer(make_app(), port) as server:
        engine = RemoteEngine(server.url, KEY, "seeded-region", heartbeat=False)
        engine.set_volume(ct)
        first = engine.predict(Prompts([[15, 60, 40]], [1])).to_mask()
    with pytest.raises(RemoteError, match="cannot reach"):
        engine.predict(Prompts([[15, 60, 40]], [1]))
    with LiveServer(make_app(), port):
        with pytest.raises(RemoteError, match="lost this session"):
            engine.predict(Prompts([[15, 60, 40]], [1]))
        engine.set_volume(ct)  # claims a new session
        assert np.array_equal(engine.predict(Prompts([[15, 60, 40]], [1])).to_mask(), first)
        engine.close()


def test_bad_requests_get_clear_4xx(live_server, ct):
    with live_server(max_upload_bytes=200_000, max_voxels=2_000_000) as server:
        u = server.url
        code, claim = call(u + "/sessions", "POST", {"model": "seeded-region"})
        assert code == 201
        sid, lease = claim["session"], claim["lease"]
        h = {"X-Lease": lease}
        assert call(u + "/sessions", "POST", {"model": "nope"})[0] == 400
        assert call(u + "/sessions", "POST", b"{not json", headers={"Content-Type": "application/json"})[0] == 400
        assert call(f"{u}/sessions/{sid}/predict", "POST", {"points": [[1, 1, 1]], "labels": [1]}, headers=h)[0] == 409
        header, body = encode_volume(ct.array)
        header["geometry"] = ct.geometry.to_dict()
        vh = {**h, "X-Volume": json.dumps(header), "Content-Type": "application/octet-stream"}
        code, msg = call(f"{u}/sessions/{sid}/volume", "PUT", body[:1000], headers=vh)
        assert code == 400 and ("truncated" in msg["detail"] or "promises" in msg["detail"])
        code, msg = call(f"{u}/sessions/{sid}/volume", "PUT", b"x" * 300_000, headers=vh)
        assert code == 413
        big = {**vh, "X-Volume": json.dumps({"shape": [500, 500, 500], "dtype": "int16"})}
        assert call(f"{u}/sessions/{sid}/volume", "PUT", b"x", headers=big)[0] == 400
        small = ct.array[:20, :50, :50]
        header, body = encode_volume(small)
        vh["X-Volume"] = json.dumps(header)
        assert call(f"{u}/sessions/{sid}/volume", "PUT", body, headers=vh)[0] == 200
        code, msg = call(f"{u}/sessions/{sid}/predict", "POST", {"points": [[1000, 1, 1]], "labels": [1]}, headers=h)
        assert code == 400 and "outside" in msg["detail"]
        # fuzz the JSON bodies: never a 500
        rng = random.Random(0)
        atoms = [None, True, 1, -1, 1e308, "x", [], {}, [1, 2, 3], [[1, 2, 3]], {"a": 1}, float("nan")]
        for _ in range(300):
            body = {k: rng.choice(atoms) for k in rng.sample(["points", "labels", "boxes", "mask", "zz"], rng.randint(0, 4))}
            raw = json.dumps(body).encode()
            code, msg = call(f"{u}/sessions/{sid}/predict", "POST", raw, headers={**h, "Content-Type": "application/json"})
            assert code in (200, 400, 422), (body, code, msg)
            assert "Traceback" not in json.dumps(msg)
        assert call(f"{u}/sessions/{sid}", "DELETE", headers={"X-Lease": "bad"})[0] == 403
        assert call(f"{u}/sessions/{sid}", "DELETE", headers=h)[0] == 200
        assert call(f"{u}/sessions/{sid}/reset", "POST", {}, headers=h)[0] == 404


def test_concurrent_clients_match_the_local_engine(live_server, ct):
    n_clients, n_clicks = 4, 5
    seqs = [clicks(ct, n_clicks, 10 + i) for i in range(n_clients)]
    local = [run_clicks(create_engine("seeded-region"), ct, s) for s in seqs]
    results, errors = [None] * n_clients, []
    with live_server(max_sessions=n_clients) as server:
        def client(i):
            try:
                engine = RemoteEngine(server.url, KEY, "seeded-region")
                results[i] = run_clicks(engine, ct, seqs[i])
                engine.close()
            except Exception as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors
    for i in range(n_clients):
        for a, b in zip(local[i], results[i]):
            assert np.array_equal(a, b)


def test_negative_only_prompt_is_refused_remotely_like_locally(live_server, ct):
    with live_server() as server:
        engine = RemoteEngine(server.url, KEY, "seeded-region")
        engine.set_volume(ct)
        local = create_engine("seeded-region")
        local.set_volume(ct)
        p = Prompts([[15, 60, 40]], [0])
        try:
            expected = local.predict(p).to_mask()
        except PromptError:
            with pytest.raises(PromptError):
                engine.predict(p)
        else:
            assert np.array_equal(engine.predict(p).to_mask(), expected)
        engine.close()
