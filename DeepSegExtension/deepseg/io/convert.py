"""Volume <-> SimpleITK image, with the geometry (spacing, origin, direction; LPS) carried exactly."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..volume import Volume


def volume_from_sitk(image, name: str = "") -> Volume:
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise InputError(f"Image {name!r} has {image.GetDimension()} dimensions; a 3D volume is required.",
                         "Give a 3D volume (a 4D/time series must be split into 3D volumes first).")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"Image {name!r} has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                         "(colour or vector image).", "Give a scalar (grey-level) volume.")
    return Volume(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(),
                  np.asarray(image.GetDirection()).reshape(3, 3), name=name)


def volume_to_sitk(volume: Volume):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image
