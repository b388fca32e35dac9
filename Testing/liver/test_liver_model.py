"""The pyliverlesionseg model in DeepSeg: geometry of prepare/restore, and the shipped weights end to end
on a real (cropped) CT."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from deepseg.models.card import InputSpec, ModelCard
from deepseg.models.liver import LiverModel
from deepseg.models.liver_convert import ARCHITECTURES, LIVER, LIVER_LESION
from deepseg.models.networks.liver_unet import LiverUNet
from deepseg.volume import Volume


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _synthetic_ct():
    """Body ellipsoid (40 HU) in air with a bright 'organ' (200 HU) whose top is row j = 18; anisotropic
    spacing, flipped axes (j runs superior -> inferior)."""
    k, j, i = np.mgrid[:40, :70, :80]
    arr = np.full(k.shape, -1000.0, np.float32)
    arr[((j - 35) / 30.0) ** 2 + ((i - 40) / 36.0) ** 2 < 1] = 40.0
    organ = ((k - 22) / 9.0) ** 2 + ((j - 30) / 12.0) ** 2 + ((i - 30) / 14.0) ** 2 < 1
    arr[organ] = 200.0
    direction = np.array([[-1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # i -> R, j -> I, k -> P
    return Volume(arr, spacing=(1.6, 2.5, 3.5), origin=(10, -20, 30), direction=direction), organ


def _model(lesions: bool) -> LiverModel:
    arch = {"liver": ARCHITECTURES["liver"]} | ({"lesion": ARCHITECTURES["lesion"]} if lesions else {})
    card = ModelCard("test", "test", "pyliverlesionseg", [LIVER] + ([LIVER_LESION] if lesions else []),
                     [InputSpec("image", "CT")], architecture=arch,
                     preprocessing={"modality": "CT", "liver_spacing_xyz": [3, 3, 3], "lesion_spacing_xyz": [1, 1, 3]})
    return LiverModel(card, LiverUNet(arch["liver"]), LiverUNet(arch["lesion"]) if lesions else None)


@pytest.mark.parametrize("thin", [False, True])
def test_restore_maps_network_space_back_onto_the_input_grid(thin):
    volume, organ = _synthetic_ct()
    # a scan without lungs starts below them and cuts the liver at its top (``liver_site``)
    top = slice(20, 40) if thin else slice(16, None)
    volume = Volume(volume.array[:, top], volume.spacing, volume.origin, volume.direction)
    organ = organ[:, top]  # thin: 50 mm in z, mirrored to 90 mm = 30 slices of 3 mm in network space
    model = _model(lesions=False)
    prepared = model.prepare([volume])
    if thin:
        assert prepared.image.shape[1] == 30 and sum(prepared.context["z_pad"]) > 0
    assert prepared.image.shape[0] == 1 and prepared.image.min() >= -0.5 and prepared.image.max() <= 0.5
    fake = (prepared.image[0] > 0.4).astype(np.float32)  # a "network" that finds the bright organ
    probs = model.restore(torch.from_numpy(np.stack([1 - fake, fake])), prepared)
    assert probs.shape == (2,) + volume.shape
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    labels = model.labels_from_probabilities(probs)
    assert _dice(labels == 1, organ) > 0.9


def test_a_liver_the_network_is_barely_sure_of_keeps_its_volume_on_the_input_grid():
    """The post-processed mask and the probability return to the (finer) input grid apart: a liver at P = 0.6
    fading to 0.4 around it gets the volume of one at P = 0.95.  Zoomed back as one map (the probability zeroed
    outside the mask), the 0.6 edge fell under 0.5 a third of a voxel inside the mask: 10 % less volume."""
    volume, organ = _synthetic_ct()
    volume = Volume(volume.array[:, 16:], volume.spacing, volume.origin, volume.direction)
    model = _model(lesions=False)
    prepared = model.prepare([volume])
    inside = prepared.image[0] > 0.4  # a "network" that finds the bright organ
    around = ndimage.binary_dilation(inside) & ~inside

    def volume_at(p_inside: float) -> int:
        fake = np.where(inside, p_inside, np.where(around, 0.4, 0.0)).astype(np.float32)
        probs = model.restore(torch.from_numpy(np.stack([1 - fake, fake])), prepared)
        return int((model.labels_from_probabilities(probs) == 1).sum())

    confident = volume_at(0.95)
    assert confident > 0.8 * organ[:, 16:].sum()
    assert volume_at(0.6) == pytest.approx(confident, rel=0.03)


def _tilted_synthetic_ct():
    """``_synthetic_ct`` below its top 16 rows, resampled linearly onto a grid tilted 20 and 10 degrees (its
    organ by nearest neighbour)."""
    from deepseg.io import resample_onto

    volume, organ = _synthetic_ct()
    volume, organ = Volume(volume.array[:, 16:], volume.spacing, volume.origin, volume.direction), organ[:, 16:]
    a, b = np.deg2rad(20), np.deg2rad(10)
    tilt = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ \
        np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    centre = volume.ijk_to_lps() @ np.append((np.array(volume.size_ijk) - 1) / 2, 1)
    size_ijk = np.array([100, 90, 50])
    origin = centre[:3] - tilt @ volume.direction @ np.diag(volume.spacing) @ ((size_ijk - 1) / 2)
    grid = Volume(np.zeros(tuple(size_ijk[::-1]), np.float32), volume.spacing, tuple(origin), tilt @ volume.direction)
    return (resample_onto(volume, grid, default=-1000.0),
            resample_onto(volume.with_array(organ.astype(np.uint8)), grid, nearest=True).array > 0)


def test_an_oblique_ct_reaches_the_network_on_lps_axes_and_returns_on_its_own_grid():
    """A CT on a tilted grid is resampled onto L, P, S axes before the network (which learnt axial scans): its
    network input is that of the axis-aligned image; the probabilities come back on the tilted grid."""
    from deepseg.models import liver_prep as lp

    oblique, organ_there = _tilted_synthetic_ct()
    model = _model(lesions=False)
    prepared = model.prepare([oblique])
    np.testing.assert_array_equal(prepared.image, model.prepare([lp.axis_aligned(oblique, (1.5, 1.5, 1.5))]).image)
    fake = (prepared.image[0] > 0.4).astype(np.float32)  # a "network" that finds the bright organ
    probs = model.restore(torch.from_numpy(np.stack([1 - fake, fake])), prepared)
    assert probs.shape == (2,) + oblique.shape
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    assert _dice(model.labels_from_probabilities(probs) == 1, organ_there) > 0.85


def test_an_oblique_ct_reaches_the_lesion_network_on_lps_axes_and_returns_on_its_own_grid():
    """The cascade's lesion stage reads a tilted CT as the liver stage does: its network input is that of the
    axis-aligned image (with the liver carried onto it), and the lesion probabilities come back on the tilted grid."""
    from deepseg.io import resample_onto
    from deepseg.models import liver_prep as lp

    oblique, organ = _tilted_synthetic_ct()
    stage = _model(lesions=True).lesion
    liver = ndimage.binary_dilation(organ, iterations=3).astype(np.float32)  # the liver stage's, around the "lesion"
    prepared = stage.prepare([oblique], [np.stack([1 - liver, liver])])
    aligned = lp.axis_aligned(oblique, (1.0, 1.0, 3.0))
    liver_there = resample_onto(oblique.with_array(liver), aligned).array
    straight = stage.prepare([aligned], [np.stack([1 - liver_there, liver_there])])
    np.testing.assert_array_equal(prepared.image, straight.image)
    fake = (prepared.image[0] > 0.3).astype(np.float32)  # a "network" that finds the bright organ
    probs = stage.restore(torch.from_numpy(np.stack([1 - fake, fake])), prepared)
    assert probs.shape == (2,) + oblique.shape
    assert _dice(probs[1] > 0.5, organ) > 0.85


def test_a_liver_needs_lungs_or_the_top_of_the_scan_above_it():
    """The 'organ' 45 mm below the top of a scan without lungs (tissue above it, as the bladder the network
    takes for liver in a pelvis-only CT) is dropped; with lungs from 10 mm above it down it is a liver."""
    volume, organ = _synthetic_ct()
    model = _model(lesions=False)

    def liver_of(vol):
        prepared = model.prepare([vol])
        fake = (prepared.image[0] > 0.4).astype(np.float32)
        return model.labels_from_probabilities(model.restore(torch.from_numpy(np.stack([1 - fake, fake])),
                                                             prepared)) == 1

    assert not liver_of(volume).any()
    arr = volume.array.copy()
    arr[:, :18] = arr[:, 35:36]  # the body runs up to the top of the scan above the organ ...
    arr[5:35, :14, 8:38] = arr[5:35, :14, 42:72] = -850.0  # ... with lungs from 10 mm above the organ (i: L -> R)
    assert _dice(liver_of(volume.with_array(arr)), organ) > 0.9


def test_the_anatomical_check_reuses_the_crops_lung_search(monkeypatch):
    """restore checks the liver against the body box and lungs that prepare's crop found (the lung search is
    the costly part of both); it does not search the whole CT again."""
    from deepseg.models import liver_prep as lp

    volume, _ = _synthetic_ct()
    arr = volume.array.copy()
    arr[:, :18] = arr[:, 35:36]
    arr[5:35, :14, 8:38] = arr[5:35, :14, 42:72] = -850.0
    model = _model(lesions=False)
    calls = []
    real = lp.lung_air
    monkeypatch.setattr(lp, "lung_air", lambda *a, **k: calls.append(1) or real(*a, **k))
    prepared = model.prepare([volume.with_array(arr)])
    fake = (prepared.image[0] > 0.4).astype(np.float32)
    liver = model.restore(torch.from_numpy(np.stack([1 - fake, fake])), prepared)[1] > 0.5
    assert liver.any() and len(calls) == 1


def test_cascade_probabilities_and_labels():
    model = _model(lesions=True)
    probs = np.zeros((3, 2, 2, 2), np.float32)
    liver, lesion = np.array([0.9, 0.9, 0.2, 0.6]), np.array([0.1, 0.7, 0.8, 0.45])
    probs[1].flat[:4] = (1 - lesion) * liver
    probs[2].flat[:4] = lesion
    probs[0] = 1 - probs[1] - probs[2]
    assert model.labels_from_probabilities(probs).flat[:4].tolist() == [1, 2, 2, 1]


@pytest.fixture(scope="module")
def example_ct(shared):
    """The TotalSegmentator example CT (122 x 101 x 30 voxels of 3 mm) and its liver reference."""
    from deepseg.io import read_volume

    image = read_volume(shared / "data" / "totalseg" / "example_ct_sm.nii.gz")
    return image, read_volume(shared / "data" / "totalseg" / "example_seg.nii.gz").array == 5


def _shrunk_patch(model, image):
    """``model`` with a smaller patch than the original 162 x 162 x 189 that still holds the whole case in one
    tile (27 * n input voxels; output = input - 26): same weights, less zero padding, ~3x less compute."""
    shape = model.prepare([image]).image.shape[1:]
    model.window = replace(model.window, patch_size=tuple(int(27 * np.ceil((s + 26) / 27)) for s in shape))
    return model


def test_shipped_liver_model_on_a_real_ct(liver_folder, example_ct):
    """The converted liver network on a real CT, with a patch shrunk to the case so it runs in CI."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model

    image, reference = example_ct
    model = _shrunk_patch(load_model(liver_folder), image)
    result = segment(model, [image])
    assert result.labels.same_grid(image)
    assert [lab.value for lab in result.label_info] == [1]
    dice = _dice(result.labels.array == 1, reference)
    print(f"liver Dice on the TotalSegmentator example CT (shrunk patch): {dice:.3f}")
    assert dice > 0.9


def test_shipped_liver_model_on_openvino_agrees_with_torch(liver_folder, example_ct, tmp_path, monkeypatch):
    """The converted liver network (valid convolutions, cropped skips, sigmoid head) converts to OpenVINO
    (provenance says OpenVINO ran, not the PyTorch fallback) and labels the real CT as PyTorch does."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model

    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path))  # conversions go to a fresh store
    image, _ = example_ct
    model = _shrunk_patch(load_model(liver_folder), image)
    fast = segment(model, [image], device="cpu", backend="openvino")
    slow = segment(model, [image], device="cpu", backend="torch")
    assert fast.provenance["settings"]["backend"] == "openvino", fast.provenance["notes"]
    assert (slow.labels.array == 1).sum() > 1000
    assert _dice(fast.labels.array == 1, slow.labels.array == 1) >= 0.99


def test_shipped_lesion_network_inside_a_given_liver(liver_lesion_folder, lits117):
    """The lesion network of the cascade on a real LiTS tumour region, given the manual liver contour."""
    from deepseg.models.loaders import load_model

    image, labels = lits117
    # 56 x 56 x 28 voxels at the assumed 1.5 mm: one lesion tile at 1 x 1 x 3 mm
    sl = (slice(40, 68), slice(20, 76), slice(50, 106))
    crop = Volume(image.array[sl], image.spacing, image.origin, image.direction)
    truth = labels.array[sl]
    model = load_model(liver_lesion_folder)
    p = model.segment_lesions(crop, truth > 0, device="cpu")
    assert p.shape == crop.shape and 0 <= p.min() and p.max() <= 1
    dice = _dice(p > 0.5, truth == 2)
    print(f"lesion Dice on the LiTS 117 crop (manual liver given): {dice:.3f}, reference {(truth == 2).sum()} voxels")
    assert dice > 0.5


def test_liver_on_a_large_field_of_view_ct(liver_folder, totalseg_full_ct):
    """The whole-FOV abdomen-pelvis CT whose bowel gas the body crop once took for lungs (cutting the liver
    off at the top; Dice 0.578): the crop must keep the top and the liver must match the reference."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model

    image, labels = totalseg_full_ct
    result = segment(load_model(liver_folder), [image])
    liver, reference = result.labels.array == 1, labels.array == 5
    dice = _dice(liver, reference)
    top = lambda m: int(np.where(m.any((1, 2)))[0].max())  # noqa: E731 - highest slice (k runs inferior->superior)
    print(f"liver Dice on the whole TotalSegmentator example CT: {dice:.3f}; top slice {top(liver)} vs {top(reference)}")
    assert dice > 0.9
    assert abs(top(liver) - top(reference)) <= 2


def test_liver_cut_by_the_top_of_a_large_field_of_view_ct(liver_folder, totalseg_full_ct):
    """The same CT starting 21 mm lower, inside the liver, in a grid with 60 mm of air above it: no lungs, no
    dome.  In a box from the grid's top down 408 mm (into the pelvis) the network grew the liver down into the
    bowel (Dice 0.82; 0.85 without the air); in a box from the body's top down ``TOP_CUT_SPAN_MM``, ending
    above the pelvis as the original's boxes end at the hip, it does not."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model
    from deepseg.volume import Volume

    image, labels = totalseg_full_ct  # k runs inferior -> superior
    cut, air = 7, 20  # slices of 3 mm
    arrays = [np.pad(v.array[:-cut], ((0, air), (0, 0), (0, 0)), constant_values=fill)
              for v, fill in ((image, -1000), (labels, 0))]
    result = segment(load_model(liver_folder), [Volume(arrays[0], image.spacing, image.origin, image.direction)])
    dice = _dice(result.labels.array == 1, arrays[1] == 5)
    print(f"liver Dice on the example CT without its top 21 mm, 60 mm of air above: {dice:.3f}")
    assert dice > 0.9


def test_liver_cut_low_by_the_top_of_a_large_field_of_view_ct(liver_folder, totalseg_full_ct):
    """The same CT starting 60 mm lower: only the liver's lowest 66 mm (204 mL) in view.  The network grows
    the liver into the colon and small bowel beside and below it (P 0.6-0.8, ~300 mL, Dice 0.51); those thick,
    uncertain regions darker than the liver's confident core and outside it are dropped (``liver_core``).  The
    left lobe's tip, joined to the rest above the cut, is a separate 19 mL piece in the scan and is kept
    (``liver_core.lobes_cut_by_top``; without it 0.890)."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model
    from deepseg.volume import Volume

    image, labels = totalseg_full_ct  # k runs inferior -> superior
    cut = 20  # slices of 3 mm
    cut_image = Volume(image.array[:-cut], image.spacing, image.origin, image.direction)
    liver, reference = segment(load_model(liver_folder), [cut_image]).labels.array == 1, labels.array[:-cut] == 5
    dice = _dice(liver, reference)
    ml = lambda m: float(m.sum() * np.prod(image.spacing) / 1000)  # noqa: E731
    print(f"liver Dice on the example CT without its top 60 mm: {dice:.3f}, {ml(liver):.0f} mL "
          f"vs {ml(reference):.0f} mL")
    assert dice > 0.90 and 0.8 * ml(reference) < ml(liver) < 1.2 * ml(reference)


def _liver_ml(folder, image) -> float:
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model

    result = segment(load_model(folder), [image])
    return float((result.labels.array == 1).sum() * np.prod(image.spacing) / 1000)


def test_no_liver_in_the_chest(liver_folder, chest_ct):
    """The chest above the diaphragm (a real CT's upper 167 mm): the network runs and finds no liver (<= 5 mL)."""
    ml = _liver_ml(liver_folder, chest_ct)
    print(f"liver volume predicted in the chest: {ml:.2f} mL")
    assert ml <= 5.0


def test_no_liver_in_a_pelvis_only_ct(liver_folder, pelvis_ct, caplog):
    """A CT of the pelvis and lower abdomen: the network marks the bladder as liver (312 mL, P ~0.93), but
    nothing above it is lung and the scan goes on 87 mm above it, so it is no liver (``liver_site``)."""
    ml = _liver_ml(liver_folder, pelvis_ct)
    print(f"liver volume predicted in the pelvis: {ml:.2f} mL")
    assert ml <= 5.0
    assert "neither lungs nor the top of the field of view" in caplog.text  # the network did find a "liver"


def test_no_liver_in_a_head_ct_atlas(liver_folder, head_ct_atlas, caplog):
    """A head CT padded with 0 HU: the padding is read as air, so the torso gate sees a head (it had
    segmented 1189 mL of the padding around the brain as liver)."""
    ml = _liver_ml(liver_folder, head_ct_atlas)
    print(f"liver volume predicted in the head CT atlas: {ml:.2f} mL")
    assert ml <= 5.0
    assert "No torso in the image" in caplog.text


def test_no_liver_in_a_brain_mr(liver_h5, shared, tmp_path):
    """A brain MR is no torso: the MR liver model returns no liver (it had segmented 576 mL of brain)."""
    from deepseg.io import read_volume
    from deepseg.models.liver_convert import convert_keras_h5

    image = read_volume(shared / "data" / "pyradiomics" / "brain1_image.nrrd")
    ml = _liver_ml(convert_keras_h5(liver_h5, tmp_path / "mr", modality="MR"), image)
    print(f"liver volume predicted in a brain MR: {ml:.2f} mL")
    assert ml <= 5.0
