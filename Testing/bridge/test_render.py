"""A segmentation made by ``deepseg_slicer.mrml`` and drawn by Slicer's own displayable managers in
offscreen views (``deepseg_slicer.offscreen``, trame-slicer, EGL): at each segment's centroid the
slice view shows that segment's colour, and pixels away from every segment show none of them.

Each orientation is drawn in a process of its own (this file run as a script), so a crash of the GL
driver fails one test with its output instead of ending the whole test session (a segmentation fault
in Mesa's llvmpipe was seen once in a full-suite run and never again in 20 reruns); a process killed by
a signal is drawn once more, an assertion is never retried."""
from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("trame_slicer", reason="trame-slicer (offscreen views) is not installed: pip install deepseg[render]")
if ctypes.util.find_library("EGL") is None and not os.environ.get("DISPLAY"):
    pytest.skip("no libEGL and no X display for VTK's offscreen window (apt-get install libegl1 libegl-mesa0)",
                allow_module_level=True)

from deepseg.models.card import LabelInfo  # noqa: E402
from deepseg.volume import Volume  # noqa: E402
from deepseg_slicer import mrml  # noqa: E402

LABELS = [LabelInfo(1, "Liver", (221, 130, 101)), LabelInfo(2, "Spleen", (157, 108, 162)),
          LabelInfo(5, "Lesion", (40, 200, 60))]


def _ball(shape, center_ijk, radius):
    """Ellipsoid mask on a [k, j, i] array (flattened along k, whose spacing is twice as large)."""
    k, j, i = np.indices(shape)
    return (i - center_ijk[0]) ** 2 + (j - center_ijk[1]) ** 2 + ((k - center_ijk[2]) * 2.0) ** 2 <= radius ** 2


@pytest.mark.parametrize("orientation", ["Axial", "Coronal"])
def test_segment_colours_at_centroids_and_not_in_background(orientation):
    for _ in range(2):
        run = subprocess.run([sys.executable, __file__, orientation], capture_output=True, text=True, timeout=400)
        if run.returncode >= 0:  # finished (passed or failed an assertion): never retried
            break
    assert run.returncode == 0, f"rendering check failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr[-4000:]}"


def check_colours(orientation: str) -> None:
    """Draw the segmentation in one slice view and check the colours (raises AssertionError)."""
    from deepseg_slicer.offscreen import OffscreenViews

    views = OffscreenViews()
    shape = (24, 56, 64)  # [k, j, i]
    a = np.deg2rad(15)  # oblique grid, anisotropic spacing: the view has to resample
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    image = Volume(np.full(shape, -1000.0, np.float32), spacing=(1.2, 1.0, 2.5), origin=(30.0, -20.0, 5.0),
                   direction=direction, name="ct")
    arr = np.zeros(shape, np.uint8)
    arr[_ball(shape, (18, 20, 12), 9)] = 1
    arr[_ball(shape, (45, 18, 12), 7)] = 2
    arr[_ball(shape, (30, 40, 12), 6)] = 5
    image_node = mrml.volume_to_node(image, views.scene, name="ct")
    node = mrml.labels_to_segmentation(image.with_array(arr), LABELS, views.scene, source_node=image_node)
    display = node.GetDisplayNode()
    display.SetOpacity2DFill(1.0)  # Slicer's default fill is half transparent; opaque shows the colour itself
    display.SetVisibility2DOutline(False)
    views.show_volume(image_node)
    to_ras = mrml.ijk_to_ras(image)
    for lab in LABELS:
        ijk = np.argwhere(arr == lab.value).mean(axis=0)[::-1]
        ras = (to_ras @ np.append(ijk, 1.0))[:3]
        pixels = views.slice_image(orientation, size=(480, 400), center_ras=tuple(ras))
        assert pixels.shape == (400, 480, 3)
        row, col = views.ras_to_pixel(orientation, tuple(ras))
        assert 0 <= row < 400 and 0 <= col < 480, "centroid outside the view"
        centre = pixels[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3).astype(int)
        np.testing.assert_allclose(centre, np.tile(lab.color, (9, 1)), atol=3,
                                   err_msg=f"{lab.name} at {orientation} pixel {(row, col)}")
        # in-plane points inside the image, two voxels or more from every segment: no segment colour
        normal = {"Axial": 2, "Coronal": 1}[orientation]
        far = ~ndimage.binary_dilation(arr > 0, iterations=2)
        checked = 0
        for kji in np.argwhere(far)[::97]:
            point = (to_ras @ np.append(kji[::-1], 1.0))[:3]
            point[normal] = ras[normal]
            voxel = np.round(np.linalg.solve(to_ras, np.append(point, 1.0))[2::-1]).astype(int)  # k, j, i
            if np.all((voxel >= 0) & (voxel < shape)) and far[tuple(voxel)]:
                row, col = views.ras_to_pixel(orientation, tuple(point))
                if 0 <= row < 400 and 0 <= col < 480:
                    colour = pixels[row, col].astype(int)
                    assert all(np.abs(colour - other.color).sum() > 60 for other in LABELS), (point, colour)
                    checked += 1
        assert checked > 20, "too few background pixels checked"
        share = np.mean(np.abs(pixels.astype(int) - lab.color).sum(axis=2) <= 6)
        assert 0.002 < share < 0.5, f"{lab.name} covers {share:.3%} of the view"


if __name__ == "__main__":
    check_colours(sys.argv[1])
