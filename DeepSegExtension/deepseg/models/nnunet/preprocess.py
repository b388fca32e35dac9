"""nnU-Net v2's preprocessing and export arithmetic, reimplemented to give the same numbers faster.

* ``crop_to_nonzero``: bounding box of the voxels non-zero in any channel (holes filled only when a
  channel needs the mask for its normalisation, since filling never changes the box);
* ``normalize``: per channel, the scheme named in the plans (CT, z-score with or without the
  non-zero mask, none, rescale to [0, 1], RGB);
* ``resample``: nnU-Net's ``resample_data_or_seg_to_shape``, including the *separate-z* rule for
  anisotropic grids (order ``order`` in-plane, ``order_z`` along the low-resolution axis).  Order 0/1
  runs in PyTorch (multi-threaded, what logits need); higher orders use scipy's spline zoom exactly
  as scikit-image's ``resize`` does (edge mode, no anti-aliasing, output clipped to the input range).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ...errors import ModelError
from .plans import Resampling

ANISO_THRESHOLD = 3.0  # nnU-Net: spacing ratio above which an axis is resampled separately


# --- cropping ------------------------------------------------------------------------------------------
def nonzero_bbox(data: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop)]`` per spatial axis of the voxels non-zero in any channel of ``(C, ...)`` data."""
    mask = np.any(data != 0, axis=0)
    box = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != ax)))
        box.append((int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, mask.shape[ax]))
    return box


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """nnU-Net's mask for masked normalisation: non-zero in any channel, holes filled."""
    from scipy.ndimage import binary_fill_holes

    return binary_fill_holes(np.any(data != 0, axis=0))


# --- normalisation -------------------------------------------------------------------------------------
def normalize(image: np.ndarray, scheme: str, use_mask: bool, props: Optional[dict],
              mask: Optional[np.ndarray]) -> np.ndarray:
    """One channel (float32, modified in place) normalised by nnU-Net's ``scheme``."""
    eps = 1e-8
    if scheme == "CTNormalization":
        if not props:
            raise ModelError("The plans ask for CTNormalization but carry no foreground intensity properties.",
                             "The plans file is incomplete; re-export the model.")
        np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
        image -= props["mean"]
        image /= max(props["std"], eps)
    elif scheme == "ZScoreNormalization":
        if use_mask:
            values = image[mask]
            mean, std = values.mean(), values.std()
            image[mask] = (values - mean) / max(std, eps)
        else:
            mean, std = image.mean(), image.std()
            image -= mean
            image /= max(std, eps)
    elif scheme == "RescaleTo01Normalization":
        image -= image.min()
        image /= np.clip(image.max(), a_min=eps, a_max=None)
    elif scheme == "RGBTo01Normalization":
        image /= 255.0
    elif scheme != "NoNormalization":
        raise ModelError(f"The plans use the normalisation scheme {scheme!r}, which DeepSeg does not implement.",
                         "Supported: CTNormalization, ZScoreNormalization, NoNormalization, "
                         "RescaleTo01Normalization, RGBTo01Normalization.")
    return image


# --- resampling ----------------------------------------------------------------------------------------
def new_shape_for(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> list[int]:
    """nnU-Net's ``compute_new_shape``."""
    return [int(round(o / n * s)) for o, n, s in zip(spacing, new_spacing, shape)]


def _lowres_axis(spacing: Sequence[float]) -> Optional[int]:
    axes = np.where(max(spacing) / np.asarray(spacing, float) == 1)[0]
    return int(axes[0]) if len(axes) == 1 else None


def separate_z_axis(force: Optional[bool], spacing: Sequence[float], new_spacing: Sequence[float]) -> Optional[int]:
    """The axis resampled on its own (nnU-Net's ``determine_do_sep_z_and_axis``), or None."""
    if force is not None:
        return _lowres_axis(spacing) if force else None
    for sp in (spacing, new_spacing):
        if max(sp) / min(sp) > ANISO_THRESHOLD:
            return _lowres_axis(sp)
    return None


def _torch_resize(x: torch.Tensor, size: Sequence[int], order: int) -> torch.Tensor:
    """``(N, C, *spatial)`` resized with corner-aligned (``align_corners=False``) linear/nearest sampling,
    which equals scipy's ``zoom(grid_mode=True, mode='nearest')`` for orders 1 and 0."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    if order == 0:
        return torch.nn.functional.interpolate(x, size=size, mode="nearest-exact")
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return torch.nn.functional.interpolate(x, size=size, mode=mode, align_corners=False)


def _scipy_resize(x: np.ndarray, size: Sequence[int], order: int, clip_axis: Optional[int]) -> np.ndarray:
    """scikit-image ``resize(order, mode='edge', anti_aliasing=False)``; clipping to the input range is
    per slice along ``clip_axis`` (nnU-Net resizes those slices one by one), else global."""
    from scipy.ndimage import zoom

    x64 = x.astype(np.float64, copy=False)
    out = zoom(x64, [n / o for n, o in zip(size, x.shape)], order=order, mode="nearest", grid_mode=True)
    if clip_axis is None:
        np.clip(out, x64.min(), x64.max(), out=out)
    else:
        other = tuple(a for a in range(x.ndim) if a != clip_axis)
        shape = [1] * x.ndim
        shape[clip_axis] = -1
        np.clip(out, x64.min(axis=other).reshape(shape), x64.max(axis=other).reshape(shape), out=out)
    return out


def resample(data: "np.ndarray | torch.Tensor", new_shape: Sequence[int], spacing: Sequence[float],
             new_spacing: Sequence[float], how: Resampling) -> "np.ndarray | torch.Tensor":
    """``(C, z, y, x)`` data resampled to ``new_shape`` as nnU-Net's ``resample_data_or_seg_to_shape`` does.

    Tensors in, tensors out (float32); arrays in, float32 arrays out.
    """
    shape = list(data.shape[1:])
    new_shape = [int(s) for s in new_shape]
    if shape == new_shape:
        return data
    axis = separate_z_axis(how.force_separate_z, spacing, new_spacing)
    inplane = list(new_shape)
    if axis is not None:
        inplane[axis] = shape[axis]
    as_tensor = isinstance(data, torch.Tensor)
    if how.order <= 1:
        x = torch.as_tensor(data, dtype=torch.float32)
        if axis is None:
            out = _torch_resize(x[None], new_shape, how.order)[0]
        else:  # in-plane 2D resize of every slice along ``axis``: move it to the batch dimension
            xs = x.movedim(axis + 1, 0)
            out = _torch_resize(xs, [inplane[a] for a in range(3) if a != axis], how.order).movedim(0, axis + 1)
    else:
        x = data.numpy() if as_tensor else np.asarray(data)
        out = torch.from_numpy(np.stack([
            _scipy_resize(c, inplane, how.order, axis).astype(np.float32) for c in x]))
    if axis is not None and new_shape[axis] != shape[axis]:
        out = _resample_axis(out, axis, new_shape[axis], how.order_z)
    return out if as_tensor else out.numpy()


def _resample_axis(x: torch.Tensor, axis: int, n: int, order: int) -> torch.Tensor:
    """Resample the low-resolution ``axis`` of ``(C, z, y, x)`` alone (nnU-Net's ``map_coordinates`` step)."""
    old = x.shape[axis + 1]
    coords = old / n * (np.arange(n) + 0.5) - 0.5
    if order == 0:
        idx = np.clip(np.floor(coords + 0.5), 0, old - 1).astype(np.int64)
        return x.index_select(axis + 1, torch.from_numpy(idx))
    if order == 1:
        c = np.clip(coords, 0, old - 1)
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, old - 1)
        w = torch.from_numpy((c - lo).astype(np.float32))
        shape = [1] * x.ndim
        shape[axis + 1] = -1
        w = w.reshape(shape)
        return x.index_select(axis + 1, torch.from_numpy(lo)) * (1 - w) + \
            x.index_select(axis + 1, torch.from_numpy(hi)) * w
    from scipy.ndimage import zoom

    factors = [1.0] * 3
    factors[axis] = n / old
    return torch.from_numpy(np.stack([zoom(c.astype(np.float64), factors, order=order, mode="nearest",
                                           grid_mode=True).astype(np.float32) for c in x.numpy()]))
