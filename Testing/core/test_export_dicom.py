"""DICOM SEG and RT-STRUCT export: round trips on the real TotalSegmentator CT series, orientation on
a synthetic oblique series, and the empty-UID defect of the original series (refuse or repair)."""
from __future__ import annotations

import numpy as np
import pytest

from deepseg.errors import ExportError
from deepseg.export.dicom_ref import labels_on_series, read_reference_series
from deepseg.export.dicom_seg import read_dicom_seg, write_dicom_seg
from deepseg.export.rtstruct import rasterise_rtstruct, write_rtstruct
from deepseg.measure import read_segmentation
from deepseg.models.card import Code, LabelInfo
from deepseg.volume import Volume

pydicom = pytest.importorskip("pydicom")

SEG_REQUIRED = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                "Modality", "SegmentSequence", "ReferencedSeriesSequence", "SharedFunctionalGroupsSequence",
                "PerFrameFunctionalGroupsSequence", "PixelData", "Rows", "Columns", "NumberOfFrames", "PatientID"]
RT_REQUIRED = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
               "StructureSetLabel", "StructureSetROISequence", "ROIContourSequence", "RTROIObservationsSequence",
               "ReferencedFrameOfReferenceSequence", "PatientName", "PatientID", "StudyDate"]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def _even_odd_fill(path, ref) -> dict[str, np.ndarray]:
    """Independent rasteriser (matplotlib's point-in-polygon) of an RT-STRUCT on ``ref``'s grid,
    slices found through each contour's referenced SOP Instance UID."""
    from matplotlib.path import Path as MplPath

    ds = pydicom.dcmread(str(path))
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    slice_of = {str(d.SOPInstanceUID): k for k, d in enumerate(ref.datasets)}
    out = {}
    for roi in ds.ROIContourSequence:
        mask = np.zeros(ref.grid.shape, bool)
        for c in roi.ContourSequence:
            k = slice_of[str(c.ContourImageSequence[0].ReferencedSOPInstanceUID)]
            sl = ref.datasets[k]
            iop = np.asarray(sl.ImageOrientationPatient, float)
            rel = np.asarray(c.ContourData, float).reshape(-1, 3) - np.asarray(sl.ImagePositionPatient, float)
            col = rel @ iop[:3] / float(sl.PixelSpacing[1])
            row = rel @ iop[3:] / float(sl.PixelSpacing[0])
            assert np.allclose(rel @ np.cross(iop[:3], iop[3:]), 0, atol=1e-2)  # on the referenced slice's plane
            i0, i1 = int(np.floor(col.min())), int(np.ceil(col.max())) + 1
            j0, j1 = int(np.floor(row.min())), int(np.ceil(row.max())) + 1
            jj, ii = np.mgrid[j0:j1, i0:i1]
            inside = MplPath(np.stack([col, row], 1)).contains_points(np.stack([ii.ravel(), jj.ravel()], 1))
            mask[k, j0:j1, i0:i1] ^= inside.reshape(jj.shape)
        out[names[int(roi.ReferencedROINumber)]] = mask
    return out


def _check_required(ds, keywords):
    missing = [kw for kw in keywords if kw not in ds or (ds[kw].VR == "UI" and not str(ds[kw].value))]
    assert not missing, f"missing required attributes: {missing}"


# --- real series ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def totalseg_export(shared, tmp_path_factory):
    ts = shared / "data" / "totalseg"
    ref = read_reference_series(ts / "example_ct_dicom_uids")
    labels, info = read_segmentation(ts / "example_seg_dicom.nii.gz", ts / "labels_total.json", only_present=True)
    out = tmp_path_factory.mktemp("export")
    seg_summary = write_dicom_seg(out / "seg.dcm", labels, info, ref)
    rt_summary = write_rtstruct(out / "rt.dcm", labels, info, ref)
    return ref, labels, info, out, seg_summary, rt_summary


def test_dicom_seg_round_trip_is_voxel_exact(totalseg_export):
    ref, labels, info, out, summary, _ = totalseg_export
    expected = labels_on_series(labels, ref).array
    assert not labels.same_grid(ref.grid)  # the NIfTI is flipped relative to the series: resampling exercised
    back, back_info = read_dicom_seg(out / "seg.dcm", ref)
    assert np.array_equal(back.array, expected)
    assert [lab.name for lab in back_info] == [lab.name for lab in info] == summary["segments"]
    assert len(summary["segments"]) == 31
    ds = pydicom.dcmread(str(out / "seg.dcm"))
    _check_required(ds, SEG_REQUIRED)
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == ref.datasets[0].StudyInstanceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ref.datasets[0].SeriesInstanceUID
    referenced = {str(i.ReferencedSOPInstanceUID) for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(d.SOPInstanceUID) for d in ref.datasets}
    assert ds.SegmentSequence[0].SegmentLabel == "spleen"
    by_label = {str(item.SegmentLabel): item for item in ds.SegmentSequence}
    liver_type = by_label["liver"].SegmentedPropertyTypeCodeSequence[0]
    assert (liver_type.CodeValue, liver_type.CodingSchemeDesignator) == ("10200004", "SCT")
    adrenal = by_label["adrenal_gland_right"].SegmentedPropertyTypeCodeSequence[0]
    assert adrenal.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "24028007"  # right
    back_adrenal = next(lab for lab in back_info if lab.name == "adrenal_gland_right")
    assert back_adrenal.type == Code("23451007", "SCT", "Adrenal gland") and back_adrenal.modifier.value == "24028007"


def test_rtstruct_rasterises_back_with_dice_above_095(totalseg_export):
    ref, labels, info, out, _, summary = totalseg_export
    expected = labels_on_series(labels, ref).array
    independent = _even_odd_fill(out / "rt.dcm", ref)
    ours = rasterise_rtstruct(out / "rt.dcm", ref)
    names = [lab.display_name(use_tg263=True) for lab in info]
    assert summary["rois"] == names
    assert {"Liver", "Spleen", "Glnd_Adrenal_R", "Rib07_L", "VB_T12"} <= set(names)  # TG-263 from the catalogue
    for lab, name in zip(info, names):
        truth = expected == lab.value
        assert _dice(independent[name], truth) >= 0.95, name
        assert _dice(ours[name], truth) >= 0.95, name
    ds = pydicom.dcmread(str(out / "rt.dcm"))
    _check_required(ds, RT_REQUIRED)
    assert {o.RTROIInterpretedType for o in ds.RTROIObservationsSequence} == {"ORGAN"}
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ref.datasets[0].SeriesInstanceUID
    assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == ref.datasets[0].FrameOfReferenceUID


def test_empty_uids_are_refused_with_what_is_missing(shared):
    with pytest.raises(ExportError) as err:
        read_reference_series(shared / "data" / "totalseg" / "example_ct_dicom")
    text = str(err.value)
    for uid in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert f"{uid} (20 of 20 slices)" in text
    assert "--repair-uids" in text


def test_empty_uids_repaired_from_file_meta(shared, tmp_path, caplog):
    folder = shared / "data" / "totalseg" / "example_ct_dicom"
    with caplog.at_level("WARNING"):
        ref = read_reference_series(folder, repair=True)
    assert any("generated" in r.message and "StudyInstanceUID" in r.message for r in caplog.records)
    meta_uids = {str(pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
                 for f in folder.iterdir()}
    assert {str(d.SOPInstanceUID) for d in ref.datasets} == meta_uids
    assert all(str(d.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.2" for d in ref.datasets)
    generated = [r for r in ref.repairs if "generated" in r]
    assert {r.split()[0] for r in generated} == {"StudyInstanceUID", "SeriesInstanceUID"}
    assert len({str(d.SeriesInstanceUID) for d in ref.datasets}) == 1
    # the files themselves are untouched
    assert not str(pydicom.dcmread(str(ref.files[0]), stop_before_pixels=True).get("SOPInstanceUID", ""))
    labels = ref.grid.with_array(np.zeros(ref.grid.shape, np.uint8))
    labels.array[5:9, 200:240, 220:260] = 1
    summary = write_rtstruct(tmp_path / "rt.dcm", labels, [LabelInfo(1, "box")], ref)
    assert summary["reference_repairs"] == ref.repairs
    ds = pydicom.dcmread(str(tmp_path / "rt.dcm"))
    cimg = ds.ROIContourSequence[0].ContourSequence[0].ContourImageSequence[0]
    assert str(cimg.ReferencedSOPInstanceUID) in meta_uids


# --- synthetic oblique series --------------------------------------------------------------------

def _write_series(folder, grid: Volume):
    """A minimal CT series on ``grid`` (one file per k slice)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    m = grid.ijk_to_lps()
    for k in range(grid.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.StudyTime, ds.Modality = "Phantom^Oblique", "P1", "20240101", "", "CT"
        ds.ReferringPhysicianName, ds.AccessionNumber, ds.StudyID, ds.PatientBirthDate, ds.PatientSex = "", "", "1", "", "O"
        ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 1, k + 1, "test"
        ds.ImageOrientationPatient = [float(x) for x in np.r_[grid.direction[:, 0], grid.direction[:, 1]]]
        ds.ImagePositionPatient = [float(x) for x in (m @ [0, 0, k, 1])[:3]]
        ds.PixelSpacing = [grid.spacing[1], grid.spacing[0]]
        ds.SliceThickness = grid.spacing[2]
        ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = grid.array[k].astype(np.int16).tobytes()
        ds.save_as(str(folder / f"slice{k:03d}.dcm"), enforce_file_format=True)


def test_oblique_series_contours_land_on_the_mask(oblique_volume, tmp_path):
    """Contours and SEG frames follow an oblique, anisotropic series: the RT-STRUCT points' centre is
    the mask's physical centre and both objects read back onto the right voxels."""
    _write_series(tmp_path, oblique_volume)
    ref = read_reference_series(tmp_path)
    assert ref.grid.same_grid(oblique_volume, tol=1e-3)
    arr = np.zeros(oblique_volume.shape, np.uint8)
    arr[3:9, 5:15, 6:18] = 1
    arr[5:7, 8:11, 9:13] = 0  # a hole: two contours on those slices
    arr[2:5, 14:18, 2:6] = 2
    labels = oblique_volume.with_array(arr)
    gtv = LabelInfo(2, "Tumour", (255, 0, 0), type=Code("108369006", "SCT", "Neoplasm"), tg263="GTV_Primary",
                    interpreted_type="GTV")
    info = [LabelInfo(1, "liver", (221, 130, 101), type=Code("10200004", "SCT", "Liver"), tg263="Liver"), gtv]
    write_rtstruct(tmp_path / "rt.dcm", labels, info, ref)
    write_dicom_seg(tmp_path / "seg.dcm", labels, info, ref)
    ds = pydicom.dcmread(str(tmp_path / "rt.dcm"))
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["Liver", "GTV_Primary"]
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["ORGAN", "GTV"]
    assert ds.RTROIObservationsSequence[1].RTROIIdentificationCodeSequence[0].CodeValue == "108369006"
    assert [list(c.ROIDisplayColor) for c in ds.ROIContourSequence] == [[221, 130, 101], [255, 0, 0]]
    masks = _even_odd_fill(tmp_path / "rt.dcm", ref)
    assert np.array_equal(masks["Liver"], arr == 1) and np.array_equal(masks["GTV_Primary"], arr == 2)
    back, back_info = read_dicom_seg(tmp_path / "seg.dcm", ref)
    assert np.array_equal(back.array, arr)
    assert back_info[1].type == gtv.type and back_info[1].color == pytest.approx(gtv.color, abs=2)
    seg = pydicom.dcmread(str(tmp_path / "seg.dcm"))
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    # a label map on another grid that does not cover the series is refused
    far = Volume(np.ones((3, 3, 3), np.uint8), origin=(5000.0, 5000.0, 5000.0))
    with pytest.raises(ExportError, match="does not overlap"):
        write_rtstruct(tmp_path / "x.dcm", far, info, ref)


def test_export_cli_refuses_then_repairs(shared, tmp_path, capsys):
    """``deepseg export`` on the original series: exit 2 naming the empty UIDs and writing nothing;
    with --repair-uids both objects are written and the generated UIDs are reported."""
    import json

    from deepseg.cli import main
    from deepseg.io import write_volume

    ts = shared / "data" / "totalseg"
    ref = read_reference_series(ts / "example_ct_dicom_uids")
    labels = ref.grid.with_array(np.zeros(ref.grid.shape, np.uint8))
    labels.array[4:12, 180:260, 200:300] = 1
    write_volume(labels, tmp_path / "seg.nii.gz")
    (tmp_path / "labels.json").write_text(json.dumps([{"value": 1, "name": "Tumour", "tg263": "GTV",
                                                       "interpreted_type": "GTV", "color": [255, 0, 0]}]))
    args = ["export", "--segmentation", str(tmp_path / "seg.nii.gz"), "--labels", str(tmp_path / "labels.json"),
            "--reference-dicom", str(ts / "example_ct_dicom"), "--dicom-seg", str(tmp_path / "seg.dcm"),
            "--rtstruct", str(tmp_path / "rt.dcm"), "--json"]
    assert main(args) == 2
    assert "SOPInstanceUID (20 of 20 slices)" in capsys.readouterr().err
    assert not (tmp_path / "seg.dcm").exists() and not (tmp_path / "rt.dcm").exists()
    assert main(args + ["--repair-uids"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any("generated" in r for r in summary["reference_repairs"])
    assert summary["rtstruct"]["rois"] == ["GTV"] and summary["dicom_seg"]["segments"] == ["Tumour"]
    rt = pydicom.dcmread(str(tmp_path / "rt.dcm"))
    assert rt.RTROIObservationsSequence[0].RTROIInterpretedType == "GTV"
    assert rt.StudyInstanceUID == pydicom.dcmread(str(tmp_path / "seg.dcm")).StudyInstanceUID


def test_dciodvfy_finds_no_errors(totalseg_export, tmp_path):
    """dicom3tools' IOD validator (Debian package dicom3tools) reports no error for either object.
    dciodvfy cannot inflate the Deflated transfer syntax, so the SEG is re-encoded uncompressed first."""
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    _, _, _, out, _, _ = totalseg_export
    seg = pydicom.dcmread(str(out / "seg.dcm"))
    seg.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    seg.save_as(str(tmp_path / "seg_le.dcm"))
    for path in (tmp_path / "seg_le.dcm", out / "rt.dcm"):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"
