"""Synthetic phantoms: shapes, HU ranges, anatomy in the LPS frame, seeding, speed."""

import time

import numpy as np
import pytest

from deepsparse_core.data.phantoms import (BONE, LIVER, LUNG, PHANTOM_KINDS, label_phantom, make_phantom,
                                           phantom_volume, shepp_logan_phantom)
from deepsparse_core.errors import InputError

PROCEDURAL = ["head", "pelvis", "knee", "chest"]


@pytest.mark.parametrize("kind", PROCEDURAL)
def test_procedural_phantom_has_air_soft_tissue_and_bone(kind):
    hu = make_phantom(kind, (40, 48, 56), seed=3)
    assert hu.shape == (40, 48, 56) and hu.dtype == np.float32
    assert -1024 <= hu.min() and hu.max() <= 3071
    assert np.mean(hu < -900) > 0.05  # air around the body
    assert np.mean(np.abs(hu - 40) < 40) > 0.05  # soft tissue
    assert np.mean(hu > 300) > 0.002  # bone


@pytest.mark.parametrize("kind", PROCEDURAL)
def test_same_seed_same_phantom_other_seed_differs(kind):
    a = make_phantom(kind, (32, 32, 32), seed=7)
    np.testing.assert_array_equal(a, make_phantom(kind, (32, 32, 32), seed=7))
    b = make_phantom(kind, (32, 32, 32), seed=8)
    assert np.mean(np.abs(a - b) > 50) > 0.01


def test_chest_phantom_anatomy_is_in_lps():
    hu = make_phantom("chest", (64, 64, 64), seed=0)
    z, y, x = np.meshgrid(*[np.arange(64) - 31.5] * 3, indexing="ij")
    lung = np.abs(hu - LUNG) < 100
    assert z[lung].mean() > 0  # lungs superior to the abdomen
    bone_core = hu > 250
    assert y[bone_core].mean() > 0  # spine and ribs posterior (+y)
    liver = (np.abs(hu - LIVER) < 12) & (z < 0)
    assert x[liver].mean() < 0  # liver on the patient's right (-x)


def test_lesions_and_variation_are_seeded():
    seeds = [make_phantom("chest", (48, 48, 48), seed=s) for s in range(3)]
    assert len({round(float(h.mean()), 3) for h in seeds}) == 3


def test_anisotropic_grid_and_explicit_spacing():
    hu = make_phantom("knee", (30, 40, 50), spacing=(4.0, 3.0, 2.5), seed=0)
    assert hu.shape == (30, 40, 50)
    volume = phantom_volume("pelvis", (20, 30, 40), spacing=(5.0, 4.0, 4.0))
    np.testing.assert_allclose(volume.centre_lps, 0.0, atol=1e-9)
    assert volume.spacing == (5.0, 4.0, 4.0)


def test_shepp_logan_has_its_hu_levels():
    hu = shepp_logan_phantom((64, 64, 64))
    assert hu[0, 0, 0] == -1000.0
    assert hu[32, 32, 32] == pytest.approx(40.0)  # brain
    assert np.any(np.isclose(hu, 1000.0))  # skull
    assert np.any(np.isclose(hu, 0.0))  # ventricles


def test_unknown_kind_and_bad_shape_are_input_errors():
    with pytest.raises(InputError):
        make_phantom("spleen", (8, 8, 8))
    with pytest.raises(InputError):
        make_phantom("head", (8, 8))


def test_phantoms_are_fast():
    start = time.perf_counter()
    make_phantom("chest", (64, 64, 64), seed=1)
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    make_phantom("pelvis", (128, 128, 128), seed=1)
    assert time.perf_counter() - start < 5.0


@pytest.mark.samples
def test_label_phantom_from_the_chest_mask(sample_file):
    sample_file("chest", "labels")
    sample_file("chest", "image")
    a = label_phantom((48, 56, 56), seed=0)
    assert a.shape == (48, 56, 56) and a.dtype == np.float32
    assert -1024 <= a.min() and a.max() <= 3071
    assert np.mean(np.abs(a - LUNG) < 100) > 0.03  # lungs
    assert np.mean(a > BONE - 300) > 0.005  # bones
    np.testing.assert_array_equal(a, label_phantom((48, 56, 56), seed=0))
    assert np.mean(np.abs(a - label_phantom((48, 56, 56), seed=1)) > 50) > 0.02
    assert "labels" in PHANTOM_KINDS


def test_every_phantom_kind_has_a_generator_and_a_field_of_view():
    from deepsparse_core.data.phantoms import FIELD_OF_VIEW_MM, PHANTOM_KINDS
    from deepsparse_core.training.synthetic import KINDS

    assert set(PHANTOM_KINDS) == set(FIELD_OF_VIEW_MM)
    assert set(KINDS) <= set(PHANTOM_KINDS)  # the procedural ones, usable without the sample CTs
