"""The MRML bridge: Slicer nodes <-> DeepSeg core objects, with exact geometry and terminology.

* ``volume_from_node`` / ``volume_to_node``: scalar volume node <-> ``Volume`` (LPS core, RAS in
  Slicer; the IJK-to-RAS matrix round-trips exactly, oblique and anisotropic grids included);
* ``labels_to_segmentation``: a label map + ``LabelInfo`` list -> segmentation node whose segments
  share one labelmap layer and keep the catalog's names, colours, label values and SNOMED CT
  terminology (the same entries ``deepseg.export.seg_nrrd`` writes), placed next to the source in
  the subject hierarchy with its reference geometry set (so DICOM SEG export works);
* ``segmentation_to_labels``: the reverse, for measuring or explaining an existing segmentation;
* ``heatmap_to_node`` / ``show_overlay`` / ``threshold_to_segment``: explanation maps as
  coloured foreground overlays and back into segments;
* ``table_from_rows`` / ``write_table_csv``: measurement rows -> table node -> CSV.

One module per kind of node (``geometry``, ``volumes``, ``segmentations``, ``overlays``,
``tables``); callers use ``mrml.<function>``. Uses only Slicer's MRML/VTK API (available in Slicer
and in the ``slicer-core`` wheel); no Qt.
"""
from __future__ import annotations

from .geometry import (
    LPS_TO_RAS, from_vtk_matrix, ijk_to_ras, node_to_world, roi_corners_lps, to_vtk_matrix,
    volume_from_ijk_to_ras,
)
from .volumes import (
    load_volume_file, oriented_image, place_next_to, save_node, volume_from_node, volume_from_oriented_image,
    volume_to_node,
)
from .segmentations import (
    BINARY_LABELMAP, TG263_TAG, label_from_segment, labels_to_segmentation, segmentation_to_labels,
    terminology_entry, threshold_to_segment,
)
from .overlays import find_color_node, heat_color_node, heatmap_to_node, set_overlay_threshold, show_overlay
from .tables import table_from_rows, write_table_csv

__all__ = [
    "BINARY_LABELMAP", "LPS_TO_RAS", "TG263_TAG", "find_color_node", "from_vtk_matrix", "heat_color_node",
    "heatmap_to_node", "ijk_to_ras", "label_from_segment", "labels_to_segmentation", "load_volume_file",
    "node_to_world", "oriented_image", "place_next_to", "roi_corners_lps", "save_node",
    "segmentation_to_labels", "set_overlay_threshold", "show_overlay", "table_from_rows", "terminology_entry",
    "threshold_to_segment", "to_vtk_matrix", "volume_from_ijk_to_ras", "volume_from_node",
    "volume_from_oriented_image", "volume_to_node", "write_table_csv",
]
