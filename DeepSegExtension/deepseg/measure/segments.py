"""Walk the segments of a label map once: voxel counts and bounding boxes for all labels in one
vectorised pass (``np.bincount`` + ``scipy.ndimage.find_objects``), then each segment as a small
boolean crop, so per-segment work costs the segment's bounding box, not the whole volume."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
from scipy.ndimage import find_objects

from ..errors import InputError
from ..models.card import LabelInfo
from ..progress import Progress
from ..volume import Volume


@dataclass
class SegmentCrop:
    """One segment: its label, a boolean mask of its (1-voxel padded) bounding box, and where that
    box sits in the label map (``offset`` = (k, j, i) of the crop's first voxel)."""

    label: LabelInfo
    mask: np.ndarray
    offset: tuple[int, int, int]
    voxel_count: int

    def indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k, j, i) indices of the segment's voxels in the full label map."""
        k, j, i = np.nonzero(self.mask)
        return k + self.offset[0], j + self.offset[1], i + self.offset[2]


def label_array(labels: Volume) -> np.ndarray:
    """The label map as a non-negative integer array; clear error for anything else."""
    arr = labels.array
    if arr.ndim != 3:
        raise InputError(f"The segmentation has {arr.ndim} dimensions; a 3D label map is required.",
                         "Give a 3D label map (one integer label per voxel).")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.mod(arr, 1) == 0):
            raise InputError("The segmentation has non-integer voxel values; it is not a label map.",
                             "Give a label map (integer labels), not a probability or intensity image.")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise InputError("The segmentation has negative labels.", "Labels must be 0 (background) or positive.")
    return arr


def default_labels(values: Sequence[int]) -> list[LabelInfo]:
    """Names for a label map that came without any ("Segment_5" for value 5, Slicer's style)."""
    return [LabelInfo(int(v), f"Segment_{int(v)}") for v in values if int(v) != 0]


def present_values(labels: Volume) -> list[int]:
    """Non-zero label values that occur in the map."""
    counts = np.bincount(label_array(labels).ravel())
    return [int(v) for v in np.nonzero(counts)[0] if v != 0]


def iter_segments(labels: Volume, label_info: Optional[Sequence[LabelInfo]] = None,
                  progress: Optional[Progress] = None) -> Iterator[SegmentCrop]:
    """Yield every segment of ``label_info`` (all present values when None) as a padded crop.

    Segments listed but absent from the map are yielded with an empty mask (count 0), so tables
    always list every named structure."""
    arr = label_array(labels)
    counts = np.bincount(arr.ravel())
    if label_info is None:
        label_info = default_labels(np.nonzero(counts)[0])
    boxes = find_objects(arr)
    total = len(label_info)
    for n, lab in enumerate(label_info):
        if progress is not None:
            progress.step(n, total)
        v = int(lab.value)
        box = boxes[v - 1] if 0 < v <= len(boxes) else None
        if box is None:
            yield SegmentCrop(lab, np.zeros((1, 1, 1), bool), (0, 0, 0), 0)
            continue
        padded = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n_)) for s, n_ in zip(box, arr.shape))
        mask = np.pad(arr[padded] == v, [(int(s.start == 0), int(s.stop == n_)) for s, n_ in zip(box, arr.shape)])
        offset = tuple(p.start - int(s.start == 0) for p, s in zip(padded, box))
        yield SegmentCrop(lab, mask, offset, int(counts[v]))
    if progress is not None:
        progress.step(total, total)
