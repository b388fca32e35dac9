"""``deepseg export``: a segmentation as DICOM SEG and/or RT-STRUCT referencing its source series."""
from __future__ import annotations

import argparse

from .common import emit


def register(sub) -> None:
    p = sub.add_parser("export", help="export a segmentation as DICOM SEG and/or RT-STRUCT",
                       description="Write DICOM SEG (highdicom) and/or RT-STRUCT objects that reference the source "
                       "CT/MR series. Series with empty UIDs are refused unless --repair-uids is given.")
    p.add_argument("--segmentation", required=True, help=".seg.nrrd, or a label map (.nii.gz, .nrrd, ...)")
    p.add_argument("--labels", help="labels JSON for a label map (names, colours, SNOMED CT codes, TG-263 names)")
    p.add_argument("--reference-dicom", required=True, help="folder with the source DICOM series")
    p.add_argument("--dicom-seg", metavar="OUT.dcm", help="DICOM SEG file to write")
    p.add_argument("--rtstruct", metavar="OUT.dcm", help="RT-STRUCT file to write")
    p.add_argument("--repair-uids", action="store_true",
                   help="take empty SOP UIDs from the file meta and generate missing Study/Series/Frame of Reference "
                   "UIDs (reported) instead of refusing the series")
    p.add_argument("--no-tg263", action="store_true", help="RT-STRUCT ROI names from segment names, not TG-263")
    p.add_argument("--manual", action="store_true", help="mark segments as MANUAL (edited) rather than AUTOMATIC")
    p.add_argument("--uncompressed", action="store_true",
                   help="DICOM SEG in plain Explicit VR Little Endian instead of the ~100x smaller Deflated syntax "
                   "(for the few readers without deflate support)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..export.dicom_ref import read_reference_series
    from ..export.dicom_seg import write_dicom_seg
    from ..export.rtstruct import write_rtstruct
    from ..io import AtomicOutputs
    from ..measure import read_segmentation

    if not (args.dicom_seg or args.rtstruct):
        raise InputError("Nothing to export.", "Give --dicom-seg OUT.dcm and/or --rtstruct OUT.dcm.")
    # outputs claimed before any work, as the other commands do: existing or unwritable ones are refused now
    with AtomicOutputs(overwrite=args.overwrite).reserve(args.dicom_seg, args.rtstruct) as out:
        labels, info = read_segmentation(args.segmentation, args.labels, only_present=True)
        ref = read_reference_series(args.reference_dicom, repair=args.repair_uids)
        summary: dict = {"reference_series": str(args.reference_dicom), "reference_repairs": ref.repairs}
        if args.dicom_seg:
            out.add(args.dicom_seg, lambda tmp: summary.__setitem__(
                "dicom_seg", write_dicom_seg(tmp, labels, info, ref, automatic=not args.manual,
                                         deflate=not args.uncompressed)))
        if args.rtstruct:
            out.add(args.rtstruct, lambda tmp: summary.__setitem__(
                "rtstruct", write_rtstruct(tmp, labels, info, ref, use_tg263=not args.no_tg263)))
    for kind, path in (("dicom_seg", args.dicom_seg), ("rtstruct", args.rtstruct)):
        if path:
            summary[kind]["file"] = str(path)
    lines = [f"UID repair: {r}" for r in ref.repairs]
    if args.dicom_seg:
        lines.append(f"wrote DICOM SEG {args.dicom_seg} ({len(summary['dicom_seg']['segments'])} segments)")
    if args.rtstruct:
        lines.append(f"wrote RT-STRUCT {args.rtstruct} ({len(summary['rtstruct']['rois'])} ROIs)")
    emit(summary, args.json, "\n".join(lines))
    return 0
