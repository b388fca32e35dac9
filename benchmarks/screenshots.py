"""Regenerate the README / extension-catalogue screenshots in Resources/Screenshots/.

Every picture of a view is drawn by Slicer's own displayable managers (slicer-core) in offscreen
trame-slicer views (``deepseg_slicer.offscreen``; EGL, no X server), from nodes that DeepSeg's bridge
and module logics made:

* ``oar_axial.png``, ``oar_coronal.png``, ``oar_3d.png``: TotalSegmentator's example abdominal CT
  (3 mm) with its reference label map (41 structures, TotalSegmentator's own output) turned into a
  segmentation by ``mrml.labels_to_segmentation`` (names, distinct colours, terminology);
* ``explain_gradcam.png`` / ``explain_uncertainty.png``: ``deepseg explain`` (Grad-CAM, entropy
  uncertainty) of the brainchop MeshNet ``model18cls`` for the hippocampus on a 96^3 crop of
  ``norm.mgz``, shown as DeepSegExplain's logic shows them (colour map, opacity, threshold) over the
  T1, with the predicted hippocampus outlined;
* ``volumetry_table.png``: the table node DeepSegVolumetry's logic fills for six organs of the CT,
  drawn with matplotlib (Slicer's table view is a Qt widget, not a displayable manager).

The model runs (about 20 min on 2 shared cores) are cached in ``--work``.  The module panels are Qt
widgets and cannot be drawn without Slicer's application.

    python benchmarks/screenshots.py [--shared ../shared] [--work /tmp/deepseg-screenshots]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "Resources" / "Screenshots"
EXTENSION = ROOT / "DeepSegExtension"
ORGANS = ["liver", "spleen", "kidney_right", "kidney_left", "stomach", "pancreas"]
SIZE = (640, 560)
TABLE_COLUMNS = ["Segment", "Volume [mL]", "Surface area [mm2]", "Sphericity", "Maximum 3D diameter [mm]",
                 "Intensity mean [HU]", "Intensity sd [HU]"]


def module_logic(module: str, scene):
    """A DeepSeg module's logic class on ``scene`` (the module folder on sys.path, as Slicer does)."""
    import importlib

    sys.path.insert(0, str(EXTENSION / module))
    return getattr(importlib.import_module(f"{module}Lib.Logic"), f"{module}Logic")(scene)


def explain_maps(shared: Path, work: Path) -> dict[str, Path]:
    """Crop of norm.mgz, model18cls segmentation, Grad-CAM and uncertainty maps (computed once)."""
    from deepseg.io import read_volume, write_volume
    from deepseg.volume import Volume

    work.mkdir(parents=True, exist_ok=True)
    files = {"image": work / "norm_crop.nii.gz", "segmentation": work / "brain.seg.nrrd",
             "heatmap": work / "hippocampus_gradcam.nii.gz", "uncertainty": work / "hippocampus_uncertainty.nii.gz"}
    model = str(shared / "models" / "brainchop" / "model18cls")
    if not files["image"].exists():
        v = read_volume(shared / "data" / "niivue" / "norm.mgz")
        origin = v.ijk_to_lps() @ np.array([80, 80, 80, 1.0])
        write_volume(Volume(v.array[80:176, 80:176, 80:176].copy(), v.spacing, tuple(origin[:3]), v.direction),
                     files["image"])
    cli = [sys.executable, "-m", "deepseg"]
    if not files["segmentation"].exists():
        subprocess.run(cli + ["segment", "--model", model, "--input", str(files["image"]),
                              "--output", str(files["segmentation"]), "--progress", "none"], check=True)
    if not files["heatmap"].exists():
        subprocess.run(cli + ["explain", "--model", model, "--input", str(files["image"]), "--segment", "Hippocampus",
                              "--output", str(files["heatmap"]), "--uncertainty", str(files["uncertainty"]),
                              "--progress", "none"], check=True)
    return files


def oar_pictures(views, shared: Path) -> dict[str, np.ndarray]:
    from deepseg.measure.segfile import read_segmentation
    from deepseg_slicer import mrml

    ts = shared / "data" / "totalseg"
    ct = mrml.load_volume_file(ts / "example_ct_sm.nii.gz", views.scene, name="Abdomen CT")
    labels, info = read_segmentation(ts / "example_seg.nii.gz", ts / "labels_total.json")
    segmentation = mrml.labels_to_segmentation(labels, info, views.scene, source_node=ct, name="Organs")
    segmentation.CreateClosedSurfaceRepresentation()
    views.show_volume(ct)
    liver = next(lab.value for lab in info if lab.name == "liver")
    center = (mrml.ijk_to_ras(labels) @ np.append(np.argwhere(labels.array == liver).mean(axis=0)[::-1], 1.0))[:3]
    pictures = {"oar_axial": views.slice_image("Axial", SIZE, center_ras=tuple(center)),
                "oar_coronal": views.slice_image("Coronal", (SIZE[0], 300), center_ras=tuple(center)),
                "oar_3d": views.threed_image(SIZE)}
    organs = mrml.labels_to_segmentation(labels, info, views.scene, keep=ORGANS, source_node=ct, name="Organs")
    table = module_logic("DeepSegVolumetry", views.scene).measure(organs, ct)
    pictures["volumetry_table"] = table_picture(table)
    for node in (segmentation, organs, table, ct):
        views.scene.RemoveNode(node)
    return pictures


def explain_pictures(views, files: dict[str, Path]) -> dict[str, np.ndarray]:
    from deepseg.export.seg_nrrd import read_seg_nrrd
    from deepseg.io import read_volume
    from deepseg_slicer import mrml

    t1 = mrml.load_volume_file(files["image"], views.scene, name="T1 (norm.mgz crop)")
    labels, info = read_seg_nrrd(files["segmentation"])
    hippocampus = [lab for lab in info if lab.name == "Hippocampus"]
    segmentation = mrml.labels_to_segmentation(labels, hippocampus, views.scene, source_node=t1, name="Hippocampus")
    display = segmentation.GetDisplayNode()
    display.SetVisibility2DFill(False)
    display.SetSliceIntersectionThickness(2)
    logic = module_logic("DeepSegExplain", views.scene)
    center = (mrml.ijk_to_ras(labels) @ np.append(np.argwhere(labels.array == hippocampus[0].value).mean(axis=0)[::-1],
                                                    1.0))[:3]
    pictures = {}
    for key, name, threshold in (("heatmap", "explain_gradcam", 0.3), ("uncertainty", "explain_uncertainty", 0.2)):
        node = mrml.heatmap_to_node(read_volume(files[key]), views.scene, name=key, source_node=t1)
        logic.showOverlay(t1, node, colormap="Inferno", opacity=0.6, threshold=threshold)
        pictures[name] = views.slice_image("Coronal", SIZE, center_ras=tuple(center))
    return pictures


def table_picture(table) -> np.ndarray:
    """The table node's cells (first columns) drawn as a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vtk_table = table.GetTable()
    names = [table.GetColumnName(c) for c in range(vtk_table.GetNumberOfColumns())]
    wanted = [names.index(n) for n in TABLE_COLUMNS if n in names]
    header = [names[c].replace(" [", "\n[") for c in wanted]
    rows = []
    for r in range(vtk_table.GetNumberOfRows()):
        cells = []
        for c in wanted:
            value = vtk_table.GetValue(r, c)
            cells.append(f"{value.ToDouble():.{2 if names[c] == 'Sphericity' else 1}f}" if value.IsNumeric()
                         else value.ToString())
        rows.append(cells)
    fig, ax = plt.subplots(figsize=(SIZE[0] * 1.6 / 100, 0.8 + 0.36 * (len(rows) + 2)), dpi=100)
    ax.axis("off")
    ax.set_title(f"{table.GetName()}  (DeepSegVolumetry, MRML table node)", fontsize=10, loc="left")
    cell = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="right", colLoc="center")
    cell.auto_set_font_size(False)
    cell.set_fontsize(8)
    cell.scale(1, 1.6)
    fig.tight_layout()
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return pixels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--work", type=Path, default=Path("/tmp/deepseg-screenshots"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "totalseg").is_dir():
        raise SystemExit(f"needs the shared data folder (not found: {args.shared})")
    from deepseg_slicer.offscreen import OffscreenViews, save_png

    files = explain_maps(args.shared, args.work)
    views = OffscreenViews()
    pictures = oar_pictures(views, args.shared)
    pictures.update(explain_pictures(views, files))
    for name, pixels in pictures.items():
        path = save_png(pixels, args.out / f"{name}.png")
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {pixels.shape[1]}x{pixels.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
