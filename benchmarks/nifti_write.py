"""Writing a label map as .nii.gz: DeepSeg's ``write_volume`` against SimpleITK's own compressed write,
interleaved in one run.

From 262a7dd to b1b5260 ``write_volume`` gzipped SimpleITK's uncompressed NIfTI itself at level 1; the runs of
that code (benchmarks/RESULTS.md, 2026-12-02 05:33) found its files 2.0-2.9x larger than SimpleITK's and 2x
slower to write on a CT's 512x512 grid, so since b1b5260 ``write_volume`` calls
``sitk.WriteImage(..., useCompression=True)`` itself: both columns are then one writer, the sizes must agree
(ratio 1.00) and the time ratio shows only the overhead of ``write_volume`` plus noise. The script stays as the
record of what writing these maps costs and to compare any other writer against SimpleITK's.

Label maps: the shared TotalSegmentator segmentations as uint16 (the type DeepSeg writes labels in),
mirror-tiled in z to whole-body extent (900 mm) as ``realistic_cpu`` does:
  * 3mm: ``example_seg`` (41 structures, 3 mm): 122 x 101 x 300 voxels;
  * 1.5mm: the same resampled by SimpleITK's label-linear interpolation first (boundaries as smooth as a map
    predicted at 1.5 mm, not nearest neighbour's 2-voxel steps): 244 x 202 x 600, 8x the voxels;
  * ct-grid: ``example_seg_dicom`` (31 structures on its CT's 0.98 x 0.98 x 2 mm grid, where DeepSeg writes a
    label map of a CT): 512 x 512 x 450.
Each round writes both files afresh (which goes first alternates); the table gives the median
seconds over the rounds, the sizes, and the ratios within this run. Both files hold the same NIfTI once
unzipped (checked).

    nice -n 19 python benchmarks/nifti_write.py [--only 3mm|1.5mm|ct-grid] [--rounds 3] [--no-write]
"""
from __future__ import annotations

import argparse
import gzip
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from accuracy import RESULTS, append_results
from realistic_cpu import SHARED, TILED_Z_MM, _at_spacing, _tile_z

SECTION = "## Writing label maps (.nii.gz)"
CASES = {"3mm": ("example_seg.nii.gz", 3.0), "1.5mm": ("example_seg.nii.gz", 1.5),
         "ct-grid": ("example_seg_dicom.nii.gz", None)}  # shared file, isotropic spacing (None: its own grid)


def label_map(name: str):
    """Case ``name``'s shared TotalSegmentator label map as uint16, tiled to whole-body extent in z."""
    import SimpleITK as sitk

    from deepseg.io import volume_from_sitk

    file, spacing = CASES[name]
    seg = sitk.Cast(sitk.ReadImage(str(SHARED / file)), sitk.sitkUInt16)
    if spacing is not None:
        seg = _at_spacing(seg, spacing, True, smooth=True)
    return volume_from_sitk(_tile_z(seg, int(round(TILED_Z_MM / seg.GetSpacing()[2]))))


def write_deepseg(volume, path: Path) -> None:
    from deepseg.io import write_volume

    write_volume(volume, path)


def write_sitk(volume, path: Path) -> None:
    """SimpleITK's own compressed NIfTI (what ``write_volume`` calls again since b1b5260)."""
    import SimpleITK as sitk

    from deepseg.io import volume_to_sitk

    sitk.WriteImage(volume_to_sitk(volume), str(path), useCompression=True)


WRITERS: dict[str, Callable] = {"deepseg": write_deepseg, "sitk": write_sitk}


def time_writes(volume, folder: Path, rounds: int) -> dict:
    """Seconds per round and file bytes of each writer, the order alternating between rounds."""
    seconds: dict[str, list[float]] = {name: [] for name in WRITERS}
    for r in range(rounds):
        for name in list(WRITERS)[:: 1 if r % 2 == 0 else -1]:
            path = folder / f"{name}.nii.gz"
            path.unlink(missing_ok=True)
            t0 = time.perf_counter()
            WRITERS[name](volume, path)
            seconds[name].append(time.perf_counter() - t0)
    unzipped = {name: gzip.decompress((folder / f"{name}.nii.gz").read_bytes()) for name in WRITERS}
    if unzipped["deepseg"] != unzipped["sitk"]:
        raise RuntimeError("the two writers' files differ once unzipped")
    return {"seconds": seconds, "bytes": {name: (folder / f"{name}.nii.gz").stat().st_size for name in WRITERS},
            "raw_bytes": len(unzipped["sitk"])}


def markdown(rows: list[tuple[str, object, dict]], command: str, load: tuple[float, float]) -> str:
    import SimpleITK as sitk

    lines = [f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Command: `{command}`; load average (1 min) {load[0]:.1f} at start, {load[1]:.1f} at end; "
             f"seconds are medians of {len(rows[0][2]['seconds']['sitk'])} rounds. SimpleITK "
             f"{sitk.Version_VersionString()}.", "",
             "| label map | NIfTI unzipped (MB) | deepseg `write_volume`: s (rounds), MB | SimpleITK "
             "`WriteImage(useCompression=True)`: s (rounds), MB | size ratio (deepseg / SimpleITK) | "
             "time ratio (SimpleITK / deepseg) |",
             "|---|---|---|---|---|---|"]
    for name, volume, r in rows:
        med = {w: statistics.median(s) for w, s in r["seconds"].items()}
        cells = [f"{med[w]:.2f} ({', '.join(f'{s:.2f}' for s in r['seconds'][w])}), {r['bytes'][w] / 1e6:.2f}"
                 for w in WRITERS]
        size = "x".join(str(n) for n in volume.size_ijk)
        lines.append(f"| {name} ({size}) | {r['raw_bytes'] / 1e6:.1f} | "
                     f"{cells[0]} | {cells[1]} | {r['bytes']['deepseg'] / r['bytes']['sitk']:.2f} | "
                     f"{med['sitk'] / med['deepseg']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print without touching RESULTS.md")
    args = parser.parse_args(argv)
    missing = sorted({file for file, _ in CASES.values() if not (SHARED / file).is_file()})
    if missing:
        print(f"skipped: needs the shared TotalSegmentator label maps {', '.join(missing)} in {SHARED} "
              "(set DEEPSEG_SHARED)", file=sys.stderr)
        return 0
    niceness = os.nice(0)
    command = (f"nice -n {niceness} " if niceness else "") + "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/nifti_write.py", *(argv or sys.argv[1:])])
    load_start = os.getloadavg()[0]
    rows = []
    for name in CASES:
        if args.only not in (None, name):
            continue
        volume = label_map(name)
        with tempfile.TemporaryDirectory(prefix="nifti_write-") as tmp:
            rows.append((name, volume, time_writes(volume, Path(tmp), args.rounds)))
        print(f"{name} done", file=sys.stderr, flush=True)
    text = markdown(rows, command, (load_start, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        append_results(text, RESULTS, section=SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
