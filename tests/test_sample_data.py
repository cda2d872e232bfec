import numpy as np

from napari_openmedlab._reader import get_reader
from napari_openmedlab._sample_data import SAMPLE_CT, sample_ct_with_organs
from napari_openmedlab.layers import geometry_of_layer


def test_sample_ct_opens_with_geometry_and_named_organs():
    (ct, ct_kw, ct_type), (seg, seg_kw, seg_type) = sample_ct_with_organs()
    assert ct_type == "image" and seg_type == "labels"
    assert ct.shape == seg.shape == (30, 101, 122)
    geometry = geometry_of_layer(ct_kw["metadata"])
    assert geometry.spacing == (3.0, 3.0, 3.0)
    assert geometry.direction == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(ct_kw["affine"], seg_kw["affine"])
    names = dict(zip(seg_kw["features"]["index"], seg_kw["features"]["name"]))
    assert names[5] == "liver" and names[1] == "spleen" and names[0] == "background"
    assert set(np.unique(seg)) - {0} <= set(names)


def test_reader_classifies_image_and_labels():
    layers = get_reader(str(SAMPLE_CT))(str(SAMPLE_CT))
    assert layers[0][2] == "image"
    seg = str(SAMPLE_CT.with_name("seg.nii.gz"))
    assert get_reader(seg)(seg)[0][2] == "labels"


def test_layer_geometry_rebuilt_from_transform_alone():
    ct, kw, _ = sample_ct_with_organs()[0]
    from_meta = geometry_of_layer(kw["metadata"])
    rebuilt = geometry_of_layer({}, kw["scale"], kw["affine"])
    assert rebuilt.same_grid(from_meta)
