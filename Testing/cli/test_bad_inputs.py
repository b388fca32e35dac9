"""Broken input files are refused by ``deepseg segment``: non-zero exit, a message naming the problem and
the fix, and no output file at all.  Each file is a good volume with exactly one defect made on disk
(payload cut short, NaN/Inf voxels, spacing, orientation, no geometry), in every format that can carry it."""
from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from deepseg.cli import main
from deepseg.io import read_volume, write_volume
from deepseg.volume import Volume

SPACING = (1.2, 1.0, 2.0)


def _volume(dtype=np.float32) -> Volume:
    rng = np.random.default_rng(1)
    arr = rng.normal(0, 10, (12, 20, 24))
    arr[3:9, 5:15, 6:18] += 200
    return Volume(arr.astype(dtype), SPACING, (-10.0, 5.0, 30.0), np.eye(3), name="ct")


def _nifti(path: Path, arr: "np.ndarray | None" = None, **fields) -> Path:
    """A NIfTI file of the test volume (voxels ``arr`` if given) whose stored header fields are then set
    byte for byte (nibabel would "repair" them on save): ``pixdim`` (x, y, z), ``qform_code``,
    ``sform_code``, ``srow`` (column, xyz vector)."""
    vol = _volume()
    raw_path = path.with_name("raw.nii")
    affine = np.diag(list(SPACING) + [1.0])
    img = nib.Nifti1Image(vol.array.transpose(2, 1, 0) if arr is None else arr, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.to_filename(raw_path)
    raw = bytearray(raw_path.read_bytes())
    raw_path.unlink()
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)), check=False)
    for key, value in fields.items():
        if key == "pixdim":
            hdr["pixdim"][1:4] = value
        elif key == "srow":
            column, vector = value
            for row, name in enumerate(("srow_x", "srow_y", "srow_z")):
                hdr[name][column] = vector[row]
        else:
            hdr[key] = value
    raw[:348] = hdr.binaryblock
    path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    return path


def _with_nonfinite(value: float) -> np.ndarray:
    arr = _volume().array.copy()
    arr[6, 10, 12] = value
    return arr


def _sitk(path: Path, arr: np.ndarray, compress: bool = False, header_edit=None) -> Path:
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(path), useCompression=compress)
    if header_edit:
        old, new = header_edit
        data = path.read_bytes()
        assert old in data
        path.write_bytes(data.replace(old, new, 1))
    return path


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _vector_nrrd(path: Path) -> Path:
    """A 3-component NRRD as other tools write it: ``spacings`` with NaN for the component axis."""
    image = sitk.GetImageFromArray(np.zeros((12, 20, 24, 3), np.float32), isVector=True)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(path), useCompression=False)
    header, data = path.read_bytes().split(b"\n\n", 1)
    lines = [ln for ln in header.split(b"\n") if not ln.startswith((b"space:", b"space origin:", b"space directions:"))]
    lines.insert(-1, b"spacings: nan " + " ".join(f"{v:g}" for v in SPACING).encode())
    path.write_bytes(b"\n".join(lines) + b"\n\n" + data)
    return path


def _nrrd_4d(path: Path, **header) -> Path:
    """A 3-time-point NRRD as pynrrd writes it (its ``sizes`` are x y z t)."""
    import nrrd

    nrrd.write(str(path), np.zeros((24, 20, 12, 3), np.float32), header)
    return path


def _mha_4d(path: Path) -> Path:
    """A 3-time-point MetaImage as SimpleITK writes it (``NDims = 4``)."""
    image = sitk.GetImageFromArray(np.zeros((3, 12, 20, 24), np.float32), isVector=False)
    image.SetSpacing((*SPACING, 1.0))
    sitk.WriteImage(image, str(path))
    return path


def _mgz_nan(path: Path) -> Path:
    arr = _with_nonfinite(np.nan)
    nib.save(nib.MGHImage(arr.transpose(2, 1, 0), np.diag(list(SPACING) + [1.0])), str(path))
    return path


BAD = {
    # name: (file maker, message fragment)
    "nii.gz cut in half": (lambda d: _cut(_nifti(d / "ct.nii.gz"), 0.5), "truncated"),
    "nii cut at two thirds": (lambda d: _cut(_nifti(d / "ct.nii"), 2 / 3), "truncated"),
    "NaN voxel in .nii": (lambda d: _nifti(d / "ct.nii", _with_nonfinite(np.nan).transpose(2, 1, 0)), "NaN/Inf"),
    "Inf voxel in .nii.gz": (lambda d: _nifti(d / "ct.nii.gz", _with_nonfinite(np.inf).transpose(2, 1, 0)), "NaN/Inf"),
    "NaN voxel in .mha": (lambda d: _sitk(d / "ct.mha", _with_nonfinite(np.nan)), "NaN/Inf"),
    "Inf voxel in .nrrd": (lambda d: _sitk(d / "ct.nrrd", _with_nonfinite(-np.inf), compress=True), "NaN/Inf"),
    "NaN voxel in .mgz": (lambda d: _mgz_nan(d / "ct.mgz"), "NaN/Inf"),
    "mha cut short": (lambda d: _cut(_sitk(d / "ct.mha", _volume().array), 2 / 3), "truncated"),
    "nrrd cut short": (lambda d: _cut(_sitk(d / "ct.nrrd", _volume().array, compress=True), 2 / 3), "truncated"),
    "zero pixdim": (lambda d: _nifti(d / "ct.nii.gz", pixdim=(3, 0, 3)), "zero voxel spacing"),
    "negative pixdim": (lambda d: _nifti(d / "ct.nii.gz", pixdim=(3, -3, 3)), "negative voxel spacing"),
    "NaN pixdim": (lambda d: _nifti(d / "ct.nii.gz", pixdim=(3, np.nan, 3)), "non-finite voxel spacing"),
    "zero spacing in .mha": (lambda d: _sitk(d / "ct.mha", _volume().array,
                                             header_edit=(b"ElementSpacing = 1.2 1 2", b"ElementSpacing = 1.2 0 2")),
                             "zero voxel spacing"),
    "negative spacing in .mha": (lambda d: _sitk(d / "ct.mha", _volume().array,
                                                 header_edit=(b"ElementSpacing = 1.2 1 2", b"ElementSpacing = 1.2 -1 2")),
                                 "negative voxel spacing"),
    "zero spacing in .nrrd": (lambda d: _sitk(d / "ct.nrrd", _volume().array,
                                              header_edit=(b"(0,1,0)", b"(0,0,0)")), "voxel spacing"),
    "no geometry (qform/sform code 0)": (lambda d: _nifti(d / "ct.nii.gz", pixdim=(0, 0, 0), qform_code=0,
                                                          sform_code=0), "stores no geometry"),
    "degenerate sform": (lambda d: _nifti(d / "ct.nii.gz", qform_code=0, srow=(1, (0, 0, 0))),
                         "degenerate or non-orthonormal orientation"),
    "non-orthonormal sform": (lambda d: _nifti(d / "ct.nii.gz", qform_code=0, srow=(1, (1.0, 1.0, 0))),
                              "degenerate or non-orthonormal orientation"),
    "vector NRRD (NaN spacing of its component axis)": (lambda d: _vector_nrrd(d / "rgb.nrrd"), "3 components per voxel"),
    # a 4-D image is named as such, whatever its extra axis's spacing (NaN was "non-finite voxel spacing")
    "4-D NRRD, NaN spacing on its axis of no kind": (lambda d: _nrrd_4d(d / "t.nrrd", spacings=[*SPACING, np.nan]),
                                                    "holds a 4-D image"),
    "4-D NRRD, time axis with no space direction": (lambda d: _nrrd_4d(  # ITK: "domain axes ... doesn't match"
        d / "t.nrrd", space="left-posterior-superior", kinds=["domain"] * 3 + ["time"],
        **{"space directions": np.vstack([np.diag(SPACING), [np.nan] * 3])}), "holds a 4-D image"),
    "4-D .mha": (lambda d: _mha_4d(d / "t.mha"), "holds a 4-D image"),
    "degenerate direction in .mha": (lambda d: _sitk(d / "ct.mha", _volume().array, header_edit=(
        b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 1 0 0 0 0 1")),
        "degenerate or non-orthonormal orientation"),
}


def _segment(model_folder: Path, image: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    try:
        code = main(["segment", "--model", str(model_folder), "--input", str(image), "--output", str(out / "o.seg.nrrd"),
                 "--labelmap", str(out / "o.nii.gz"), "--device", "cpu", "--progress", "none", *extra])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(BAD))
def test_broken_input_is_refused_with_its_problem_and_no_output(case, model_folder, tmp_path, capsys):
    make, message = BAD[case]
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(), out.mkdir()
    image = make(inputs)
    code, err = _segment(model_folder, image, out, capsys)
    assert code == 2, err
    assert message in err and "Fix:" in err, err
    assert "truncated" not in err or "truncated" in message  # each defect gets its own message
    assert list(out.iterdir()) == []  # no output, no partial file, no claim left behind


def test_good_files_in_each_format_are_accepted(model_folder, tmp_path, capsys):
    """The same maker functions without a defect give files that segment (so the refusals above are the
    defects, not the way the files were made)."""
    vol = _volume()
    good = [_nifti(tmp_path / "a.nii.gz"), _nifti(tmp_path / "b.nii"), _sitk(tmp_path / "c.mha", vol.array),
            _sitk(tmp_path / "d.nrrd", vol.array, compress=True)]
    for image in good:
        out = tmp_path / f"out_{image.name}"
        out.mkdir()
        code, err = _segment(model_folder, image, out, capsys)
        assert code == 0, err
        assert read_volume(image).spacing == pytest.approx(SPACING)
        assert sorted(p.name for p in out.iterdir()) == ["o.json", "o.nii.gz", "o.seg.nrrd"]


def test_no_geometry_runs_with_assume_spacing_and_provenance_records_it(model_folder, tmp_path, capsys):
    image = _nifti(tmp_path / "ct.nii.gz", pixdim=(0, 0, 0), qform_code=0, sform_code=0)
    out = tmp_path / "out"
    out.mkdir()
    code, err = _segment(model_folder, image, out, capsys, "--assume-spacing", "1.5,1.5,2.5")
    assert code == 0, err
    labels = read_volume(out / "o.nii.gz")
    assert labels.spacing == pytest.approx((1.5, 1.5, 2.5))
    provenance = json.loads((out / "o.json").read_text())
    assert any("no geometry" in n and "[1.5, 1.5, 2.5]" in n for n in provenance["notes"])


def test_assume_spacing_leaves_files_with_geometry_alone(tmp_path):
    image = _nifti(tmp_path / "ct.nii.gz")
    vol = read_volume(image, assume_spacing=5)
    assert vol.spacing == pytest.approx(SPACING) and "assumed_spacing" not in vol.meta


@pytest.mark.parametrize("value", ["0", "-1", "1,2", "nan", "a,b,c"])
def test_assume_spacing_must_be_positive_numbers(value, model_folder, tmp_path, capsys):
    image = _nifti(tmp_path / "ct.nii.gz", qform_code=0, sform_code=0)
    out = tmp_path / "out"
    out.mkdir()
    code, err = _segment(model_folder, image, out, capsys, "--assume-spacing", value)
    assert code == 2 and "one or three positive numbers" in err, err
    assert list(out.iterdir()) == []


def test_real_ct_cut_short_is_refused(shared, model_folder, tmp_path, capsys):
    """The TotalSegmentator example CT, cut in half (.nii.gz) and at two thirds (.nii)."""
    source = shared / "data" / "totalseg" / "example_ct_sm.nii.gz"
    half = _cut(Path(shutil.copy(source, tmp_path / "half.nii.gz")), 0.5)
    plain = tmp_path / "cut.nii"
    plain.write_bytes(gzip.decompress(source.read_bytes()))
    _cut(plain, 2 / 3)
    for image in (half, plain):
        out = tmp_path / f"out_{image.name}"
        out.mkdir()
        code, err = _segment(model_folder, image, out, capsys)
        assert code == 2 and "truncated" in err and "Copy or export the file again" in err, err
        assert list(out.iterdir()) == []


def test_whole_real_ct_reads_with_its_geometry(shared):
    vol = read_volume(shared / "data" / "totalseg" / "example_ct_sm.nii.gz")
    assert vol.shape == (30, 101, 122) and vol.spacing == pytest.approx((3.0, 3.0, 3.0))


def test_written_volume_round_trips_through_the_checks(tmp_path):
    """Files DeepSeg writes itself pass every check (oblique direction, float voxels)."""
    a = np.deg2rad(25)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    vol = Volume(_volume().array, SPACING, (1.0, 2.0, 3.0), direction)
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mgz"):
        write_volume(vol, tmp_path / f"v{suffix}")
        back = read_volume(tmp_path / f"v{suffix}")
        assert back.spacing == pytest.approx(SPACING, abs=1e-5)
        assert np.allclose(back.direction, direction, atol=1e-5)
        assert back.origin == pytest.approx(vol.origin, abs=1e-4), suffix
        assert np.array_equal(back.array, vol.array), suffix
