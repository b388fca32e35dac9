"""Attribution maps: they must point at the region a trained model depends on, be computed patch
by patch with the right locality, and survive the model's resampling and axis changes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from explain_helpers import CUE, ArrayModel

from deepseg.errors import InputError
from deepseg.explain import explain, list_layers
from deepseg.explain.grid import region_to_network
from deepseg.explain.layers import decoder_stages, default_layers, probe_layers
from deepseg.volume import Volume


def _mass_fraction(heat: np.ndarray, mask: np.ndarray) -> float:
    return float(heat[mask].sum() / heat.sum())


@pytest.mark.parametrize("method,layer", [("gradcam", None), ("layer-sum", None), ("hirescam", "model.0")])
@pytest.mark.parametrize("moved", [False, True])
def test_maps_put_their_mass_on_the_cue_the_model_depends_on(cue_net, cue_case, method, layer, moved):
    """HiResCAM is exact per layer: after the bottleneck the cue's evidence already sits at the block,
    so it is asked about an encoder layer ("model.0"), where the cue still lies at the cue."""
    vol, block = cue_case
    model = ArrayModel(cue_net, transpose=moved)  # network axes != input axes
    result = explain(model, [vol], "target", method=method, layer=layer, device="cpu")
    heat = result.heatmap.array
    assert result.heatmap.same_grid(vol) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert (result.labels.array == 1).sum() > 0.8 * block.sum()  # the model did find the structure
    cue = np.zeros(heat.shape, bool)
    cue[CUE] = True
    other = ~(cue | block)
    # the cue is 0.9% of the volume and holds no part of the structure, yet the model needs it
    assert heat[cue].mean() > 2.5 * heat[other].mean()
    near = ndimage.binary_dilation(cue | block, iterations=2)  # maps come from coarser layers: allow 2 voxels
    assert _mass_fraction(heat, near) > 0.45 > 4 * near.mean()


@pytest.mark.parametrize("padding", [1, 0])
def test_region_option_and_locality_of_patchwise_maps(padding):
    """A 3-layer conv net: layer "1" feeds two 3x3x3 convs, so HiResCAM of a region must vanish more
    than 2 voxels away, although the volume is covered by many overlapping patches; with valid
    convolutions (padding 0) the layer maps must also be placed at the right offset in each patch."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=padding), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 4, 3, padding=padding), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 2, 3, padding=padding))
    model = ArrayModel(net, patch=(12, 12, 12), margin=3 * (1 - padding))
    vol = Volume(np.random.default_rng(1).normal(size=(30, 28, 26)).astype(np.float32))
    region = np.zeros(vol.shape, bool)
    region[12:16, 10:14, 9:13] = True
    result = explain(model, [vol], 1, method="hirescam", layer="1", region=region, device="cpu")
    heat = result.heatmap.array
    dist = ndimage.distance_transform_cdt(~region, metric="chessboard")
    assert heat[dist > 2].max() == 0
    assert heat[dist <= 2].max() == pytest.approx(1.0)
    assert heat[dist == 2].max() > 0  # the full influence radius is reached, not a shifted or shrunk map
    assert result.info["region"] == "user region" and result.info["layers"] == ["1"]


def test_region_round_trip_through_the_explicit_grid_mapping(cue_case):
    vol, block = cue_case
    model = ArrayModel(torch.nn.Conv3d(1, 2, 1), downsample=True, transpose=True, pad=2)
    prepared = model.prepare([vol])
    net_mask = region_to_network(model, prepared, block)
    assert net_mask.shape == prepared.image.shape[1:] and 0 < net_mask.sum() < block.sum()
    back = model.to_input_grid(net_mask[None].astype(np.float32), prepared)[0] >= 0.5
    # every network voxel the region touches comes back: the region plus at most one coarse voxel around it
    assert back[block].all()
    assert not (back & ~ndimage.binary_dilation(block, iterations=2)).any()


def test_layer_listing_and_defaults_per_architecture():
    from monai.networks.nets import VNet

    vnet = VNet(spatial_dims=3, in_channels=1, out_channels=3).eval()
    layers, out_shape = probe_layers(vnet, (16, 16, 16), 1)
    names = [lay.name for lay in layers]
    assert "out_tr" not in names and tuple(out_shape) == (1, 3, 16, 16, 16)
    assert decoder_stages(vnet, layers) == ["up_tr256", "up_tr128", "up_tr64", "up_tr32"]
    assert default_layers(vnet, layers, "gradcam") == ["up_tr32"]

    from deepseg.models.networks.meshnet import MeshNet

    mesh = MeshNet(torch.nn.Conv3d(1, 5, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(5, 5, 3, padding=2, dilation=2),
                   torch.nn.ReLU(), torch.nn.Conv3d(5, 3, 1)).eval()
    layers, _ = probe_layers(mesh, (8, 8, 8), 1)
    assert decoder_stages(mesh, layers) == ["1", "3"]
    assert "4" not in [lay.name for lay in layers]  # the classifier (network output) is no valid layer


def test_nnunet_plain_conv_unet_defaults():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    net = PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv3d, 3, (1, 2, 2), (1, 1, 1), 2, (1, 1), True,
                        torch.nn.InstanceNorm3d, {"affine": True}, None, None, torch.nn.LeakyReLU,
                        {"inplace": True}, deep_supervision=False).eval()
    layers, _ = probe_layers(net, (16, 16, 16), 1)
    assert decoder_stages(net, layers) == ["decoder.stages.0", "decoder.stages.1"]
    assert default_layers(net, layers, "hirescam") == ["decoder.stages.1"]


def test_unknown_layer_error_lists_valid_names(cue_net, cue_case):
    vol, _ = cue_case
    model = ArrayModel(cue_net)
    valid = [lay.name for lay in list_layers(model)]
    with pytest.raises(InputError) as err:
        explain(model, [vol], "target", layer="no.such.layer", device="cpu")
    assert "no.such.layer" in str(err.value) and valid[-1] in str(err.value)


def test_nothing_predicted_is_a_clear_error(cue_case):
    net = torch.nn.Conv3d(1, 2, 1)
    with torch.no_grad():  # always background
        net.weight.zero_()
        net.bias.copy_(torch.tensor([5.0, -5.0]))
    with pytest.raises(InputError, match="predicted no 'target'"):
        explain(ArrayModel(net), [cue_case[0]], "target", device="cpu")


def test_halo_tiles_give_the_whole_window_map_exactly():
    """Tile-exact whole-volume networks (MeshNet) are explained on small tiles with a halo of their
    receptive radius; HiResCAM is additive, so the tiled map must equal the whole-window one."""
    from deepseg.explain.api import MAX_PATCH_VOXELS, explain_window
    from deepseg.explain.cam import cam_network_space

    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 4, 3, padding=2, dilation=2), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 2, 3, padding=1))
    big = round(MAX_PATCH_VOXELS ** (1 / 3)) + 8
    model = ArrayModel(net, patch=(big,) * 3, overlap=0.0)
    model.window.blend = "constant"
    model.halo = 4  # receptive radius: 1 + 2 + 1
    tiled = explain_window(model)
    assert tiled.output_margin == (4, 4, 4) and np.prod(tiled.patch_size) < np.prod(model.window.patch_size)
    image = np.random.default_rng(5).normal(size=(1, 70, 50, 44)).astype(np.float32)
    region = np.zeros(image.shape[1:], bool)
    region[30:52, 20:31, 10:30] = True  # spans several 32^3 tiles
    whole = cam_network_space(model.fold_networks(), image, model.window, 1, 2, region, ["1"], "hirescam", device="cpu")
    parts = cam_network_space(model.fold_networks(), image, tiled, 1, 2, region, ["1"], "hirescam", device="cpu")
    assert whole.max() > 0 and np.allclose(parts, whole, rtol=1e-4, atol=1e-6 * whole.max())
