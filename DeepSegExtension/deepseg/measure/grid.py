"""Bring a label map onto another grid (nearest neighbour, optionally through a rigid transform),
so maps from different scans or exports can be compared voxel by voxel."""
from __future__ import annotations

import logging
from typing import Optional

from ..io import resample_onto, volume_to_sitk
from ..volume import Volume

log = logging.getLogger(__name__)


def resample_labels(labels: Volume, target: Volume, transform=None) -> Volume:
    """``labels`` sampled at ``target``'s voxel centres (nearest neighbour; 0 outside).

    ``transform`` (a SimpleITK transform) maps target physical points to ``labels``' physical
    points, as SimpleITK's resampler expects (e.g. the result of ``rigid_register``)."""
    if transform is None and labels.same_grid(target):
        return labels
    return resample_onto(labels, target, nearest=True, transform=transform)


def rigid_register(fixed: Volume, moving: Volume, fixed_mask: Optional[Volume] = None):
    """Rigid (Euler 3D) SimpleITK registration of ``moving`` onto ``fixed`` (Mattes mutual information,
    3-level pyramid); returns the transform mapping fixed points to moving points."""
    import SimpleITK as sitk

    f = sitk.Cast(volume_to_sitk(fixed), sitk.sitkFloat32)
    m = sitk.Cast(volume_to_sitk(moving), sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, seed=1)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(sitk.Cast(volume_to_sitk(fixed_mask), sitk.sitkUInt8))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-4, 200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SetInitialTransform(init, inPlace=False)
    transform = reg.Execute(f, m)
    log.info("Rigid registration: metric %.4f after %d iterations (%s)", reg.GetMetricValue(),
             reg.GetOptimizerIteration(), reg.GetOptimizerStopConditionDescription())
    return transform
