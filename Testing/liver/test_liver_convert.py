"""Conversion of the pyliverlesionseg Keras weights: the PyTorch networks must reproduce an independent
NumPy evaluation of the Keras layers (keras_reference.py) on fixed inputs."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from deepseg.errors import ModelError
from deepseg.models.liver_convert import ARCHITECTURES, convert_keras_h5, read_keras_h5
from deepseg.models.networks.liver_unet import LiverUNet, output_size

from keras_reference import LESION_KERAS, LIVER_KERAS, keras_forward


def _fixed_input(shape_xyz, seed):
    """A smooth, CT-like input in the networks' [-0.5, 0.5] range (Keras x, y, z order)."""
    rng = np.random.default_rng(seed)
    return np.clip(gaussian_filter(rng.normal(size=shape_xyz), 2) * 5, -0.5, 0.5).astype(np.float32)


def _torch_forward(state, kind, image_xyz):
    net = LiverUNet(ARCHITECTURES[kind]).eval()
    net.load_state_dict(state)
    x = torch.from_numpy(np.ascontiguousarray(image_xyz.transpose(2, 1, 0)))[None, None]
    with torch.inference_mode():
        return net(x)[0, 0].numpy().transpose(2, 1, 0)


@pytest.mark.parametrize("which, keras, shape_xyz", [
    ("liver", LIVER_KERAS, (54, 54, 81)),    # same convolutions, linear up-sampling: output 28 x 28 x 55
    ("lesion", LESION_KERAS, (92, 100, 46)),  # valid convolutions, residual blocks: output 4 x 12 x 2
])
def test_converted_network_reproduces_keras(which, keras, shape_xyz, liver_h5, lesion_h5):
    h5 = liver_h5 if which == "liver" else lesion_h5
    kind, state, voxel_size = read_keras_h5(h5)
    assert kind == which
    image = _fixed_input(shape_xyz, seed=0)
    reference = keras_forward(h5, image, **keras)
    ours = _torch_forward(state, kind, image)
    assert ours.shape == reference.shape
    assert ours.shape == output_size(ARCHITECTURES[kind], shape_xyz[::-1])[::-1]
    assert reference.std() > 0.5  # the fixed input gives non-trivial logits
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())


def test_training_spacings_are_read_from_the_files(liver_h5, lesion_h5):
    assert read_keras_h5(liver_h5)[2] == [3.0, 3.0, 3.0]
    assert read_keras_h5(lesion_h5)[2] == [1.0, 1.0, 3.0]


def test_converted_folder_card_and_weights(liver_lesion_folder):
    card = json.loads((liver_lesion_folder / "deepseg-card.json").read_text())
    assert card["format"] == "pyliverlesionseg"
    assert [(lab["value"], lab["type"]["value"]) for lab in card["labels"]] == [(1, "10200004"), (2, "52988006")]
    assert set(card["architecture"]) == {"liver", "lesion"}
    from deepseg.models.loaders import load_model

    model = load_model(liver_lesion_folder)
    assert [s.name for s in model.stages] == ["liver", "lesion"] and model.window.output_margin == (13, 13, 13)
    assert model.lesion.window.output_margin == (22, 44, 44)


def test_patch_sizes_match_the_original(liver_h5):
    for arch in ARCHITECTURES.values():
        assert output_size(arch, arch["patch_size"]) == tuple(arch["output_size"])
    with pytest.raises(ValueError):
        output_size(ARCHITECTURES["liver"], (100, 100, 100))  # not divisible by the 27x pooling


def test_wrong_files_are_refused(tmp_path, lesion_h5):
    with pytest.raises(ModelError, match="not a readable"):
        convert_keras_h5(tmp_path / "missing.h5", tmp_path / "out")
    with pytest.raises(ModelError, match="is the lesion network"):
        convert_keras_h5(lesion_h5, tmp_path / "out")
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["layer_names"] = [b"conv3d_1"]
        g = f.create_group("conv3d_1")
        g.attrs["weight_names"] = [b"conv3d_1/kernel:0", b"conv3d_1/bias:0"]
        g.create_dataset("conv3d_1/kernel:0", data=np.zeros((3, 3, 3, 1, 8)))
        g.create_dataset("conv3d_1/bias:0", data=np.zeros(8))
    with pytest.raises(ModelError, match="match neither"):
        read_keras_h5(bad)


@pytest.mark.parametrize("kind, shape_xyz", [("liver", (54, 54, 81)), ("lesion", (92, 100, 46))])
def test_in_place_inference_path_equals_the_autograd_path(kind, shape_xyz):
    """Inference normalises, activates and adds residuals in place to bound memory; the numbers must be
    exactly those of the autograd path that explanations use."""
    torch.manual_seed(0)
    net = LiverUNet(ARCHITECTURES[kind]).eval()
    x = torch.from_numpy(np.ascontiguousarray(_fixed_input(shape_xyz, seed=1).transpose(2, 1, 0)))[None, None]
    with_grad = net(x)
    assert with_grad.requires_grad
    with torch.inference_mode():
        in_place = net(x)
    assert torch.equal(with_grad.detach(), in_place)
