"""The shipped model catalog: schema, terminology, licences, and that broken entries are refused clearly."""
from __future__ import annotations

import copy
import json

import pytest

from deepseg.errors import ModelError, StoreError
from deepseg.models.catalog import CATALOG_FILE, SCHEMA_FILE, load_catalog, resources_dir, validate_catalog
from deepseg.models.formats import LOADERS

TS_RELEASES = "https://github.com/wasserth/TotalSegmentator/releases/download/"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads((resources_dir() / CATALOG_FILE).read_text())


def test_schema_is_valid_and_catalog_conforms(raw):
    import jsonschema

    schema = json.loads((resources_dir() / SCHEMA_FILE).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(raw)) == []
    catalog = load_catalog()
    assert set(catalog.models) == {m["id"] for m in raw["models"]}


def test_catalog_covers_every_task_group_with_runnable_models():
    catalog = load_catalog()
    groups = {e.task_group for e in catalog.models.values() if e.runnable}
    assert groups == {"organs-at-risk", "tumour-lesion", "anatomy", "brain"}
    for entry in catalog.models.values():
        if entry.runnable:
            assert entry.format in LOADERS, entry.id
            card = entry.card()
            assert [lab.value for lab in card.labels] == [lab["value"] for lab in entry.labels]


def test_totalsegmentator_entries_use_published_release_assets():
    catalog = load_catalog()
    ts = [e for e in catalog.models.values() if e.id.startswith("totalseg-")]
    assert len(ts) >= 10
    for entry in ts:
        urls = [f["url"] for s in entry.sources_of("url") for f in s["files"]]
        if entry.license["commercial_use"] == "licence-required":
            assert urls == [], f"{entry.id}: licensed weights must not have a download source"
            continue
        assert entry.license["id"] == "Apache-2.0"
        assert "ryai.230024" in entry.citation
        assert urls and all(u.startswith(TS_RELEASES) and u.endswith(f"/{entry.upstream['dataset']}.zip")
                            for u in urls), entry.id


def _verhoeff_ok(number: str) -> bool:
    """SNOMED CT identifiers end in a Verhoeff check digit."""
    d = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
         [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
         [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
         [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
    p = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
         [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
         [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
    check = 0
    for i, ch in enumerate(reversed(number)):
        check = d[check][p[i % 8][int(ch)]]
    return check == 0


def test_verhoeff_check_rejects_a_changed_digit():
    assert _verhoeff_ok("10200004") and not _verhoeff_ok("10200005") and not _verhoeff_ok("10200040")


def test_snomed_codes_are_well_formed_concept_ids(raw):
    """Every SCT code passes the Verhoeff check and has the concept partition (00); codes that the DICOM
    standard's SCT dictionary (pydicom) knows keep the same concept there."""
    from pydicom.sr._concepts_dict import concepts

    known = {value for by_value in concepts["SCT"].values() for value in by_value}
    checked = 0
    for model in raw["models"]:
        for lab in model["labels"]:
            for key in ("category", "type", "modifier"):
                code = lab.get(key)
                if not code:
                    continue
                value = code["value"]
                assert _verhoeff_ok(value) and value[-3:-1] == "00", f"{model['id']} {lab['name']} {key} {value}"
                checked += 1
    assert checked > 500
    # the organs-at-risk codes used most in radiotherapy are in the DICOM dictionary
    for value in ("10200004", "45289007", "54019009", "2748008", "18234004", "32849002", "39607008"):
        assert value in known


def test_tg263_names_are_standard_names(raw):
    tg263 = pytest.importorskip("tg263.dictionary", reason="tg263==0.2.0 (AAPM TG-263 name list) not installed")
    allowed = {s.primary_name for s in tg263.ALLOWED_STRUCTURES}
    names = [(m["id"], lab["tg263"]) for m in raw["models"] for lab in m["labels"] if "tg263" in lab]
    assert len(names) > 100
    assert [n for n in names if n[1] not in allowed] == []
    oar = {lab.get("tg263") for m in raw["models"] if m["task_group"] == "organs-at-risk" for lab in m["labels"]}
    assert {"Parotid_L", "Glnd_Submand_R", "SpinalCord", "Esophagus", "Lung_RUL", "OpticNrv_L"} <= oar


def _broken(raw: dict, change) -> str:
    data = copy.deepcopy(raw)
    change(data)
    with pytest.raises(ModelError) as info:
        validate_catalog(data, "test.json")
    return str(info.value)


def test_broken_entries_are_rejected_with_the_entry_and_field(raw):
    msg = _broken(raw, lambda d: d["models"][0]["labels"][1].update(color=[300, 0, 0]))
    assert f"models[0] ({raw['models'][0]['id']!r}).labels[1].color" in msg and "255" in msg
    msg = _broken(raw, lambda d: d["models"][2].pop("license"))
    assert raw["models"][2]["id"] in msg and "license" in msg
    msg = _broken(raw, lambda d: d["models"][0]["sources"][0]["files"][0].update(url="ftp://example.org/x.zip"))
    assert "url" in msg
    msg = _broken(raw, lambda d: d["models"][1].update(id=d["models"][0]["id"]))
    assert "appears twice" in msg
    msg = _broken(raw, lambda d: d["models"][0]["labels"][1].update(value=d["models"][0]["labels"][0]["value"]))
    assert "label value twice" in msg
    msg = _broken(raw, lambda d: d["models"][0].update(format="no-such-format"))
    assert "no-such-format" in msg and "runnable=false" in msg
    msg = _broken(raw, lambda d: d["models"][0]["sources"][0]["files"][0].update(sha256="abc"))
    assert "sha256" in msg


def test_unknown_id_suggests_close_matches():
    with pytest.raises(StoreError, match="totalseg-organs"):
        load_catalog().get("totalseg-organ")


def test_pinned_sources_and_licences():
    catalog = load_catalog()
    fast = catalog.get("totalseg-total-fast")
    (f,) = fast.sources_of("url")[0]["files"]
    assert f["size"] == 135386075 and len(f["sha256"]) == 64
    assert len(fast.labels) == 117
    liver = catalog.get("pyliverlesionseg-liver-lesion-ct")
    (pypi,) = liver.sources_of("pypi")
    assert pypi["requirement"] == "pyliverlesionseg==0.3" and len(pypi["members"]) == 2
    assert catalog.get("totalseg-brain-structures").license["commercial_use"] == "licence-required"
    assert not catalog.get("hd-bet").runnable
    sample = catalog.sample("lits-117")
    assert sample["license"]["commercial_use"] == "not-allowed"


def test_installed_wheel_ships_and_finds_the_catalog(tmp_path):
    """A wheel built from this checkout carries Resources/ as ``deepseg_resources``, and an installed
    deepseg finds its catalog there (not in a source checkout)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("setuptools", reason="building a wheel needs setuptools in this environment")
    import shutil

    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"  # build from a copy: an in-tree build would leave build/ in the checkout
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "DeepSegExtension", "Resources"):
        if (repo / name).is_dir():
            shutil.copytree(repo / name, src / name, ignore=skip)
        elif (repo / name).exists():
            shutil.copy2(repo / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("deepseg-*.whl")
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
                              "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import deepseg, json; from deepseg.models.catalog import load_catalog, resources_dir; "
            "print(json.dumps([deepseg.__file__, str(resources_dir()), len(load_catalog().models)]))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(target)))
    assert run.returncode == 0, run.stderr[-2000:]
    module, resources, count = json.loads(run.stdout)
    assert Path(module).is_relative_to(target) and Path(resources) == target / "deepseg_resources"
    assert count == len(load_catalog().models)
