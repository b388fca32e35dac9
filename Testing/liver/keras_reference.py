"""An independent NumPy evaluator of the two pyliverlesionseg Keras models, for the conversion test.

It follows ``create_unet_like_model`` (pyliverlesionseg/architectures/unet_generalized.py) layer by
layer in Keras' own conventions — channels-last ``(x, y, z, c)`` arrays, kernels used exactly as stored
in the HDF5 file ``(kx, ky, kz, in, out)``, Conv3D layers fetched by the names Keras gives them in
creation order (``conv3d_1``, ``conv3d_2``, ...) — and shares no code with DeepSeg's PyTorch network.
"""
from __future__ import annotations

import itertools

import h5py
import numpy as np

EPS = 1e-7


class _Weights:
    def __init__(self, path):
        self.f = h5py.File(path, "r")
        self.n = 0

    def next(self):
        self.n += 1
        g = self.f[f"conv3d_{self.n}"][f"conv3d_{self.n}"]
        return np.asarray(g["kernel:0"], np.float32), np.asarray(g["bias:0"], np.float32)


def conv3d(x, kernel, bias, padding):
    """Keras Conv3D (cross-correlation) on one ``(x, y, z, c)`` sample, by explicit patch sums."""
    k = kernel.shape[:3]
    if padding == "same":
        x = np.pad(x, [((s - 1) // 2, (s - 1) // 2) for s in k] + [(0, 0)])
    out_shape = [x.shape[d] - k[d] + 1 for d in range(3)]
    out = np.zeros(out_shape + [kernel.shape[-1]])
    for a, b, c in itertools.product(range(k[0]), range(k[1]), range(k[2])):
        window = x[a:a + out_shape[0], b:b + out_shape[1], c:c + out_shape[2]]
        out += window @ kernel[a, b, c]
    return out + bias


def instance_norm(x):
    return (x - x.mean(axis=(0, 1, 2), keepdims=True)) / (x.std(axis=(0, 1, 2), keepdims=True) + EPS)


def lrelu(x):
    return np.where(x > 0, x, np.float32(0.01) * x)


def maxpool(x, s):
    n = [d // s for d in x.shape[:3]]
    x = x[:n[0] * s, :n[1] * s, :n[2] * s]
    return x.reshape(n[0], s, n[1], s, n[2], s, -1).max(axis=(1, 3, 5))


def crop_to(x, shape):
    c = [(a - b) // 2 for a, b in zip(x.shape[:3], shape[:3])]
    return x[c[0]:c[0] + shape[0], c[1]:c[1] + shape[1], c[2]:c[2] + shape[2]]


def upsample(x, s, mode):
    for d in range(3):
        x = np.repeat(x, s, axis=d)
    if mode == "linear":  # UpSampling3D followed by AveragePooling3D(s, strides=1, 'valid')
        n = [d - s + 1 for d in x.shape[:3]]
        x = sum(x[a:a + n[0], b:b + n[1], c:c + n[2]]
                for a, b, c in itertools.product(range(s), repeat=3)) / s ** 3
    return x


def keras_forward(h5_path, image_xyz, factors, left_kernels, right_kernels, padding, upsampling, residual):
    """Logit ``(x, y, z)`` of the Keras model (before its final sigmoid) for a single-channel ``(x, y, z)`` image."""
    w = _Weights(h5_path)
    path = image_xyz[..., None].astype(np.float32)
    lefts = []
    prev = 1
    for i, f in enumerate(factors):  # downwards (pathway i == Keras i + 1)
        if f // prev > 1:
            path = maxpool(path, f // prev)
        prev = f
        shortcut = path
        for j, _ in enumerate(left_kernels[i]):
            if i > 0 or j > 0:
                path = lrelu(instance_norm(path))
            path = conv3d(path, *w.next(), padding)
        if residual:
            s = crop_to(shortcut, path.shape)
            if s.shape[-1] != path.shape[-1]:
                s = conv3d(s, *w.next(), padding)
            path = path + s
        lefts.append(path)
    for i in reversed(range(len(factors))):  # upwards
        if i < len(factors) - 1:
            path = np.concatenate([crop_to(lefts[i], path.shape), path], axis=-1)
            shortcut = path
            for _ in right_kernels[i]:
                path = conv3d(lrelu(instance_norm(path)), *w.next(), padding)
            if residual:
                s = crop_to(shortcut, path.shape)
                if s.shape[-1] != path.shape[-1]:
                    s = conv3d(s, *w.next(), padding)
                path = path + s
        if i > 0:
            path = upsample(path, factors[i] // factors[i - 1], upsampling)
    return conv3d(lrelu(instance_norm(path)), *w.next(), padding)[..., 0]


LIVER_KERAS = dict(factors=[1, 3, 9, 27], left_kernels=[[0, 0]] * 4, right_kernels=[[0, 0]] * 3 + [[]],
                   padding="same", upsampling="linear", residual=False)
LESION_KERAS = dict(factors=[1, 2, 4, 8], left_kernels=[[0, 0]] * 4, right_kernels=[[0, 0]] * 3 + [[]],
                    padding="valid", upsampling="copy", residual=True)
