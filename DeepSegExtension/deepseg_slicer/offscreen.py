"""Pictures of an MRML scene drawn by Slicer's own displayable managers (the ``slicer-core`` wheel)
in offscreen views made by ``trame-slicer``: no Slicer application and no X server (VTK renders
through EGL, e.g. Mesa llvmpipe, or OSMesa).  Used for the README screenshots
(``benchmarks/screenshots.py``) and the render test; needs ``pip install deepseg[render]``.

``OffscreenViews().scene`` is set up as Slicer's application sets up its scene (colour tables,
segmentation, terminology, volumes and subject-hierarchy logics), so the module logics and
``deepseg_slicer.mrml`` work on it unchanged.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

ORIENTATIONS = {"Axial": "axial_view", "Coronal": "coronal_view", "Sagittal": "sagittal_view"}


class OffscreenViews:
    """A Slicer-like scene with offscreen slice views (one per orientation) and one 3D view."""

    def __init__(self) -> None:
        # VTK otherwise tries an X display first and warns when there is none
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        from trame_slicer.core import SlicerApp
        from trame_slicer.views import DirectViewFactory

        self.app = SlicerApp()
        self.app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
        self.scene = self.app.scene
        self._views: dict[str, object] = {}

    def view(self, name: str):
        """The slice view of orientation ``name`` ("Axial", "Coronal", "Sagittal") or the 3D view ("3D")."""
        if name not in self._views:
            from trame_slicer.views import ViewLayoutDefinition

            layout = (ViewLayoutDefinition.threed_view() if name == "3D"
                      else getattr(ViewLayoutDefinition, ORIENTATIONS[name])())
            self._views[name] = self.app.view_manager.create_view(layout)
        return self._views[name]

    def show_volume(self, background, foreground=None, foreground_opacity: float = 0.5) -> None:
        """Background (and foreground) volume of every slice view, as Slicer's slice composite nodes hold them."""
        from deepseg_slicer import mrml

        for name in ORIENTATIONS:
            self.view(name)
        mrml.show_overlay(self.scene, background, foreground, foreground_opacity)

    def slice_image(self, orientation: str, size: tuple[int, int] = (600, 600),
                    center_ras: Optional[tuple[float, float, float]] = None, fit: bool = True) -> np.ndarray:
        """RGB picture (rows top-down) of one slice view; ``center_ras`` picks the slice through that
        point (else the middle of the content)."""
        view = self.view(orientation)
        view.render_window().SetSize(*size)
        view.render()
        if fit:
            view.fit_view_to_content()
        if center_ras is not None:
            view.get_view_node().JumpSliceByOffsetting(*center_ras)
        return self._grab(view)

    def ras_to_pixel(self, orientation: str, ras: tuple[float, float, float]) -> tuple[int, int]:
        """(row, column) of a RAS point in the last ``slice_image`` of that view (Slicer's XYToRAS inverted)."""
        import vtk

        view = self.view(orientation)
        inverse = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(view.get_view_node().GetXYToRAS(), inverse)
        x, y, _, _ = inverse.MultiplyPoint((*ras, 1.0))
        height = view.render_window().GetSize()[1]
        return height - 1 - int(round(y)), int(round(x))

    def threed_image(self, size: tuple[int, int] = (600, 600), azimuth: float = 30.0,
                     elevation: float = 15.0) -> np.ndarray:
        """RGB picture of the 3D view, seen from the front (anterior), turned by azimuth/elevation degrees."""
        from trame_slicer.views import ViewDirection

        view = self.view("3D")
        view.render_window().SetSize(*size)
        view.rotate_to_view_direction(ViewDirection.ANTERIOR)
        view.fit_view_to_content()
        camera = view.renderer().GetActiveCamera()
        camera.Azimuth(azimuth)
        camera.Elevation(elevation)
        camera.OrthogonalizeViewUp()
        view.renderer().ResetCameraClippingRange()
        return self._grab(view)

    @staticmethod
    def _grab(view) -> np.ndarray:
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        view.render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(view.render_window())
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
        return np.ascontiguousarray(pixels[::-1, :, :3])


def save_png(pixels: np.ndarray, path: "str | Path") -> Path:
    """Write an RGB array as PNG (Pillow)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, optimize=True)
    return path
