"""``deepseg explain`` end to end on a saved card model (MONAI U-Net trained on the cue task)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from explain_helpers import CUE, SIZE

from deepseg.cli import main
from deepseg.io import read_volume, write_volume


@pytest.fixture(scope="module")
def cue_model_folder(cue_net, tmp_path_factory):
    from deepseg.models.card import LabelInfo, ModelCard
    from deepseg.models.card_model import save_card_model

    card = ModelCard("cue-unet", "Cue test U-Net", "monai-unet", [LabelInfo(1, "target")],
                     architecture={"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
                     preprocessing={"normalization": {"method": "none"}, "target_spacing": None,
                                    "patch_size": [SIZE] * 3, "overlap": 0.5, "mirror_axes": [0, 1, 2]},
                     license="Apache-2.0")
    return save_card_model(tmp_path_factory.mktemp("model") / "cue", card, cue_net.state_dict())


def test_cli_explain_writes_maps_and_scores(cue_model_folder, cue_case, tmp_path, capsys):
    vol, _ = cue_case
    image = tmp_path / "case.nii.gz"
    write_volume(vol, image)
    heat_path, unc_path = tmp_path / "heat.nrrd", tmp_path / "unc.nii.gz"
    code = main(["explain", "--model", str(cue_model_folder), "--input", str(image), "--segment", "target",
                 "--output", str(heat_path), "--method", "layer-sum", "--uncertainty", str(unc_path),
                 "--faithfulness", "--device", "cpu", "--progress", "none", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "layer-sum" and summary["layers"]
    heat = read_volume(heat_path)
    assert heat.same_grid(vol) and 0 <= heat.array.min() and heat.array.max() == pytest.approx(1.0, abs=1e-6)
    assert heat.array[CUE].mean() > heat.array.mean()  # the cue matters through the CLI too
    unc = read_volume(unc_path)
    assert unc.same_grid(vol) and summary["uncertainty"]["measure"] == "entropy"  # one fold, no --tta
    f = summary["faithfulness"]
    assert set(f["deletion"]) == {"0.01", "0.05", "0.2"} and 0 <= f["prediction_preserved"] <= 1


def test_cli_list_layers_and_refusals(cue_model_folder, cue_case, tmp_path, capsys):
    assert main(["explain", "--model", str(cue_model_folder), "--list-layers", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in listing["layers"]]
    assert listing["defaults"]["gradcam"][0] in names and "model.2" not in names  # the output layer is no choice
    image = tmp_path / "case.nii.gz"
    write_volume(cue_case[0], image)
    code = main(["explain", "--model", str(cue_model_folder), "--input", str(image), "--segment", "liver",
                 "--output", str(tmp_path / "h.nii.gz"), "--device", "cpu", "--progress", "none"])
    assert code == 2 and "no label 'liver'" in capsys.readouterr().err
    assert not (tmp_path / "h.nii.gz").exists()


@pytest.mark.parametrize("tta,measure", [([], "entropy"), (["--tta"], "variance")])
def test_segment_uncertainty_option(cue_model_folder, cue_case, tmp_path, capsys, tta, measure):
    vol, block = cue_case
    image = tmp_path / "case.nii.gz"
    write_volume(vol, image)
    code = main(["segment", "--model", str(cue_model_folder), "--input", str(image), "--labelmap",
                 str(tmp_path / "labels.nii.gz"), "--uncertainty", str(tmp_path / "entropy.nii.gz"), "--device", "cpu",
                 "--progress", "none", "--json", *tta])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["uncertainty"]["measure"] == measure  # one fold: entropy, with --tta: mirroring variance
    if tta:
        return  # the cue is not mirror-symmetric: the mirrored members need not find the target
    entropy = read_volume(tmp_path / "entropy.nii.gz")
    labels = read_volume(tmp_path / "labels.nii.gz").array
    assert entropy.same_grid(vol) and 0 <= entropy.array.min() and entropy.array.max() <= 1
    assert summary["uncertainty"]["structures"][0]["name"] == "target"
    assert np.array_equal(labels > 0, labels == 1)


@pytest.mark.parametrize("fmt,arch", [
    ("monai-vnet", None),
    ("monai-unet", {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}),
    ("render-unet", {"features": [4, 8, 16, 16], "subdivision_points": 256, "train_points": 128}),
])
def test_every_card_format_can_be_explained(fmt, arch, tmp_path):
    """Untrained card models (V-Net, U-Net, Render 3D U-Net) explain a given region on a resampled grid."""
    import torch

    from deepseg.explain import explain
    from deepseg.models.card_model import build_network, load_card_model, save_card_model
    from deepseg.training.shapes import shapes_card
    from deepseg.volume import Volume

    torch.manual_seed(0)
    card = shapes_card(fmt, (16, 16, 16), arch)
    card.preprocessing["target_spacing"] = [1.5, 1.5, 1.5]
    model = load_card_model(save_card_model(tmp_path / fmt, card, build_network(card).state_dict()))
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 50, (20, 22, 18)).astype(np.float32), spacing=(1.0, 1.0, 1.2))
    region = np.zeros(vol.shape, bool)
    region[8:13, 9:14, 7:12] = True
    res = explain(model, [vol], card.labels[0].name, method="layer-sum", region=region, device="cpu")
    assert res.heatmap.same_grid(vol) and res.heatmap.array.max() == pytest.approx(1.0)
    assert res.info["layers"] and not res.info["all_zero"]


def test_cli_occlusion_and_default_method(cue_model_folder, cue_case, tmp_path, capsys):
    """``--method occlusion`` writes a map on the input grid; without --method a card model gets its
    format's default (Grad-CAM), named in the summary."""
    vol, _ = cue_case
    image = tmp_path / "case.nii.gz"
    write_volume(vol, image)
    args = ["explain", "--model", str(cue_model_folder), "--input", str(image), "--segment", "target",
            "--device", "cpu", "--progress", "none", "--json"]
    assert main(args + ["--output", str(tmp_path / "occ.nii.gz"), "--method", "occlusion"]) == 0
    summary = json.loads(capsys.readouterr().out)
    heat = read_volume(tmp_path / "occ.nii.gz")
    assert summary["method"] == "occlusion" and summary["removal"] == "impute" and summary["layers"] == []
    assert heat.same_grid(vol) and heat.array.max() == pytest.approx(1.0) and heat.array.min() >= 0
    assert main(args + ["--output", str(tmp_path / "default.nii.gz")]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "gradcam"
