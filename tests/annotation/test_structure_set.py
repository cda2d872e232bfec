"""The headless structure set: overlaps kept, locks, label-map flattening, bit-exact files."""

import numpy as np
import pytest

from napari_openmedlab.annotation import LockedStructureError, SparseMask, StructureSet, StructureSetError
from napari_openmedlab.io import Geometry

GEOM = Geometry((0.8, 0.9, 2.5), (-10.0, 5.0, 30.0), (1, 0, 0, 0, -1, 0, 0, 0, 1))
SHAPE = (12, 20, 24)


def ball(center, r, shape=SHAPE):
    zz, yy, xx = np.indices(shape)
    return (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= r * r


def test_overlapping_structures_keep_their_own_voxels():
    ss = StructureSet(GEOM, SHAPE)
    parotid, gtv = ball((6, 10, 12), 5), ball((6, 10, 14), 2)
    ss.add("Parotid_L", parotid, "#ff0000")
    ss.add("GTVp", gtv)
    assert np.array_equal(ss.mask("Parotid_L"), parotid)
    assert np.array_equal(ss.mask("GTVp"), gtv)
    assert (ss.mask("Parotid_L") & ss.mask("GTVp")).sum() == (parotid & gtv).sum() > 0
    assert ss.names() == ["Parotid_L", "GTVp"]


def test_sparse_mask_round_trip_and_crop():
    m = ball((3, 4, 20), 3)
    s = SparseMask.from_dense(m)
    assert np.array_equal(s.dense(), m)
    assert s.count == m.sum()
    box = (0, 0, 10, 12, 20, 24)
    assert np.array_equal(s.crop(box), m[:, :, 10:])
    assert SparseMask.from_dense(np.zeros(SHAPE, bool)).empty


def test_locks_refuse_changes_and_names_are_unique():
    ss = StructureSet(GEOM, SHAPE)
    ss.add("Brainstem", ball((6, 10, 12), 3))
    ss.lock("Brainstem")
    before = ss.mask("Brainstem").copy()
    with pytest.raises(LockedStructureError):
        ss.set_mask("Brainstem", np.zeros(SHAPE, bool))
    with pytest.raises(LockedStructureError):
        ss.remove("Brainstem")
    assert np.array_equal(ss.mask("Brainstem"), before)
    with pytest.raises(StructureSetError, match="exists already"):
        ss.add("Brainstem")
    ss.unlock("Brainstem")
    ss.rename("Brainstem", "BrainStem")
    assert ss.names() == ["BrainStem"] and not ss.is_locked("BrainStem")


def test_bad_masks_change_nothing():
    ss = StructureSet(GEOM, SHAPE)
    ss.add("A", ball((6, 10, 12), 3))
    with pytest.raises(StructureSetError, match="grid"):
        ss.set_mask("A", np.zeros((5, 5, 5), bool))
    with pytest.raises(StructureSetError, match="0 and 1"):
        ss.add("B", np.full(SHAPE, 3, np.uint8))
    assert ss.names() == ["A"] and ss.mask("A").sum() == ball((6, 10, 12), 3).sum()


def test_label_map_flattening_smaller_wins_and_reports_losses():
    ss = StructureSet(GEOM, SHAPE)
    big, small = ball((6, 10, 12), 5), ball((6, 10, 14), 2)
    ss.add("Parotid_L", big)
    ss.add("GTVp", small)
    flat = ss.to_label_map()
    assert flat.ids == {"Parotid_L": 1, "GTVp": 2}
    assert np.array_equal(flat.labels == 2, small)
    assert np.array_equal(flat.labels == 1, big & ~small)
    assert flat.lost_counts == {"Parotid_L": int((big & small).sum())}
    lost = flat.lost["Parotid_L"]
    assert big[tuple(lost.T)].all() and small[tuple(lost.T)].all()


def test_from_label_map_uses_the_class_table():
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:4, 2:5, 3:6] = 3
    labels[6:8, 10:12, 10:20] = 7
    ss = StructureSet.from_label_map(labels, GEOM, {3: "liver", 7: "spleen"})
    assert ss.names() == ["liver", "spleen"]
    assert ss.label_ids() == {"liver": 3, "spleen": 7}
    assert np.array_equal(ss.to_label_map().labels, labels)
    with pytest.raises(StructureSetError):
        StructureSet.from_label_map(labels.astype(np.int16) - 1, GEOM)


def test_save_load_is_bit_exact(tmp_path):
    ss = StructureSet(GEOM, SHAPE)
    ss.add("Parotid_L", ball((6, 10, 12), 5), "#aa0011", codes={"tg263": "Parotid_L"}, prompts=[{"point": [1, 2, 3]}])
    ss.add("GTVp", ball((6, 10, 14), 2), label_id=9)
    ss.add("Empty", None)
    ss.lock("GTVp")
    ss.set_visible("Empty", False)
    path = ss.save(tmp_path / "case.omlss")
    back = StructureSet.load(path)
    assert back.names() == ss.names()
    assert back.manifest() == ss.manifest()
    for name in ss.names():
        assert np.array_equal(back.mask(name), ss.mask(name))
        assert back.sparse(name) == ss.sparse(name)
    assert back.to_bytes() == ss.to_bytes()
    assert not list(tmp_path.glob(".*"))


def test_corrupt_file_is_refused_clearly(tmp_path):
    bad = tmp_path / "bad.omlss"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(StructureSetError, match="bad.omlss"):
        StructureSet.load(bad)
    with pytest.raises(StructureSetError, match="cannot be read"):
        StructureSet.load(tmp_path / "missing.omlss")


def test_47_structures_on_a_ct_grid_stay_small():
    shape = (300, 512, 512)
    ss = StructureSet(GEOM, shape)
    rng = np.random.default_rng(0)
    for i in range(47):
        m = SparseMask(shape, (100 + i, 200, 200, 130 + i, 260, 250), rng.random((30, 60, 50)) > 0.3)
        ss.add(f"S{i}", m)
    assert ss.nbytes() < 200e6


def test_flatten_region_matches_the_label_map_and_keeps_the_larger_for_outlines():
    from napari_openmedlab.annotation.flatten import flatten_region

    ss = StructureSet(GEOM, SHAPE)
    ss.add("Parotid_L", ball((6, 10, 12), 5))
    ss.add("GTVp", ball((6, 10, 14), 2))
    ss.add("Hidden", ball((2, 2, 2), 2), visible=False)
    full = ss.to_label_map().labels
    whole = (0, 0, 0, *SHAPE)
    np.testing.assert_array_equal(flatten_region(ss, whole, visible_only=False), full)
    box = (4, 8, 10, 9, 14, 20)
    region = flatten_region(ss, box)
    np.testing.assert_array_equal(region, np.where(full == 3, 0, full)[4:9, 8:14, 10:20])
    larger = flatten_region(ss, whole, smaller_on_top=False)
    assert (larger == 1).sum() == ss.structure("Parotid_L").voxel_count and (larger == 3).sum() == 0
