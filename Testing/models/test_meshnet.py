"""Brainchop MeshNet support: TensorFlow.js reader, network conversion, exact halo tiling, and
real end-to-end runs of the published brainchop models on FreeSurfer's norm.mgz (../shared)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepseg.errors import ModelError
from deepseg.inference.halo_tiles import predict_halo_tiles, slab_boxes
from deepseg.models.networks.meshnet import MeshNet
from deepseg.models.tfjs import read_tfjs_model

BRAINCHOP = "models/brainchop"
NIIVUE = "data/niivue"


# --- a small synthetic TensorFlow.js model, written the way tensorflowjs_converter writes one ---------
def _conv_layer(name, filters, kernel, dilation, inbound, use_bias=True, activation="linear"):
    return {"class_name": "Conv3D", "name": name, "inbound_nodes": [[[inbound, 0, 0, {}]]],
            "config": {"name": name, "filters": filters, "kernel_size": [kernel] * 3, "strides": [1, 1, 1],
                       "dilation_rate": [dilation] * 3, "padding": "same", "data_format": "channels_last",
                       "activation": activation, "use_bias": use_bias}}


def write_tfjs(folder: Path, dilations=(1, 2, 4), channels=3, classes=2, seed=0, shards=2):
    """A MeshNet-like tfjs folder: convs (with a BatchNormalization after the first), ELUs, a 1x1 head.
    Weights are split over ``shards`` files; the head kernel is uint8-quantised and one bias float16.
    Returns the float weights as the reader should decode them."""
    rng = np.random.default_rng(seed)
    layers = [{"class_name": "InputLayer", "name": "input",
               "config": {"name": "input", "batch_input_shape": [None, None, None, None, 1]}}]
    manifest, blobs, expected = [], [], {}
    prev, in_ch = "input", 1

    def add(name, arr, quant=None):
        entry = {"name": name, "shape": list(arr.shape), "dtype": "float32"}
        if quant == "uint8":
            lo, scale = float(arr.min()), float(np.ptp(arr)) / 255
            q = np.round((arr - lo) / scale).astype(np.uint8)
            entry["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale}
            blobs.append(q.tobytes())
            expected[name] = q.astype(np.float32) * np.float32(scale) + np.float32(lo)
        elif quant == "float16":
            entry["quantization"] = {"dtype": "float16"}
            blobs.append(arr.astype("<f2").tobytes())
            expected[name] = arr.astype(np.float16).astype(np.float32)
        else:
            blobs.append(arr.astype("<f4").tobytes())
            expected[name] = arr.astype(np.float32)
        manifest.append(entry)

    for n, d in enumerate(dilations):
        name = f"conv3d_{n}"
        layers.append(_conv_layer(name, channels, 3, d, prev))
        add(f"{name}/kernel", rng.normal(0, 0.3, (3, 3, 3, in_ch, channels)))
        add(f"{name}/bias", rng.normal(0, 0.1, channels), quant="float16" if n == 1 else None)
        prev, in_ch = name, channels
        if n == 0:
            layers.append({"class_name": "BatchNormalization", "name": "bn_0", "inbound_nodes": [[[prev, 0, 0, {}]]],
                           "config": {"name": "bn_0", "epsilon": 1e-3}})
            add("bn_0/gamma", rng.uniform(0.5, 1.5, channels))
            add("bn_0/beta", rng.normal(0, 0.1, channels))
            add("bn_0/moving_mean", rng.normal(0, 0.1, channels))
            add("bn_0/moving_variance", rng.uniform(0.5, 1.5, channels))
            prev = "bn_0"
        layers.append({"class_name": "Activation", "name": f"act_{n}", "inbound_nodes": [[[prev, 0, 0, {}]]],
                       "config": {"name": f"act_{n}", "activation": "elu"}})
        prev = f"act_{n}"
    layers.append(_conv_layer("output", classes, 1, 1, prev))
    add("output/kernel", rng.normal(0, 0.5, (1, 1, 1, channels, classes)), quant="uint8")
    add("output/bias", rng.normal(0, 0.1, classes))

    data = b"".join(blobs)
    cut = np.linspace(0, len(data), shards + 1).astype(int)
    paths = [f"group1-shard{i + 1}of{shards}.bin" for i in range(shards)]
    for i, p in enumerate(paths):
        (folder / p).write_bytes(data[cut[i]:cut[i + 1]])
    model = {"format": "layers-model", "modelTopology": {"model_config": {"class_name": "Functional", "config": {
        "name": "model", "layers": layers}}}, "weightsManifest": [{"paths": paths, "weights": manifest}]}
    (folder / "model.json").write_text(json.dumps(model))
    return expected


def reference_forward(w: dict, x: torch.Tensor, dilations) -> torch.Tensor:
    """The synthetic network written out with torch.nn.functional, from the TF-layout weights."""
    def kern(k):
        return torch.from_numpy(np.ascontiguousarray(k.transpose(4, 3, 0, 1, 2)))

    for n, d in enumerate(dilations):
        x = F.conv3d(x, kern(w[f"conv3d_{n}/kernel"]), torch.from_numpy(w[f"conv3d_{n}/bias"]), padding=d, dilation=d)
        if n == 0:
            mean, var = (torch.from_numpy(w[f"bn_0/{k}"]).view(1, -1, 1, 1, 1) for k in ("moving_mean", "moving_variance"))
            gamma, beta = (torch.from_numpy(w[f"bn_0/{k}"]).view(1, -1, 1, 1, 1) for k in ("gamma", "beta"))
            x = (x - mean) / torch.sqrt(var + 1e-3) * gamma + beta
        x = F.elu(x)
    return F.conv3d(x, kern(w["output/kernel"]), torch.from_numpy(w["output/bias"]))


def test_tfjs_reader_decodes_shards_and_quantisation(tmp_path):
    expected = write_tfjs(tmp_path, shards=3)
    model = read_tfjs_model(tmp_path)
    assert set(model.weights) == set(expected)
    for name, arr in expected.items():
        np.testing.assert_array_equal(model.weights[name], arr, err_msg=name)
    assert [lay["class_name"] for lay in model.layers][:3] == ["InputLayer", "Conv3D", "BatchNormalization"]


def test_meshnet_matches_functional_reference(tmp_path):
    dil = (1, 2, 4)
    expected = write_tfjs(tmp_path, dilations=dil)
    net = MeshNet.from_tfjs(read_tfjs_model(tmp_path))
    assert net.receptive_radius == sum(dil)
    x = torch.randn(1, 1, 12, 15, 17)
    with torch.inference_mode():
        np.testing.assert_allclose(net(x).numpy(), reference_forward(expected, x, dil).numpy(), rtol=1e-4, atol=1e-5)


def test_missing_and_truncated_shards_are_model_errors(tmp_path):
    write_tfjs(tmp_path, shards=2)
    shard = tmp_path / "group1-shard2of2.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-8])
    with pytest.raises(ModelError, match="truncated"):
        read_tfjs_model(tmp_path)
    shard.unlink()
    with pytest.raises(ModelError, match="missing"):
        read_tfjs_model(tmp_path)
    shard.write_bytes(data + b"\0" * 4)
    with pytest.raises(ModelError, match="do not match"):
        read_tfjs_model(tmp_path)


def test_halo_tiles_reproduce_whole_volume_exactly(tmp_path):
    dil = (1, 2, 4, 2)
    write_tfjs(tmp_path, dilations=dil)
    net = MeshNet.from_tfjs(read_tfjs_model(tmp_path))
    x = torch.randn(1, 21, 14, 53)
    halo = net.receptive_radius
    assert len(slab_boxes(x.shape[1:], halo, 21 * 14 * 30)) >= 3
    with torch.inference_mode():
        whole = net(x[None])[0]
    tiled = predict_halo_tiles(net, x, halo, max_voxels=21 * 14 * 30)
    np.testing.assert_allclose(tiled.numpy(), whole.numpy(), atol=1e-5)
    # too small a halo is visibly wrong: the check above can fail
    short = predict_halo_tiles(net, x, halo - 3, max_voxels=21 * 14 * 30)
    assert np.abs(short.numpy() - whole.numpy()).max() > 1e-3


def test_prepare_restore_on_oblique_input(tmp_path, oblique_volume):
    """Conform -> crop -> halo slabs -> restore on an anisotropic oblique volume: output on the input grid,
    probabilities sum to 1, and the crop-box resampling equals resampling the whole pasted 256^3 volume."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.card import LabelInfo, ModelCard
    from deepseg.models.conform import resample_to
    from deepseg.models.meshnet import MeshNetModel

    write_tfjs(tmp_path, dilations=(1, 2))
    net = MeshNet.from_tfjs(read_tfjs_model(tmp_path))
    card = ModelCard(id="tiny", title="tiny", format="brainchop-meshnet", labels=[LabelInfo(1, "thing")],
                     preprocessing={"max_voxels": 20_000})
    model = MeshNetModel(card, net)
    prepared = model.prepare([oblique_volume])
    assert prepared.image.shape[0] == 1 and prepared.image.max() <= 1.0
    logits = model.predict_logits(prepared, device="cpu")
    probs = model.restore(logits, prepared)
    assert probs.shape == (2, *oblique_volume.shape)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    # the same through a full conformed volume
    grid, box = prepared.context["grid"], prepared.context["box"]
    soft = torch.softmax(logits, 0).numpy()
    full = np.zeros(grid.shape, np.float32)
    full.transpose(2, 1, 0)[box] = soft[1]
    np.testing.assert_allclose(probs[1], resample_to(full, grid, oblique_volume), atol=1e-5)
    result = segment(model, [oblique_volume], device="cpu")
    assert result.labels.same_grid(oblique_volume)


def _conform_index(volume, grid):
    """Continuous input index ``(i, j, k)`` of every conformed axis' voxel 0 (the grid origin)."""
    return np.linalg.solve(volume.ijk_to_lps()[:3, :3], np.asarray(grid.origin) - np.asarray(volume.origin))


@pytest.mark.parametrize("size_kji", [(97, 95, 96), (96, 96, 96), (31, 64, 33)])
def test_conformed_grid_keeps_the_voxel_centres_of_a_1mm_input_in_any_storage_order(size_kji):
    """A 1 mm input whose axes run along L, I, A in any order and sign: the conformed voxels are its own
    voxels (integer index), so conforming copies instead of interpolating, whatever its size parity or
    storage order; FreeSurfer's centre (index size/2) moves by at most half a voxel.  Inputs that are not
    on such a lattice (0.9 mm, or oblique) keep FreeSurfer's centre exactly."""
    import sys

    from deepseg.models.conform import LIA_LPS, conformed_grid
    from deepseg.volume import Volume

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from robustness import flip_storage, permute_storage

    base = Volume(np.zeros(size_kji, np.float32), (1.0, 1.0, 1.0), (12.3, -40.7, 8.45), LIA_LPS.copy())
    variants = [base, flip_storage(base).image, permute_storage(base).image,
                flip_storage(permute_storage(base, (1, 0, 2)).image, (0,)).image]  # the last: 90 degrees about k
    for vol in variants:
        grid = conformed_grid(vol)
        index = _conform_index(vol, grid)
        assert np.allclose(index, np.round(index), atol=1e-6)
        freesurfer = vol.ijk_to_lps() @ np.append(np.asarray(vol.size_ijk, float) / 2.0, 1.0)
        centre = grid.ijk_to_lps() @ np.array([128.0, 128.0, 128.0, 1.0])
        assert np.abs(centre - freesurfer)[:3].max() <= 0.5 + 1e-9
    for vol in (Volume(np.zeros(size_kji, np.float32), (0.9, 0.9, 0.9), (12.3, -40.7, 8.45), LIA_LPS.copy()),):
        grid = conformed_grid(vol)
        freesurfer = vol.ijk_to_lps() @ np.append(np.asarray(vol.size_ijk, float) / 2.0, 1.0)
        assert np.allclose(grid.ijk_to_lps() @ np.array([128.0, 128.0, 128.0, 1.0]), freesurfer)


def test_restore_on_a_conformed_input_pastes_the_crop(tmp_path, oblique_volume):
    """An input already on the conformed 256^3 grid: the crop's probabilities are pasted (transposed back
    to the array's k, j, i order) with background = 1 outside the crop, with no interpolation."""
    from deepseg.models.card import LabelInfo, ModelCard
    from deepseg.models.conform import conformed_grid
    from deepseg.models.meshnet import MeshNetModel

    write_tfjs(tmp_path, dilations=(1, 2), classes=3)
    net = MeshNet.from_tfjs(read_tfjs_model(tmp_path))
    card = ModelCard(id="tiny", title="tiny", format="brainchop-meshnet",
                     labels=[LabelInfo(1, "a"), LabelInfo(2, "b")], preprocessing={"max_voxels": 50_000})
    model = MeshNetModel(card, net)
    array = np.zeros((256, 256, 256), np.float32)  # [k, j, i]
    array[100:117, 60:90, 140:151] = np.random.default_rng(0).uniform(50, 100, (17, 30, 11))
    volume = conformed_grid(oblique_volume).with_array(array)
    prepared = model.prepare([volume])
    assert prepared.reference.same_grid(prepared.context["grid"])
    logits = model.predict_logits(prepared, device="cpu")
    probs = model.restore(logits, prepared)
    soft = torch.softmax(logits, 0).numpy()
    expected = np.zeros((3, 256, 256, 256), np.float32)
    expected[0] = 1.0
    expected.transpose(0, 3, 2, 1)[(slice(None), *prepared.context["box"])] = soft  # network axes are i, j, k
    np.testing.assert_array_equal(probs, expected)


def _tiny_model(folder, classes, keep_largest=False):
    """A synthetic MeshNet with ``classes`` outputs whose labels are not 1..K-1 (values 3, 7, 11, ...)."""
    from deepseg.models.card import LabelInfo, ModelCard
    from deepseg.models.meshnet import MeshNetModel

    write_tfjs(folder, dilations=(1, 2), classes=classes)
    card = ModelCard(id="tiny", title="tiny", format="brainchop-meshnet",
                     labels=[LabelInfo(3 + 4 * n, f"s{n}") for n in range(classes - 1)],
                     preprocessing={"max_voxels": 50_000, "keep_largest": keep_largest})
    return MeshNetModel(card, MeshNet.from_tfjs(read_tfjs_model(folder)))


def _conformed_with_block(oblique_volume, rng):
    """A volume on the conformed 256^3 grid itself, empty but for a block (so the crop is small)."""
    from deepseg.models.conform import conformed_grid

    array = np.zeros((256, 256, 256), np.float32)  # [k, j, i]
    array[100:117, 60:90, 140:151] = rng.uniform(50, 100, (17, 30, 11))
    return conformed_grid(oblique_volume).with_array(array)


def _tied_logits(shape, classes, rng):
    """Logits with exact ties (small integers) and near-ties that softmax rounds to ties: where channel 1
    is 1e-8 above channel 0 (the others below both), float32 ``exp`` cannot tell them apart, so labelling
    the logits instead of the probabilities would pick channel 1 there, the probability path channel 0."""
    logits = rng.integers(0, 3, (classes, *shape)).astype(np.float32)
    near = rng.random(shape) < 0.3
    logits[:, near] = -1.0
    logits[0][near], logits[1][near] = 0.0, 1e-8
    soft = torch.softmax(torch.from_numpy(logits), 0).numpy()
    assert (logits[1][near] > logits[0][near]).all() and (soft[1][near] == soft[0][near]).all()
    return torch.from_numpy(logits)


@pytest.mark.parametrize("keep_largest", [False, True])
def test_labels_only_restore_equals_labelling_the_probabilities(tmp_path, oblique_volume, keep_largest):
    """``restore_labels`` (no input-grid probability map) gives the probability path's refined labels
    voxel for voxel, ties included: on a conformed input (the crop's labels pasted) and on an oblique
    anisotropic one (a running argmax over the resampled channels), for the network's own logits and
    for logits full of exact and rounding ties."""
    rng = np.random.default_rng(3)
    model = _tiny_model(tmp_path, classes=4, keep_largest=keep_largest)
    for volume in (_conformed_with_block(oblique_volume, rng), oblique_volume):
        prepared = model.prepare([volume])
        shape = prepared.image.shape[1:]
        for logits in (model.predict_logits(prepared, device="cpu"), _tied_logits(shape, 4, rng)):
            probs = model.restore(logits, prepared)
            expected = model.refine(model.labels_from_probabilities(probs), probs, volume)
            got = model.restore_labels(logits, prepared)
            assert got.dtype == np.uint16 and got.shape == volume.shape
            np.testing.assert_array_equal(got, expected)
            assert len(np.unique(got)) >= 2


def test_a_labels_only_segment_never_builds_the_probability_map(tmp_path, oblique_volume):
    """``segment`` without ``return_probabilities`` labels a MeshNet without the (K, 256^3) float32
    probability map: the largest numpy allocation (tracemalloc, which sees every numpy array) stays far
    below the map's size, while the run that returns the probabilities allocates it; labels identical."""
    import tracemalloc

    from deepseg.inference.pipeline import segment

    model = _tiny_model(tmp_path, classes=18)
    volume = _conformed_with_block(oblique_volume, np.random.default_rng(4))
    map_bytes = 18 * volume.array.size * 4  # 1.2 GB
    peaks, results = {}, {}
    for wanted in (True, False):
        tracemalloc.start()
        try:
            results[wanted] = segment(model, [volume], device="cpu", backend="torch", return_probabilities=wanted)
            peaks[wanted] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert results[True].probabilities.shape == (18, *volume.shape)
    assert peaks[True] >= map_bytes  # the measure sees the map when it is built
    assert results[False].probabilities is None and results[False].run.probabilities is None
    assert peaks[False] < map_bytes / 4, (peaks, map_bytes)
    np.testing.assert_array_equal(results[False].labels.array, results[True].labels.array)


def test_keep_largest_refinement(tmp_path, oblique_volume):
    from deepseg.models.card import LabelInfo, ModelCard
    from deepseg.models.meshnet import MeshNetModel

    write_tfjs(tmp_path, dilations=(1,))
    net = MeshNet.from_tfjs(read_tfjs_model(tmp_path))
    labels = np.zeros(oblique_volume.shape, np.uint16)
    labels[1:6, 2:10, 2:10] = 1
    labels[8:10, 15:18, 18:22] = 1  # a separate island
    for keep, expected in ((False, labels), (True, np.where(np.arange(labels.shape[0])[:, None, None] < 7, labels, 0))):
        card = ModelCard(id="tiny", title="tiny", format="brainchop-meshnet", labels=[LabelInfo(1, "brain mask")],
                         preprocessing={"keep_largest": keep})
        out = MeshNetModel(card, net).refine(labels, None, oblique_volume)
        np.testing.assert_array_equal(out, expected)


# --- real brainchop models (../shared) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def brainchop(shared) -> Path:
    return shared / BRAINCHOP


def test_real_models_layer_shapes(brainchop):
    m = read_tfjs_model(brainchop / "model18cls")
    assert m.weights["conv3d_0/kernel"].shape == (3, 3, 3, 1, 21)
    assert m.weights["output/kernel"].shape == (1, 1, 1, 21, 18)
    net = MeshNet.from_tfjs(m)
    assert (net.in_channels, net.out_channels, net.receptive_radius) == (1, 18, 1 + 2 + 4 + 8 + 16 + 8 + 4 + 2 + 1)
    grab = MeshNet.from_tfjs(read_tfjs_model(brainchop / "mindgrab"))
    assert grab.out_channels == 2 and grab.receptive_radius is None  # instance norm: not tileable
    assert any(isinstance(mod, torch.nn.InstanceNorm3d) for mod in grab)


def test_real_model18cls_tiles_equal_whole(brainchop):
    net = MeshNet.from_tfjs(read_tfjs_model(brainchop / "model18cls"))
    x = torch.rand(1, 16, 16, 160)
    budget = 16 * 16 * 130
    with torch.inference_mode():
        whole = net(x[None])[0]
    tiled = predict_halo_tiles(net, x, net.receptive_radius, max_voxels=budget)
    assert len(slab_boxes(x.shape[1:], net.receptive_radius, budget)) >= 3
    np.testing.assert_allclose(tiled.numpy(), whole.numpy(), atol=1e-4)


def crop(volume, start_kji, size_kji):
    """A sub-volume with its exact geometry (origin moved to the first kept voxel)."""
    from deepseg.volume import Volume

    k, j, i = start_kji
    arr = volume.array[k:k + size_kji[0], j:j + size_kji[1], i:i + size_kji[2]]
    origin = (volume.ijk_to_lps() @ np.array([i, j, k, 1.0]))[:3]
    return Volume(np.ascontiguousarray(arr), volume.spacing, tuple(origin), volume.direction.copy(), volume.name)


def mean_dice(labels: np.ndarray, reference: np.ndarray, values) -> dict:
    out = {}
    for v in values:
        a, b = labels == v, reference == v
        if a.any() or b.any():
            out[v] = 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
    return out


@pytest.fixture(scope="module")
def norm_mgz(shared):
    """FreeSurfer's norm.mgz (T1, skull-stripped, conformed) and its aparc.a2009s+aseg labels."""
    from deepseg.io import read_volume

    return read_volume(shared / NIIVUE / "norm.mgz"), read_volume(shared / NIIVUE / "aparc.a2009s+aseg.mgz")


def block(norm_mgz, centre_kji, size):
    start = tuple(int(c) - size // 2 for c in centre_kji)
    return tuple(crop(v, start, (size,) * 3) for v in norm_mgz)


@pytest.fixture(scope="module")
def norm_crop(norm_mgz):
    """A 96^3 (1 mm) block of norm.mgz around the deep grey matter, and its labels."""
    centre = np.argwhere(np.isin(norm_mgz[1].array, [10, 49, 16, 17, 53])).mean(axis=0)
    return block(norm_mgz, centre, 96)


@pytest.fixture(scope="module")
def norm_vertex(norm_mgz):
    """A 64^3 block of norm.mgz centred 16 mm below the top of the brain (brain and background)."""
    brain = np.argwhere(norm_mgz[1].array > 0)
    centre = brain.mean(axis=0)
    centre[1] = brain[:, 1].min() + 16  # array axis 1 = j = inferior in the conformed LIA grid
    return block(norm_mgz, centre, 64)


# Dice floors: measured on these blocks (model18cls inner 64^3: mean 0.458, brain stem 0.864, hippocampus
# 0.576; mindgrab 0.856) minus a margin for platform/library differences.
MODEL18_CROP_FLOOR = 0.40
MINDGRAB_CROP_FLOOR = 0.75


def test_real_model18cls_labels_only_equals_the_probability_path(brainchop, norm_mgz, norm_crop):
    """The real model18cls on real norm.mgz data: ``restore_labels`` equals labelling ``restore``'s 18-class
    probability map voxel for voxel, on the 96^3 deep-grey-matter block (not conformed: a running argmax
    over the resampled channels) and on norm.mgz's own conformed grid with the brain kept in a 64^3 block
    around the same centre (so the crop stays small; the crop's labels are pasted)."""
    from deepseg.models.loaders import load_model

    model = load_model(brainchop / "model18cls")
    t1, aseg = norm_mgz
    centre = np.argwhere(np.isin(aseg.array, [10, 49, 16, 17, 53])).mean(axis=0).astype(int)
    box = tuple(slice(c - 32, c + 32) for c in centre)
    masked = np.zeros_like(t1.array)
    masked[box] = t1.array[box]
    for volume, structures in ((norm_crop[0], 8), (t1.with_array(masked), 2)):
        prepared = model.prepare([volume])
        logits = model.predict_logits(prepared, device="cpu")
        probs = model.restore(logits, prepared)
        expected = model.labels_from_probabilities(probs)
        got = model.restore_labels(logits, prepared)
        np.testing.assert_array_equal(got, expected)
        assert len(np.unique(got)) > structures  # background and the structures


def test_model18cls_end_to_end_on_norm_crop(brainchop, norm_crop):
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model
    from deepseg.models.meshnet import freesurfer_reference

    t1, aseg = norm_crop
    model = load_model(brainchop / "model18cls")
    assert model.card.label("Hippocampus").type.value == "5366008"
    assert model.card.label("Brain-Stem").tg263 == "Brainstem"
    result = segment(model, [t1], device="cpu")
    assert result.labels.same_grid(t1)
    reference = freesurfer_reference(aseg.array, model.card.labels)
    # score the inner 64^3: the outer 16 voxels lack the context (46 voxel radius) a whole head gives
    inner = (slice(16, -16),) * 3
    dice = mean_dice(result.labels.array[inner], reference[inner], [lab.value for lab in model.card.labels])
    print("model18cls crop Dice", {model.card.label(v).name: round(d, 3) for v, d in dice.items()},
          "mean", np.mean(list(dice.values())))
    assert np.mean(list(dice.values())) >= MODEL18_CROP_FLOOR
    assert dice[model.card.label("Brain-Stem").value] >= 0.75
    assert dice[model.card.label("Hippocampus").value] >= 0.45


def test_mindgrab_end_to_end_at_brain_surface(brainchop, norm_vertex):
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model

    t1, aseg = norm_vertex
    reference = aseg.array > 0
    assert 0.2 < reference.mean() < 0.8  # the block holds both brain and background
    model = load_model(brainchop / "mindgrab")
    result = segment(model, [t1], device="cpu")
    inner = (slice(8, -8),) * 3
    dice = mean_dice(result.labels.array[inner] > 0, reference[inner], [True])[True]
    print("mindgrab block Dice", dice)
    assert dice >= MINDGRAB_CROP_FLOOR


@pytest.mark.slow
def test_model18cls_whole_norm_mgz(brainchop, shared):
    """Full-resolution run (minutes on 2 cores; benchmarks/accuracy_brain.py records the numbers)."""
    from deepseg.inference.pipeline import segment
    from deepseg.io import read_volume
    from deepseg.models.loaders import load_model
    from deepseg.models.meshnet import freesurfer_reference

    t1 = read_volume(shared / NIIVUE / "norm.mgz")
    model = load_model(brainchop / "model18cls")
    result = segment(model, [t1], device="cpu")
    reference = freesurfer_reference(read_volume(shared / NIIVUE / "aparc.a2009s+aseg.mgz").array, model.card.labels)
    dice = mean_dice(result.labels.array, reference, [lab.value for lab in model.card.labels])
    assert len(dice) == 17
    assert np.mean(list(dice.values())) >= 0.59
    assert dice[model.card.label("Brain-Stem").value] >= 0.8
    assert dice[model.card.label("Hippocampus").value] >= 0.7


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_model18cls_on_the_cpu_backends_agrees_with_torch(brainchop, norm_crop, backend, tmp_path, monkeypatch):
    """The real model18cls converts to OpenVINO / ONNX Runtime (dynamic-shape network for the halo slabs;
    provenance says which backend ran) and labels the 96^3 deep-grey-matter block as PyTorch does: per-structure
    Dice >= 0.99 over the structures PyTorch finds there (at least 8 of the 17)."""
    from deepseg.inference.pipeline import segment
    from deepseg.models.loaders import load_model

    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path))  # conversions go to a fresh store
    t1 = norm_crop[0]
    model = load_model(brainchop / "model18cls")
    fast = segment(model, [t1], device="cpu", backend=backend)
    slow = segment(model, [t1], device="cpu", backend="torch")
    assert fast.provenance["settings"]["backend"] == backend
    values = [lab.value for lab in model.card.labels]
    present = [v for v in values if (slow.labels.array == v).sum() >= 50]
    assert len(present) >= 8, present
    dice = mean_dice(fast.labels.array, slow.labels.array, present)
    assert min(dice.values()) >= 0.99, {model.card.label(v).name: round(d, 4) for v, d in dice.items()}
