"""Checkpoint reading never runs pickled code; the safetensors cache converts once and is reused."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import zipfile

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from napari_openmedlab.models.errors import (  # noqa: E402
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
)
from napari_openmedlab.models.sam_med2d import checkpoint as ck  # noqa: E402


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.lin = torch.nn.Linear(4, 2)
        self.register_buffer("scale", torch.arange(3, dtype=torch.float64))


def _trained_tiny():
    torch.manual_seed(0)
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = net.lin(net.conv(torch.randn(2, 3, 5, 5)).mean(dim=(2, 3))).sum()
    loss.backward()
    opt.step()
    return net, opt


def _assert_same(sd_a, sd_b):
    assert set(sd_a) == set(sd_b)
    for k in sd_a:
        assert sd_a[k].dtype == sd_b[k].dtype, k
        assert torch.equal(sd_a[k], sd_b[k]), k


class _ExecPayload:
    """Unpickling this runs ``exec`` (it writes the marker file): a real attack, if loaded."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


class _SystemPayload:
    """Unpickling this runs ``os.system`` (a shell command that writes the marker file)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        code = f"open({self.marker!r}, 'w').write('pwned')"
        return (os.system, (f'"{sys.executable}" -c "{code}"',))


PAYLOADS = [_ExecPayload, _SystemPayload]


# ------------------------------------------------------------------ official formats


@pytest.mark.parametrize("protocol", [2, 4])
def test_official_sam_med2d_format_with_pickled_adam_loads(tmp_path, protocol):
    net, opt = _trained_tiny()
    path = tmp_path / "sam-med2d_b.pth"
    torch.save({"model": net.state_dict(), "optimizer": opt}, path, pickle_protocol=protocol)

    # the file really is the awkward kind: weights_only loading rejects the optimizer object
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    sd = ck.read_state_dict(path)
    _assert_same(sd, net.state_dict())
    assert "torch.optim.adam.Adam" in ck.read_checkpoint_globals(path)


def test_bare_state_dict_and_dataparallel_prefix(tmp_path):
    net, _ = _trained_tiny()
    bare = tmp_path / "sam_vit_b.pth"
    torch.save(net.state_dict(), bare)
    torch.load(bare, weights_only=True)  # loadable both ways
    _assert_same(ck.read_state_dict(bare), net.state_dict())

    wrapped = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, wrapped)
    _assert_same(ck.read_state_dict(wrapped), net.state_dict())


def test_shared_and_strided_storages(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {"a": base, "t": base.t(), "row": base[1], "col": base[:, 2], "empty": torch.zeros(0, 3)}
    path = tmp_path / "views.pth"
    torch.save(sd, path)
    got = ck.read_state_dict(path)
    for k, v in sd.items():
        assert torch.equal(got[k], v), k
    got["a"][0, 0] = 100.0  # tensors are independent copies
    assert got["t"][0, 0] == 0.0


def test_legacy_format(tmp_path):
    net, opt = _trained_tiny()
    bare = tmp_path / "legacy.pth"
    torch.save(net.state_dict(), bare, _use_new_zipfile_serialization=False)
    _assert_same(ck.read_state_dict(bare), net.state_dict())
    with_opt = tmp_path / "legacy_opt.pth"
    torch.save({"model": net.state_dict(), "optimizer": opt}, with_opt, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError):
        ck.read_state_dict(with_opt)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        ck.read_state_dict(junk)
    net, _ = _trained_tiny()
    good = tmp_path / "good.pth"
    torch.save(net.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        ck.read_state_dict(truncated)


def test_storage_out_of_bounds_is_refused(tmp_path):
    """A record claiming more elements than its storage holds must not read beyond it."""
    path = tmp_path / "v.pth"
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, path)
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data/0"):
                data = data[:8]  # keep 2 of the 4 floats
            dst.writestr(item, data)
    with pytest.raises(CheckpointError):
        ck.read_state_dict(bad)


# ------------------------------------------------------------------ malicious pickles


@pytest.mark.parametrize("payload", PAYLOADS)
def test_control_payload_really_runs_under_plain_pickle(tmp_path, payload):
    """The payloads are live: plain ``torch.load(weights_only=False)`` writes the marker."""
    marker = tmp_path / "control_marker"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "optimizer": payload(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("where", ["optimizer", "in_model", "top"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, where, protocol):
    net, _ = _trained_tiny()
    marker = tmp_path / "marker"
    sd = dict(net.state_dict())
    if where == "optimizer":
        obj = {"model": sd, "optimizer": payload(marker)}
    elif where == "in_model":
        sd["evil"] = payload(marker)
        obj = {"model": sd}
    else:
        obj = payload(marker)
    path = tmp_path / "evil.pth"
    torch.save(obj, path, pickle_protocol=protocol)

    with pytest.raises(UnsafeCheckpointError) as info:
        ck.read_state_dict(path)
    assert "system" in str(info.value) or "exec" in str(info.value)
    with pytest.raises(UnsafeCheckpointError):
        ck.convert_to_safetensors(path, tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "cache" / "evil.pth.safetensors").exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_neutralised_payload_never_runs(tmp_path, payload):
    """With unknown globals allowed they become inert placeholders: never called, never weights."""
    net, _ = _trained_tiny()
    marker = tmp_path / "marker"
    path = tmp_path / "evil_opt.pth"
    torch.save({"model": net.state_dict(), "optimizer": payload(marker)}, path)
    sd = ck.read_state_dict(path, allow_unknown_globals=True)
    _assert_same(sd, net.state_dict())
    assert not marker.exists()

    in_model = tmp_path / "evil_model.pth"
    torch.save({"model": {**net.state_dict(), "evil": payload(marker)}}, in_model)
    with pytest.raises(UnsafeCheckpointError):
        ck.read_state_dict(in_model, allow_unknown_globals=True)
    assert not marker.exists()


def test_legacy_format_payload_never_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil_legacy.pth"
    torch.save({"model": {}, "optimizer": _ExecPayload(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError):
        ck.read_state_dict(path)
    assert not marker.exists()


# ------------------------------------------------------------------ conversion cache


def test_conversion_happens_once_and_is_reused(tmp_path, monkeypatch):
    net, opt = _trained_tiny()
    src = tmp_path / "weights" / "sam-med2d_b.pth"
    src.parent.mkdir()
    torch.save({"model": net.state_dict(), "optimizer": opt}, src)
    cache = tmp_path / "cache"

    reads = []
    real_read = ck._read
    monkeypatch.setattr(ck, "_read", lambda *a, **k: reads.append(a) or real_read(*a, **k))

    sd1 = ck.load_state_dict(src, cache)
    converted, sidecar = ck.converted_paths(src, cache)
    assert converted.is_file() and sidecar.is_file()
    assert len(reads) == 1
    meta = json.loads(sidecar.read_text())
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["converted_sha256"] == hashlib.sha256(converted.read_bytes()).hexdigest()
    assert meta["state_dict_key"] == "model"
    assert "torch.optim.adam.Adam" in meta["dropped_globals"]
    _assert_same(sd1, net.state_dict())

    mtime = converted.stat().st_mtime_ns
    sd2 = ck.load_state_dict(src, cache)
    sd3 = ck.load_state_dict(src, cache, verify=True, expected_sha256=meta["source_sha256"])
    assert len(reads) == 1, "second and third loads must use the converted copy"
    assert converted.stat().st_mtime_ns == mtime
    _assert_same(sd2, net.state_dict())
    _assert_same(sd3, net.state_dict())

    # touching the source without changing it: hash still matches, no reconversion
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))
    ck.load_state_dict(src, cache)
    assert len(reads) == 1

    # a different source under the same name: converted again
    torch.manual_seed(1)
    other = TinyNet()
    torch.save({"model": other.state_dict(), "optimizer": opt}, src)
    _assert_same(ck.load_state_dict(src, cache), other.state_dict())
    assert len(reads) == 2

    # a tampered copy is caught by verify and replaced
    converted.write_bytes(converted.read_bytes()[:-1] + b" ")
    _assert_same(ck.load_state_dict(src, cache, verify=True), other.state_dict())
    assert len(reads) == 3


def test_expected_sha256_mismatch_writes_nothing(tmp_path):
    net, _ = _trained_tiny()
    src = tmp_path / "m.pth"
    torch.save(net.state_dict(), src)
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError):
        ck.load_state_dict(src, cache, expected_sha256="0" * 64)
    assert not any(cache.glob("*.safetensors")) if cache.exists() else True
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    _assert_same(ck.load_state_dict(src, cache, expected_sha256=good.upper()), net.state_dict())


def test_mismatch_names_keys(tmp_path):
    net, opt = _trained_tiny()
    sd = dict(net.state_dict())
    del sd["conv.bias"]
    sd["lin.weight"] = torch.zeros(3, 4)
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save({"model": sd, "optimizer": opt}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        ck.load_weights(TinyNet(), path, tmp_path / "cache")
    err = info.value
    assert err.missing == ["conv.bias"]
    assert err.unexpected == ["extra.weight"]
    assert err.mismatched == [("lin.weight", (3, 4), (2, 4))]
    for name in ("conv.bias", "extra.weight", "lin.weight"):
        assert name in str(err)


def test_load_weights_into_model(tmp_path):
    net, opt = _trained_tiny()
    path = tmp_path / "ok.pth"
    torch.save({"model": net.state_dict(), "optimizer": opt}, path)
    fresh = ck.load_weights(TinyNet(), path, tmp_path / "cache")
    _assert_same(fresh.state_dict(), net.state_dict())
