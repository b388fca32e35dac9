"""Reading every supported input format with exact geometry, and refusing broken DICOM folders."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from deepseg.errors import InputError
from deepseg.io import read_volume, write_volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".mgz"])
def test_write_read_round_trip_keeps_geometry(tmp_path, oblique_volume, suffix):
    path = tmp_path / f"v{suffix}"
    write_volume(oblique_volume, path)
    back = read_volume(path)
    np.testing.assert_allclose(back.array, oblique_volume.array, atol=1e-4)
    np.testing.assert_allclose(back.spacing, oblique_volume.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, oblique_volume.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-5)


def test_nifti_gz_label_map_is_gzipped_nifti_that_reads_back_exactly(tmp_path, oblique_volume):
    """A ``.nii.gz`` label map is gzip-compressed (a fraction of its NIfTI's size), holds the NIfTI that
    ``compress=False`` writes byte for byte once unzipped, reads back with the same voxels and the geometry
    at the float32 precision of a NIfTI header, and leaves nothing beside it."""
    import gzip

    labels = np.zeros(oblique_volume.shape, np.uint16)
    labels[3:9, 5:15, 6:18], labels[5:7, 8:12, 9:20] = 1, 7
    volume = oblique_volume.with_array(labels)
    write_volume(volume, tmp_path / "v.nii.gz")
    write_volume(volume, tmp_path / "v.nii", compress=False)
    data, raw = (tmp_path / "v.nii.gz").read_bytes(), (tmp_path / "v.nii").read_bytes()
    assert data[:2] == b"\x1f\x8b" and len(data) < len(raw) / 4
    assert gzip.decompress(data) == raw
    back = read_volume(tmp_path / "v.nii.gz")
    assert back.array.dtype == np.uint16 and np.array_equal(back.array, labels)
    np.testing.assert_allclose(back.spacing, volume.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, volume.origin, rtol=1e-6)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.nii", "v.nii.gz"]


def test_mgz_matches_nibabel_affine(shared):
    import nibabel as nib

    vol = read_volume(shared / "data/niivue/norm.mgz")
    ras = nib.load(str(shared / "data/niivue/norm.mgz")).affine
    lps = np.diag([-1, -1, 1, 1]) @ ras
    np.testing.assert_allclose(vol.ijk_to_lps(), lps, atol=1e-4)
    # voxel (i, j, k) of nibabel's array is voxel [k, j, i] of ours
    data = np.asanyarray(nib.load(str(shared / "data/niivue/norm.mgz")).dataobj)
    assert vol.array[10, 120, 130] == data[130, 120, 10]


def test_dicom_series_matches_reference_label_grid(shared):
    vol = read_volume(shared / "data/totalseg/example_ct_dicom_uids")
    ref = read_volume(shared / "data/totalseg/example_seg_dicom.nii.gz")
    assert vol.meta["modality"] == "CT"
    # the label map stores the same voxel centres with the row axis flipped: same physical box
    def corners(v):
        ijk = np.array([[i, j, k, 1] for i in (0, v.size_ijk[0] - 1) for j in (0, v.size_ijk[1] - 1)
                        for k in (0, v.size_ijk[2] - 1)]).T
        return sorted(map(tuple, np.round((v.ijk_to_lps() @ ijk)[:3].T, 3)))

    assert corners(vol) == corners(ref)


def test_dicom_with_empty_uids_still_reads(shared):
    vol = read_volume(shared / "data/totalseg/example_ct_dicom")
    assert vol.shape == (20, 512, 512)


def _copy_series(shared, tmp_path):
    dst = tmp_path / "series"
    shutil.copytree(shared / "data/totalseg/example_ct_dicom_uids", dst)
    return dst, sorted(dst.iterdir())


def test_dicom_missing_slice_is_refused(shared, tmp_path):
    folder, files = _copy_series(shared, tmp_path)
    files[len(files) // 2].unlink()
    with pytest.raises(InputError, match="missing"):
        read_volume(folder)


def test_dicom_mixed_series_is_refused_and_listed(shared, tmp_path):
    import pydicom

    folder, files = _copy_series(shared, tmp_path)
    for f in files[:5]:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.3.4.5"
        ds.save_as(f)
    with pytest.raises(InputError, match=r"mixes 2 DICOM series.*1\.2\.3\.4\.5"):
        read_volume(folder)
    assert read_volume(f"{folder}::1.2.3.4.5").shape[0] == 5


def test_dicom_single_slice_is_2d(shared, tmp_path):
    folder, files = _copy_series(shared, tmp_path)
    for f in files[1:]:
        f.unlink()
    with pytest.raises(InputError, match="single slice"):
        read_volume(folder)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM"):
        read_volume(tmp_path)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported"):
        read_volume(tmp_path / "a.png")
