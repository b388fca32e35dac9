"""nnU-Net v2 results folders in DeepSeg's engine agree with nnU-Net's own ``nnUNetPredictor``.

The model is a genuine nnU-Net v2 training (nnunetv2's planning, preprocessing and ``nnUNetTrainer``),
built once by ``Testing/fixtures/make_nnunet_model.py`` and cached under ``Testing/_fixtures``.
"""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2")

from fixtures.make_nnunet_model import (DATASET_NAME, ensure_nnunet_fixture, make_case, pack_results_zip,  # noqa: E402
                                        trainer_folder, write_case)
from fixtures.nnunet_runs import dice_per_class, run_ours, run_reference  # noqa: E402

from deepseg.errors import ModelError  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "_fixtures"


@pytest.fixture(scope="session")
def results() -> Path:
    """The trained results folder ``Dataset977_DeepSegTiny`` (3d_fullres folds 0-1, 2d fold 0)."""
    return ensure_nnunet_fixture(FIXTURES)


@pytest.fixture(scope="session")
def case(tmp_path_factory):
    """A fresh case unlike the training ones: oblique direction, other spacing and size, as NIfTI files."""
    import SimpleITK as sitk

    a = np.deg2rad(17)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ \
        np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    ct, t1, gt = make_case(4242, size_ijk=(60, 19, 64), spacing=(0.75, 3.0, 0.7), direction=direction,
                           origin=(-20.5, 13.25, 40.0))
    folder = tmp_path_factory.mktemp("nnunet_case")
    images = write_case(folder, "test_000", (ct, t1, gt))
    return images, sitk.GetArrayFromImage(gt), folder


@pytest.fixture(scope="module")
def predictor_run(results, case) -> dict:
    """nnUNetPredictor on the case (3d_fullres, folds 0+1, mirroring), stage by stage as
    ``predict_from_files_sequential`` runs it: its preprocessed array, half-precision logits and labels."""
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(trainer_folder(results, "3d_fullres")), use_folds=(0, 1))
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    data, _, props = preprocessor.run_case([str(p) for p in case[0]], None, predictor.plans_manager,
                                           predictor.configuration_manager, predictor.dataset_json)
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    export = lambda lg: convert_predicted_logits_to_segmentation_with_correct_shape(  # noqa: E731
        lg, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, props)
    return {"data": data, "logits": logits, "labels": export(logits), "export": export}


@pytest.fixture(scope="module")
def mirrored(predictor_run) -> np.ndarray:
    """nnUNetPredictor's labels for the case (3d_fullres, folds 0+1, mirroring)."""
    return predictor_run["labels"]


def _agreement(train_dir: Path, case, folds, mirror: bool, tmp_path: Path, min_truth: float = 0.8,
               ref: "np.ndarray | None" = None):
    import SimpleITK as sitk

    images, gt, _ = case
    if ref is None:
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(run_reference(train_dir, images, tmp_path / "ref.nii.gz",
                                                                      folds, mirror))))
    ours, image = run_ours(train_dir, images, folds, mirror)
    assert ours.same_grid(image, tol=0.0), "the label map must lie exactly on the input grid"
    assert ours.spacing == image.spacing and ours.origin == image.origin
    assert np.array_equal(ours.direction, image.direction)
    agree = dice_per_class(ours.array, ref, [1, 2])
    truth = dice_per_class(ours.array, gt, [1, 2])
    assert min(agree.values()) >= 0.99, f"per-class Dice vs nnUNetPredictor {agree}"
    assert min(truth.values()) >= min_truth, f"the fixture model must really segment the shapes (Dice vs truth {truth})"
    return ours


@pytest.mark.parametrize("mirror", [False, True], ids=["no-mirror", "mirror"])
def test_3d_fullres_two_folds_agree_with_nnunet_predictor(results, case, mirror, tmp_path, request):
    _agreement(trainer_folder(results, "3d_fullres"), case, (0, 1), mirror, tmp_path,
               ref=request.getfixturevalue("mirrored") if mirror else None)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_cpu_backends_agree_with_torch_and_nnunet_predictor(results, case, mirrored, backend, tmp_path, monkeypatch):
    """The fixture's networks convert (provenance names the backend, not the PyTorch fallback) and label the case
    as our PyTorch path and nnUNetPredictor do (folds 0+1, mirroring): per-class Dice >= 0.99."""
    from deepseg.inference.pipeline import segment

    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path / "store"))  # conversions go to a fresh store
    images, _, _ = case
    train_dir = trainer_folder(results, "3d_fullres")
    ours = segment(train_dir, images, device="cpu", backend=backend, tta=True, folds=[0, 1])
    assert ours.provenance["settings"]["backend"] == backend, ours.provenance["notes"]
    torch_labels, _ = run_ours(train_dir, images, (0, 1), True)
    for other in (torch_labels.array, mirrored):
        dice = dice_per_class(ours.labels.array, other, [1, 2])
        assert (other == 1).any() and (other == 2).any() and min(dice.values()) >= 0.99, dice


def test_2d_configuration_agrees_with_nnunet_predictor(results, case, tmp_path):
    # one briefly trained 2D fold segments less well than the 3D ensemble (liver Dice ~0.78 vs truth)
    _agreement(trainer_folder(results, "2d"), case, (0,), True, tmp_path, min_truth=0.7)


def test_region_based_labels_agree_with_nnunet_predictor(results, case, tmp_path):
    """BraTS-style regions (sigmoid per region, painted in ``regions_class_order``) on the same weights."""
    src = trainer_folder(results, "3d_fullres")
    dst = tmp_path / src.name
    _link_copy(src, dst, folds=("fold_0",))
    ds = json.loads((dst / "dataset.json").read_text())
    ds["labels"] = {"background": 0, "organs": [1, 2], "spleen": [2], "extra": [3]}
    ds["regions_class_order"] = [1, 2, 3]
    (dst / "dataset.json").write_text(json.dumps(ds))
    import SimpleITK as sitk

    images, _, _ = case
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(run_reference(dst, images, tmp_path / "r.nii.gz", (0,), False))))
    ours, _ = run_ours(dst, images, (0,), False)
    present = [c for c in (1, 2, 3) if (ref == c).any() or (ours.array == c).any()]
    assert present, "region model painted nothing; the comparison would be vacuous"
    agree = dice_per_class(ours.array, ref, present)
    assert min(agree.values()) >= 0.99, agree


def test_segment_pipeline_runs_nnunet_folder(results, case, tmp_path):
    """The public ``segment()`` on a results folder gives our engine's labels, on the input grid, with names."""
    from deepseg.inference.pipeline import segment

    images, _, _ = case
    result = segment(results, images, tta=False, labelmap=tmp_path / "labels.nii.gz")
    ours, image = run_ours(trainer_folder(results), images, (0, 1), False)
    assert result.labels.same_grid(image, tol=0.0)
    assert np.array_equal(result.labels.array, ours.array)
    assert [lab.name for lab in result.label_info] == ["liver", "spleen"]
    assert (tmp_path / "labels.nii.gz").is_file()


def _link_copy(src: Path, dst: Path, folds=("fold_0", "fold_1"), skip=()):
    """Copy a trainer folder's JSON files and symlink the chosen folds' checkpoints."""
    dst.mkdir(parents=True)
    for f in ("dataset.json", "plans.json"):
        if f not in skip:
            shutil.copy(src / f, dst / f)
    for fold in folds:
        (dst / fold).mkdir()
        if "checkpoint" not in skip:
            os.symlink(src / fold / "checkpoint_final.pth", dst / fold / "checkpoint_final.pth")


def test_loader_registry_and_configuration_choice(results):
    from deepseg.models.formats import detect_format
    from deepseg.models.loaders import load_model
    from deepseg.models.nnunet import load_nnunet_folder

    assert detect_format(trainer_folder(results)) == "nnunetv2"
    model = load_model(results)  # dataset folder with two configurations: 3d_fullres by default
    assert model.config.name == "3d_fullres" and model.fold_names == ["0", "1"]
    assert list(model.networks) == ["0", "1"] and not any(n.training for n in model.networks.values())
    assert model.window.mirror_axes == (0, 1, 2)
    two_d = load_nnunet_folder(results, configuration="2d")
    assert two_d.config.is_2d and two_d.window.patch_size[0] == 1 and two_d.window.mirror_axes == (1, 2)
    assert [lab.name for lab in model.card.labels] == ["liver", "spleen"]
    assert model.card.labels[0].type.value == "10200004"  # SNOMED CT Liver, from pydicom's code dictionary
    assert [(i.name, i.modality) for i in model.card.inputs] == [("CT", "CT"), ("T1", "MR")]
    with pytest.raises(ModelError, match="3d_lowres"):
        load_nnunet_folder(results, configuration="3d_lowres")


def test_networks_hold_the_checkpoints_own_tensors(results):
    """The loader builds each network without values and puts the checkpoint's tensors in (no random
    initialisation, no second copy of the weights); the network computes what nnU-Net's own build does."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from deepseg.models.nnunet import load_nnunet_folder
    from deepseg.models.nnunet.network import network_with_weights, read_fold

    folder = trainer_folder(results)
    model = load_nnunet_folder(folder, folds=[0])
    net = model.networks["0"]
    ckpt = read_fold(folder / "fold_0" / "checkpoint_final.pth")
    assert not any(t.is_meta for t in [*net.parameters(), *net.buffers()]) and not net.training
    cm = PlansManager(json.loads((folder / "plans.json").read_text())).get_configuration("3d_fullres")
    theirs = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                                    len(model.card.inputs), model.num_classes, deep_supervision=False)
    theirs.load_state_dict(ckpt["network_weights"])
    theirs.eval()
    ours = dict(net.state_dict())
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours[name], value), name
    x = torch.randn(1, len(model.card.inputs), *model.window.patch_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(net(x), theirs(x))
    # the parameters are the loaded checkpoint's tensors, not copies of them
    loaded = read_fold(folder / "fold_0" / "checkpoint_final.pth")
    again = network_with_weights(model.config.architecture, len(model.card.inputs), model.num_classes, loaded,
                                 folder / "fold_0" / "checkpoint_final.pth")
    held = {t.data_ptr() for t in loaded["network_weights"].values()}
    assert all(p.data_ptr() in held for p in again.parameters())


def test_a_network_with_tensors_no_checkpoint_holds_is_built_with_values(monkeypatch, tmp_path):
    """A network class with a buffer that state dicts leave out (non-persistent) cannot take the checkpoint's
    tensors alone: it is built on the CPU, so that buffer has its values, and the weights are copied in."""
    import torch

    from deepseg.models.nnunet import network

    class WithTable(torch.nn.Module):
        def __init__(self, input_channels, num_classes, deep_supervision):
            super().__init__()
            self.conv = torch.nn.Conv3d(input_channels, num_classes, 1)
            self.register_buffer("table", torch.arange(3.0), persistent=False)

    monkeypatch.setattr(network, "locate", lambda name, plans_file="": WithTable)
    weights = WithTable(1, 2, False).state_dict()
    net = network.network_with_weights({"network_class_name": "WithTable"}, 1, 2, {"network_weights": weights},
                                       tmp_path / "checkpoint_final.pth")
    assert torch.equal(net.table, torch.arange(3.0)) and torch.equal(net.conv.weight, weights["conv.weight"])
    bad = {"network_weights": {"conv.weight": torch.zeros(2, 1, 3, 3, 3), "conv.bias": torch.zeros(2)}}
    with pytest.raises(ModelError, match="do not fit"):
        network.network_with_weights({"network_class_name": "WithTable"}, 1, 2, bad, tmp_path / "c.pth")


def test_cached_openvino_networks_compile_in_the_background_before_torch_is_imported(results, case, tmp_path):
    """Second run of an nnU-Net model on OpenVINO: the run starts compiling each fold's cached network in a
    background thread before PyTorch is imported (its identity comes from the files), the sliding window uses
    those compilations (none is left over, none is compiled again) and the labels are the first run's.
    A fresh interpreter, as a user's run starts. The run's start is emulated first (so the threads can be joined
    and counted before the run imports PyTorch); the run's own call is then only counted: a second start for the
    same files, hashing them while the run already took the first's compilation, would compile once more
    (seen under CI load; a real run starts once)."""
    import subprocess
    import sys

    from deepseg.inference.pipeline import segment

    images, _, _ = case
    train_dir = trainer_folder(results, "3d_fullres")
    # MKL_NUM_THREADS other than OMP_NUM_THREADS (as Dask's nannies leave them): PyTorch's count, not the run's
    env = {**os.environ, "DEEPSEG_HOME": str(tmp_path / "store"), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "1"}
    env.pop("DEEPSEG_BACKEND", None)
    code = f"""
import json, sys
from deepseg.inference import precompile
from deepseg.inference.pipeline import precompile_cached, segment
from deepseg.options import SegmentOptions
opts = dict(device="cpu", backend="openvino", tta=False, folds=[0, 1])
precompile_cached({str(train_dir)!r}, SegmentOptions.build(None, **opts))
import threading
for thread in threading.enumerate():  # each hashes its fold's files, then compiles the cached network
    if thread.name == "deepseg-precompile":
        thread.join()
started, torch_before = len(precompile._PENDING), "torch" in sys.modules
import deepseg.inference.pipeline as pipeline
run_starts = []  # the run's own call (its start, emulated above) would race the run's take for the same files
pipeline.precompile_cached = lambda *a: run_starts.append(a)
compiled = []
original = precompile.compile_openvino
precompile.compile_openvino = lambda *a: compiled.append(a) or original(*a)
from deepseg.inference import backends
backends.compile_openvino = precompile.compile_openvino
result = segment({str(train_dir)!r}, {[str(i) for i in images]!r}, labelmap={str(tmp_path / "second.nii.gz")!r}, **opts)
print(json.dumps({{"started": started, "torch_before": torch_before, "left": len(precompile._PENDING),
                  "run_starts": len(run_starts),
                  "compiled_again": len(compiled), "backend": result.provenance["settings"]["backend"]}}))
"""

    def run_in_a_fresh_process() -> dict:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run_in_a_fresh_process()  # empty cache: nothing to read in the background; exported and compiled as before
    assert first["started"] == 0 and first["compiled_again"] >= 2 and first["backend"] == "openvino"
    assert first["run_starts"] == 1  # segment starts the background compilation itself
    import SimpleITK as sitk

    first_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "second.nii.gz")))
    (tmp_path / "second.nii.gz").unlink()
    (tmp_path / "second.json").unlink()
    second = run_in_a_fresh_process()
    # the two folds' full-batch networks came from the background; a last, smaller batch compiles as before
    assert second == {"started": 2, "torch_before": False, "left": 0, "run_starts": 1,
                      "compiled_again": first["compiled_again"] - 2, "backend": "openvino"}
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "second.nii.gz"))), first_labels)
    ours = segment(train_dir, images, device="cpu", backend="torch", tta=False, folds=[0, 1])
    assert min(dice_per_class(first_labels, ours.labels.array, [1, 2]).values()) >= 0.99


def test_network_identity_follows_the_files_bytes(results, tmp_path):
    """A copy of a results folder names the same networks (its compiled files are reused); other weights do not."""
    import torch

    from deepseg.models.formats import compiled_inputs
    from deepseg.models.nnunet.network import read_fold

    src = trainer_folder(results, "3d_fullres")
    dst = tmp_path / src.name
    _link_copy(src, dst)

    def named(folder):
        return [(identity(), shape) for identity, shape in compiled_inputs(folder)]

    assert named(dst) == named(src) and len(named(src)) == 2
    ckpt = read_fold(src / "fold_1" / "checkpoint_final.pth")
    first = next(iter(ckpt["network_weights"]))
    ckpt["network_weights"][first] = ckpt["network_weights"][first] + 1e-3
    (dst / "fold_1" / "checkpoint_final.pth").unlink()
    torch.save(ckpt, dst / "fold_1" / "checkpoint_final.pth")
    (ours0, shape), (ours1, _) = named(dst)
    (theirs0, theirs_shape), (theirs1, _) = named(src)
    assert ours0 == theirs0 and ours1 != theirs1 and shape == theirs_shape
    model_patch = json.loads((src / "plans.json").read_text())["configurations"]["3d_fullres"]["patch_size"]
    assert list(shape[2:]) == model_patch and shape[1] == 2
    assert compiled_inputs(trainer_folder(results, "2d")) == []


@pytest.mark.parametrize("configuration", [None, "2d"])
def test_a_card_folder_loads_and_names_the_results_it_points_at(results, tmp_path, configuration):
    """A model folder whose ``deepseg-card.json`` points at its results (``preprocessing.results_folder``) and may
    choose the configuration: the loader and the background compilation (``compiled_inputs``) read the same
    training folder and configuration, and name its networks as the results folder itself does."""
    from deepseg.models.formats import compiled_inputs
    from deepseg.models.nnunet import load_nnunet_folder

    card = {"id": "tiny", "format": "nnunetv2",
            "labels": [{"value": 1, "name": "liver"}, {"value": 2, "name": "spleen"}],
            "preprocessing": {"results_folder": os.path.relpath(results, tmp_path),
                              **({"configuration": configuration} if configuration else {})}}
    (tmp_path / "deepseg-card.json").write_text(json.dumps(card))
    model = load_nnunet_folder(tmp_path)
    named = [(identity(), shape) for identity, shape in compiled_inputs(tmp_path)]
    assert model.config.name == (configuration or "3d_fullres") and model.card.id == "tiny"
    if configuration == "2d":
        assert named == []  # 2D networks are not compiled ahead
    else:
        direct = [(identity(), shape) for identity, shape in compiled_inputs(trainer_folder(results, "3d_fullres"))]
        assert named == direct and len(named) == 2
        assert [list(shape[2:]) for _, shape in named] == [list(model.window.patch_size)] * 2


def test_a_checkpoint_changed_after_loading_does_not_name_the_loaded_network(results, tmp_path):
    """The compiled files of a network are named by its files' bytes; once a checkpoint is replaced (a model
    updated while the loaded one is still in memory), the loaded network must not take the NEW bytes' name:
    its export would be reused for the new weights by every later run."""
    pytest.importorskip("openvino")
    import torch

    from deepseg.inference.backends import BackendNetwork
    from deepseg.models.nnunet import load_nnunet_folder
    from deepseg.models.nnunet.network import read_fold

    src = trainer_folder(results, "3d_fullres")
    dst = tmp_path / src.name
    _link_copy(src, dst, folds=("fold_1",))
    shape = (1, 2, 16, 32, 32)

    def key(folder) -> str:
        net = load_nnunet_folder(folder, folds=[1]).networks["1"]  # held: BackendNetwork refers to it weakly
        return BackendNetwork(net, "openvino").key(shape)

    old = load_nnunet_folder(dst, folds=[1]).networks["1"]
    assert BackendNetwork(old, "openvino").key(shape) == key(src)  # same files: the same name, reused
    ckpt = read_fold(src / "fold_1" / "checkpoint_final.pth")
    first = next(iter(ckpt["network_weights"]))
    ckpt["network_weights"][first] = ckpt["network_weights"][first] + 1e-3
    (dst / "fold_1" / "checkpoint_final.pth").unlink()
    torch.save(ckpt, dst / "fold_1" / "checkpoint_final.pth")
    new = key(dst)
    assert new != key(src)
    assert BackendNetwork(old, "openvino").key(shape) not in (new, key(src))  # named by its weights instead


@pytest.mark.parametrize("missing", ["plans.json", "dataset.json"])
def test_missing_json_names_file_and_fix(results, tmp_path, missing):
    dst = tmp_path / "nnUNetTrainer__nnUNetPlansTiny__3d_fullres"
    _link_copy(trainer_folder(results), dst, skip=(missing,))
    from deepseg.models.nnunet import load_nnunet_folder

    with pytest.raises(ModelError) as err:
        load_nnunet_folder(dst)
    assert missing in err.value.problem and err.value.fix


def test_missing_checkpoint_names_file_and_fix(results, tmp_path):
    from deepseg.models.nnunet import load_nnunet_folder

    dst = tmp_path / "nnUNetTrainer__nnUNetPlansTiny__3d_fullres"
    _link_copy(trainer_folder(results), dst, skip=("checkpoint",))
    with pytest.raises(ModelError) as err:
        load_nnunet_folder(dst)
    assert "checkpoint_final.pth" in err.value.problem and err.value.fix
    with pytest.raises(ModelError) as err:
        load_nnunet_folder(trainer_folder(results), folds=[3])
    assert "fold_3" in err.value.problem and "fold_0" in err.value.fix


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_is_refused_without_running_code(results, tmp_path):
    import torch

    from deepseg.models.nnunet import load_nnunet_folder
    from deepseg.models.safe_load import load_checkpoint

    marker = tmp_path / "pwned"
    dst = tmp_path / "nnUNetTrainer__nnUNetPlansTiny__3d_fullres"
    _link_copy(trainer_folder(results), dst, folds=("fold_0",), skip=("checkpoint",))
    genuine = load_checkpoint(trainer_folder(results) / "fold_0" / "checkpoint_final.pth")
    genuine["init_args"] = _Payload(marker)
    torch.save(genuine, dst / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ModelError, match="refused"):
        load_checkpoint(dst / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ModelError, match="refused"):
        load_nnunet_folder(dst)
    assert not marker.exists()
    # the payload is live: plain unpickling would have run it
    torch.load(dst / "fold_0" / "checkpoint_final.pth", weights_only=False)
    assert marker.exists()


def test_published_zip_layout_loads(results, tmp_path):
    """A zip packed like nnUNetv2_export_model_to_zip, unpacked, loads from its top folder."""
    zip_path = pack_results_zip(results, tmp_path / "model.zip")
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "unpacked")
    assert f"{DATASET_NAME}/nnUNetTrainer__nnUNetPlansTiny__3d_fullres/fold_1/checkpoint_final.pth" in names
    from deepseg.models.loaders import load_model

    model = load_model(tmp_path / "unpacked")
    assert model.config.name == "3d_fullres" and len(model.networks) == 2


def test_resampling_matches_nnunet_functions():
    """Data (order 3) and logits (order 1) resampling, with and without the separate-z rule."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    from deepseg.models.nnunet.plans import Resampling
    from deepseg.models.nnunet.preprocess import new_shape_for, resample

    rng = np.random.default_rng(1)
    for shape, sp, new in [((12, 20, 18), (3.0, 0.7, 0.75), (2.5, 0.8, 0.8)),
                           ((12, 20, 18), (1.0, 0.7, 0.75), (1.2, 0.8, 0.8)),
                           ((20, 9, 18), (0.8, 2.9, 0.75), (0.8, 2.5, 0.8))]:
        data = rng.normal(size=(2, *shape)).astype(np.float32)
        target = new_shape_for(shape, sp, new)
        for order, order_z, tol in [(3, 0, 1e-6), (1, 0, 1e-4), (0, 0, 0.0)]:
            ref = resample_data_or_seg_to_shape(data, target, sp, new, is_seg=False, order=order, order_z=order_z,
                                                force_separate_z=None)
            ours = resample(data, target, sp, new, Resampling(order, order_z, None))
            assert ours.shape == ref.shape
            assert np.abs(ours - ref).max() <= tol, (shape, order)


def test_gaussian_is_nnunets_half_precision_importance_map():
    """The Gaussian of nnU-Net-format models is nnunetv2's ``compute_gaussian`` exactly (half precision, the
    values that underflow at the border raised to the smallest non-zero one), on odd and even patches."""
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    from deepseg.inference.sliding_window import blend_weights

    for tile in [(16, 32, 32), (24, 80, 80), (1, 40, 33)]:
        ref = compute_gaussian(tile, sigma_scale=1. / 8, value_scaling_factor=10, dtype=torch.float16,
                               device=torch.device("cpu"))
        ours = blend_weights(tile, "gaussian", torch.device("cpu"), torch.float16)
        assert ours.dtype == torch.float16 and torch.equal(ours, ref), tile


def test_each_stage_matches_nnunet_predictor(results, case, predictor_run):
    """Stage by stage on the same input (folds 0+1, mirroring): the preprocessed array equals nnU-Net's; the
    sliding-window logits equal nnUNetPredictor's half-precision logits within two half-precision steps, in under
    0.1 % of the values (all mirrorings in one network call round a few float32 sums differently; one call per
    mirroring and patch gives identical logits); our labels from nnU-Net's logits are its labels."""
    import torch

    from deepseg.inference.backends import using
    from deepseg.io import read_volume
    from deepseg.models.nnunet import load_nnunet_folder

    model = load_nnunet_folder(trainer_folder(results, "3d_fullres"), folds=(0, 1))
    prepared = model.prepare([read_volume(p) for p in case[0]])
    data = predictor_run["data"]
    assert prepared.image.shape == data.shape
    np.testing.assert_allclose(prepared.image, data, rtol=0, atol=1e-6)

    assert predictor_run["logits"].dtype == torch.float16
    ref = predictor_run["logits"].float().numpy()
    with using("torch"):
        ours = model.predict_logits(prepared, device="cpu", tta=True).numpy()
    assert ours.dtype == np.float16  # its half-precision sums as they are: no float32 copy of a CT's logits
    step = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float32)  # one half-precision step at each value
    off = np.abs(ours - ref) / step
    assert off.max() <= 2 and np.mean(off > 0) < 1e-3, (off.max(), np.mean(off > 0))

    theirs = predictor_run["export"](predictor_run["logits"].clone())
    mine = model.labels_from_probabilities(model.restore(ref, prepared))
    assert mine.shape == theirs.shape and np.mean(mine != theirs) <= 1e-4
    assert np.mean(theirs == predictor_run["labels"]) == 1.0


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_labels_only_restore_equals_labelling_the_probabilities(results, case, configuration):
    """``restore_labels`` (no input-grid probability map, no softmax) gives the probability path's labels voxel
    for voxel, ties included: on the fixture case with a zero border (so the non-zero crop is pasted back into
    background), for the network's logits and for logits with exact ties between two channels."""
    from deepseg.io import read_volume
    from deepseg.models.nnunet import load_nnunet_folder

    model = load_nnunet_folder(trainer_folder(results, configuration), folds=[0])
    volumes = [read_volume(p) for p in case[0]]
    volumes = [v.with_array(np.pad(v.array[2:-2, 3:-3, 2:-2], ((2, 2), (3, 3), (2, 2)))) for v in volumes]
    prepared = model.prepare(volumes)
    assert tuple(prepared.context["shape_cropped"]) != tuple(prepared.context["shape_before_crop"])
    logits = model.predict_logits(prepared, device="cpu", tta=False)
    tied = logits.clone()
    tied[2] = tied[1]
    for output in (logits, tied):
        expected = model.labels_from_probabilities(model.restore(output, prepared))
        got = model.restore_labels(output, prepared)
        assert got.shape == volumes[0].shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        assert set(np.unique(got)) >= {0, 1}
