"""Cases of groups 1 (full disks, unwritable outputs) and 2 (damaged or unrestored recovery data).

See ``faults.py`` for how a case runs and is classified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from faults import (
    CASES,
    SHAPE,
    Outcome,
    case,
    ct_array,
    eval_cli,
    fill,
    leftovers,
    protect,
    remount_read_only,
    run_api,
    run_cli,
    segment_cli,
    small_filesystem,
    sphere_labels,
    volume,
    write_ct,
    write_image,
)


# --- 1. full disks and unwritable outputs --------------------------------------------------------
def _full_disk_write(tmp: Path, name: str, write, leave: int) -> Outcome:
    """Write ``name`` once with room, fill the disk (``leave`` bytes free), write again."""
    with small_filesystem(tmp / "small", 1024) as fs:
        target = fs / name
        write(target, 0)
        changed = protect(target)
        fill(fs, leave)
        try:
            write(target, 1)
            out = Outcome(0)
        except OSError as err:  # FileWriteError is an OSError
            out = Outcome(1, str(err))
        except Exception as err:
            out = Outcome(1, "", f"{type(err).__name__}: {err}")
        out.lost = changed() + leftovers(fs, {name, "filler.bin"})
        return out


def _fsync_fails_write(tmp: Path, name: str, write) -> Outcome:
    """Fault injection, for machines where no small file system can be mounted: the disk fills
    up under delayed allocation, so fsync (not write) reports ENOSPC, as ext4 or NFS do."""
    import errno

    from napari_openmedlab.io import atomic

    target = tmp / "out" / name
    target.parent.mkdir()
    write(target, 0)
    changed = protect(target)
    real = atomic._fsync_path

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    atomic._fsync_path = full
    try:
        write(target, 1)
        out = Outcome(0)
    except OSError as err:
        out = Outcome(1, str(err))
    except Exception as err:
        out = Outcome(1, "", f"{type(err).__name__}: {err}")
    finally:
        atomic._fsync_path = real
    out.lost = changed() + leftovers(target.parent, {name})
    return out


def _writer_cases():
    from napari_openmedlab.io import write_volume

    def volume_writer(suffix):
        def write(target, seed):
            write_volume(volume(ct_array(seed)), target)

        return f"mask{suffix}", write

    def json_writer(target, seed):
        from napari_openmedlab.io.atomic import atomic_write_json

        atomic_write_json(target, {"seed": seed, "data": list(range(40000 * seed + 10))})

    def csv_writer(target, seed):
        from napari_openmedlab.evaluation.runner import ClickResult, write_csv

        row = ClickResult("case", 1, "x", 1, 1, 2, 3, True, 0.5, 0.5, 0.1, 0.1, "p", "m", 10)
        write_csv([row] * (1 + 8000 * seed), target)

    def plot_writer(target, seed):
        from napari_openmedlab.evaluation.runner import ClickResult, plot_dice

        rows = [ClickResult("c", k, f"class {k}", i, 1, 2, 3, True, 0.1 * i, 0.5, 0.1, 0.1, "p", "m", 10)
                for k in range(1 + 20 * seed) for i in range(1, 6)]
        plot_dice(rows, target)

    def structure_set_writer(target, seed):
        from napari_openmedlab.annotation import StructureSet
        from napari_openmedlab.io import Geometry

        rng = np.random.default_rng(seed)
        ss = StructureSet(Geometry((0.8, 0.8, 2.0)), (40, 80, 80))
        for i in range(1 + 6 * seed):
            ss.add(f"s{i}", rng.random((40, 80, 80)) > 0.5)
        ss.save(target)

    def classes_writer(target, seed):
        from napari_openmedlab.annotation.label_classes import LabelClass, write_classes

        write_classes([LabelClass(i, f"structure {i}", "#112233") for i in range(1, 2 + 3000 * seed)], target)

    writers = [volume_writer(s) for s in (".nii.gz", ".nii", ".nrrd", ".mha")]
    writers += [("log.json", json_writer), ("results.csv", csv_writer), ("dice.png", plot_writer),
                ("set.omlss", structure_set_writer), ("classes.json", classes_writer)]
    for name, write in writers:
        def injected(tmp, name=name, write=write):
            return _fsync_fails_write(tmp, name, write)

        injected.__name__ = f"fsync_fails_{name.replace('.', '_')}"
        case("1 full disk", f"{name} replaced while fsync reports ENOSPC (fault injection)")(injected)
        for leave in (0, 16384):
            def run(tmp, name=name, write=write, leave=leave):
                return _full_disk_write(tmp, name, write, leave)

            run.__name__ = f"full_disk_{name.replace('.', '_')}_{leave // 1024}k_free"
            case("1 full disk", f"{name} replaced on a full disk ({leave // 1024} KiB free)",
                 needs_mount=True)(run)


_writer_cases()


@case("1 full disk", "autosave on a full disk: the edit kept, the previous generation still restores, warning set",
      needs_mount=True)
def full_disk_autosave(tmp):
    from napari_openmedlab.annotation import AnnotationSession, Edit, StructureSetAutosave

    with small_filesystem(tmp / "small", 1024) as fs:
        store = StructureSetAutosave(fs / "recovery")
        session = AnnotationSession(volume(), _structures(1), autosave=store)
        session.handle(Edit.from_mask("s1", "paint", np.ones((1, 2, 2), bool), (0, 0, 0)))
        first = [p.name for _, p in store.generations()]
        fill(fs, 2048)
        noise = np.random.default_rng(0).random(SHAPE) > 0.5  # incompressible: the file cannot fit
        session.handle(Edit.from_mask("s1", "paint", noise))
        warning = session.autosave_warning
        out = Outcome(1 if warning else 0, warning or "")
        restored, _ = StructureSetAutosave(store.folder).load_latest()
        if restored.mask("s1").sum() != _structures(1).mask("s1").sum() + 4:
            out.lost.append("autosave generation")
        if not session.structures.mask("s1")[noise].all():
            out.lost.append("the edit in memory")
        out.lost += leftovers(store.folder, set(first))
        return out


@case("1 full disk", "segment --out over an existing mask on a full disk: exit 1", needs_mount=True)
def full_disk_segment_out(tmp):
    image = write_ct(tmp)
    with small_filesystem(tmp / "small", 1024) as fs:
        out_path = fs / "mask.nii"
        if segment_cli(tmp, image, out=out_path).rc != 0:
            return Outcome(0, wrong="the first segment failed")
        changed = protect(out_path)
        fill(fs, 4096)
        out = segment_cli(tmp, image, out=out_path)
        out.lost = changed() + leftovers(fs, {"mask.nii", "filler.bin"})
        return out


@case("1 full disk", "eval --out over an existing CSV on a full disk: exit 1, CSV kept", needs_mount=True)
def full_disk_eval_csv(tmp):
    image, labels = write_ct(tmp), write_image(tmp / "seg.nii.gz", sphere_labels())
    with small_filesystem(tmp / "small", 1024) as fs:
        csv = fs / "r.csv"
        csv.write_text("an earlier result\n" * 100)
        changed = protect(csv)
        fill(fs, 0)
        out = run_cli(["eval", image, labels, "--model", "seeded-region", "--clicks", "2", "--quiet", "--out", csv])
        out.lost = changed() + leftovers(fs, {"r.csv", "filler.bin"})
        return out


@case("1 full disk", "segment --out on a read-only file system: refused before the run", needs_mount=True)
def read_only_segment_out(tmp):
    image = write_ct(tmp)
    with small_filesystem(tmp / "small", 256) as fs:
        remount_read_only(fs)
        return segment_cli(tmp, image, out=fs / "mask.nii.gz")


@case("1 full disk", "eval --plot on a read-only file system: refused before the run", needs_mount=True)
def read_only_eval_plot(tmp):
    image, labels = write_ct(tmp), write_image(tmp / "seg.nii.gz", sphere_labels())
    with small_filesystem(tmp / "small", 256) as fs:
        remount_read_only(fs)
        out = eval_cli(tmp, image, labels, "--plot", fs / "dice.png")
        if (tmp / "r.csv").exists():
            out.wrong = "the run went ahead"
        return out


@case("1 full disk", "SimpleITK writes a short NIfTI without an error (fault injection)")
def short_write_injected(tmp):
    import SimpleITK as sitk

    from napari_openmedlab.io import FileWriteError, write_volume

    target = tmp / "mask.nii.gz"
    write_volume(volume(), target)
    changed = protect(target)
    real = sitk.WriteImage

    def short(image, path, *args):
        real(image, path, *args)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])

    sitk.WriteImage = short
    try:
        out = run_api(lambda: write_volume(volume(ct_array(1)), target), (FileWriteError,))
    finally:
        sitk.WriteImage = real
    out.lost = changed() + leftovers(tmp, {"mask.nii.gz"})
    return out


@case("1 full disk", "a killed writer's temporary is removed at the next start", expect="ok")
def stale_temporary_removed(tmp, monkeypatch=None):
    import os
    import subprocess
    import sys

    from napari_openmedlab.io.atomic import TEMP_MARKER

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    recovery = tmp / "recovery" / "img-1"
    recovery.mkdir(parents=True)
    stale = recovery / f".gen-000002{TEMP_MARKER}{dead}-abc"
    stale.mkdir()
    (stale / "labels.nii.gz").write_bytes(b"\0" * 1000)
    os.environ["OPENMEDLAB_RECOVERY_DIR"] = str(tmp / "recovery")
    try:
        out = run_cli(["info"])
    finally:
        del os.environ["OPENMEDLAB_RECOVERY_DIR"]
    if stale.exists():
        out.wrong = "the stale temporary folder is still there"
    return out


# --- 2. recovery data damaged or not restored ----------------------------------------------------
def _structures(n: int = 1):
    """A structure set of ``n`` spheres' worth of structures on the test grid."""
    from napari_openmedlab.annotation import StructureSet

    ss = StructureSet(volume().geometry, SHAPE)
    for i in range(1, n + 1):
        ss.add(f"s{i}", np.roll(sphere_labels().astype(bool), i, axis=2), label_id=i)
    return ss


def _two_generations(tmp: Path):
    from napari_openmedlab.annotation import StructureSetAutosave

    store = StructureSetAutosave(tmp / "rec")
    store.save(_structures(1))
    newest = store.save(_structures(2))
    return store, newest


def _restores_previous(damage):
    def run(tmp):
        from napari_openmedlab.annotation import StructureSetAutosave

        store, newest = _two_generations(tmp)
        damage(newest)
        try:
            restored, message = StructureSetAutosave(store.folder).load_latest()
        except Exception as err:
            return Outcome(1, "", f"{type(err).__name__}: {err}")
        out = Outcome(0, message)
        if len(restored) != 1 or "previous good one" not in message:
            out.wrong = "the previous good generation was not offered with a note"
        return out

    return run


def _rewrite_member(path: Path, name: str, data: bytes | None) -> None:
    """A generation whose zip is whole but whose member ``name`` is replaced (None: left out)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {m: z.read(m) for m in z.namelist()}
    if data is None:
        members.pop(name)
    else:
        members[name] = data
    with zipfile.ZipFile(path, "w") as z:
        for m, d in members.items():
            z.writestr(m, d)


def _manifest_list(path: Path) -> None:
    _rewrite_member(path, "manifest.npy", _npy(b"[1, 2]"))


case("2 recovery", "newest generation cut in half: the previous one is restored, with a note",
     "ok")(_restores_previous(lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])))
CASES[-1].id = "recovery_half_written_generation"
case("2 recovery", "newest generation's manifest is a JSON list: the previous one is restored", "ok")(
    _restores_previous(_manifest_list))
CASES[-1].id = "recovery_manifest_is_a_list"
case("2 recovery", "newest generation lacks a mask beside a good manifest: the previous one is restored", "ok")(
    _restores_previous(lambda p: _rewrite_member(p, "mask_1.npy", None)))
CASES[-1].id = "recovery_mask_missing"
case("2 recovery", "newest generation is an empty file (killed mid-write): the previous one is restored", "ok")(
    _restores_previous(lambda p: p.write_bytes(b"")))
CASES[-1].id = "recovery_empty_generation"


@case("2 recovery", "every generation damaged: one line naming each fault")
def recovery_all_damaged(tmp):
    from napari_openmedlab.annotation.autosave import RecoveryError

    store, newest = _two_generations(tmp)
    for _, path in store.generations():
        path.write_bytes(b"{")
    return run_api(store.load_latest, (RecoveryError,))


@case("2 recovery", "generation with label ids no label map holds (70000, -3): refused at restore")
def recovery_bad_ids(tmp):
    import json

    from napari_openmedlab.annotation import StructureSetAutosave
    from napari_openmedlab.annotation.autosave import RecoveryError

    store = StructureSetAutosave(tmp / "rec")
    bad = _structures(2)
    bad.structure("s2").label_id = 70000
    path = store.save(bad)  # a complete generation holding an impossible id
    manifest = bad.manifest()
    manifest["structures"][0]["label_id"] = -3
    older = path.with_name(path.name.replace("000001", "000000"))
    bad.save(older)
    _rewrite_member(older, "manifest.npy", _npy(json.dumps(manifest).encode()))
    return run_api(store.load_latest, (RecoveryError,))


def _npy(data: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(data, dtype=np.uint8))
    return buffer.getvalue()


@case("2 recovery", "a new session's autosaves never overwrite or prune an unrestored autosave", "ok")
def recovery_unrestored_kept(tmp):
    from napari_openmedlab.annotation import StructureSetAutosave

    old = StructureSetAutosave(tmp / "rec")
    kept = old.save(_structures(1))
    new = StructureSetAutosave(tmp / "rec")  # the image opened again; restore not chosen
    for _ in range(6):
        new.save(_structures(3))
    try:
        restored, _ = new.load_latest(others_only=True)
    except Exception as err:
        return Outcome(1, "", f"{type(err).__name__}: {err}")
    return Outcome(0, wrong="" if kept.is_file() and len(restored) == 1 else "the unrestored autosave is gone")




@case("1 full disk", "weights re-downloaded on a full disk: the cached checkpoint is kept", needs_mount=True)
def full_disk_weights_download(tmp):
    import os

    from napari_openmedlab.models.registry import ModelSpec
    from napari_openmedlab.models.weights import WeightsError, download_weights

    source = tmp / "served.pth"
    source.write_bytes(os.urandom(300_000))
    spec = ModelSpec("test-net", "3d", filename="test.pth")
    with small_filesystem(tmp / "small", 1024) as fs:
        os.environ["OPENMEDLAB_CACHE_DIR"] = str(fs)
        try:
            download_weights(spec, url=source.as_uri())
            changed = protect(fs / "test.pth")
            fill(fs, 16384)
            source.write_bytes(os.urandom(300_000))
            out = run_api(lambda: download_weights(spec, url=source.as_uri()), (WeightsError,))
        finally:
            del os.environ["OPENMEDLAB_CACHE_DIR"]
        out.lost = changed() + leftovers(fs, {"test.pth", "test.pth.sha256", "filler.bin"})
        return out


@case("1 full disk", "checkpoint conversion cache rebuilt on a full disk: the old copy is kept", needs_mount=True)
def full_disk_conversion_cache(tmp):
    import torch

    from napari_openmedlab.io import FileWriteError
    from napari_openmedlab.models.sam_med2d.converted_cache import convert_cached

    source = tmp / "model.pth"
    source.write_bytes(b"first")

    def read(path):
        seed = len(path.read_bytes())
        return {"w": torch.arange(60_000, dtype=torch.float32) * seed}, {"state_dict_key": None,
                                                                         "dropped_globals": []}

    with small_filesystem(tmp / "small", 1024) as fs:
        convert_cached(source, fs, read)
        changed = protect(fs / "model.pth.safetensors", fs / "model.pth.safetensors.json")
        fill(fs, 16384)
        source.write_bytes(b"second version")
        out = run_api(lambda: convert_cached(source, fs, read), (FileWriteError,))
        out.lost = changed() + leftovers(fs, {"model.pth.safetensors", "model.pth.safetensors.json", "filler.bin"})
        return out


KILLED_WRITER = """
import sys, numpy as np
sys.path.insert(0, {repo!r})
from napari_openmedlab.io import Geometry, Volume, write_volume
rng = np.random.default_rng(1)
array = rng.integers(0, 3000, (80, 256, 256)).astype(np.int16)
print("writing", flush=True)
while True:
    write_volume(Volume(array, Geometry()), {target!r})
"""


@case("1 full disk", "kill -9 during a write: the old file or the complete new one, never half", expect="ok")
def killed_during_write(tmp):
    import signal
    import subprocess
    import sys
    import time

    from napari_openmedlab.cleanup import remove_stale_temporaries
    from napari_openmedlab.io import read_volume, write_volume
    from napari_openmedlab.io.atomic import remove_stale_temporaries as remove_in

    target = tmp / "ct.nii.gz"
    write_volume(volume(), target)
    old = target.read_bytes()
    repo = str(Path(__file__).resolve().parents[2])
    out = Outcome(0)
    for delay in (0.3, 0.9, 1.7):
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(repo=repo, target=str(target))],
                                 stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        shape = read_volume(target).shape  # a complete file: the old one or a whole new one
        if target.read_bytes() != old and shape != (80, 256, 256):
            out.lost.append(f"ct.nii.gz after kill at {delay}s")
    remove_stale_temporaries()
    remove_in(tmp, name=target.name)
    out.lost += leftovers(tmp, {"ct.nii.gz", "cache", "recovery-root"})
    return out
