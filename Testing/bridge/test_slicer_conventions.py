"""Slicer conventions the modules follow, checked on slicer-core: the demo CT in the Sample Data
module (fetched through the model store when clicked), and a Reload that re-reads the ``*Lib``
packages and ``deepseg_slicer``."""
from __future__ import annotations

import importlib
import json
import sys
import types

import numpy as np

from deepseg.models.store import MARKER, ModelStore
from deepseg_slicer.compat import forget_packages


def test_sample_loads_through_the_store_with_the_catalog_geometry(scene, tmp_path):
    """An installed sample is read from the store (no download) into a volume node."""
    import mrcfile

    from deepseg_slicer import mrml
    from deepseg_slicer.sampledata import load_sample

    store = ModelStore(tmp_path)
    sample = store.catalog.sample("lits-117")
    folder = tmp_path / "samples" / "lits-117"
    folder.mkdir(parents=True)
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    with mrcfile.new(folder / sample["image"]) as mrc:
        mrc.set_data(array)
    (folder / MARKER).write_text(json.dumps({"id": "lits-117", "verified": True}))
    node = load_sample("lits-117", scene, store)
    volume = mrml.volume_from_node(node)
    assert node.GetName() == "lits-117" and node.GetScene() is scene
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == tuple(sample["spacing"])


def test_sample_data_registration(monkeypatch):
    """Each catalog sample becomes a Sample Data button whose download goes through ``load_sample``."""
    from deepseg.models.catalog import load_catalog
    from deepseg_slicer.sampledata import CATEGORY, register_sample_data

    calls = []
    logic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kw: calls.append(kw))
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=logic))
    ids = register_sample_data("icon.png")
    assert ids == list(load_catalog().samples) and "lits-117" in ids
    assert [c["sampleName"] for c in calls] == ids
    assert all(c["category"] == CATEGORY and c["thumbnailFileName"] == "icon.png" and callable(c["customDownloader"])
               and "uris" not in c for c in calls)


def test_forget_packages_makes_the_next_import_read_the_files_again(tmp_path, monkeypatch):
    package = tmp_path / "DeepSegFakeLib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "Logic.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.import_module("DeepSegFakeLib.Logic").VERSION == 1
    (package / "Logic.py").write_text("VERSION = 2  # edited\n")
    assert importlib.import_module("DeepSegFakeLib.Logic").VERSION == 1  # cached: what Slicer's Reload leaves
    assert sorted(forget_packages("DeepSegFakeLib", "deepseg_slicer_absent")) == ["DeepSegFakeLib", "DeepSegFakeLib.Logic"]
    importlib.invalidate_caches()
    assert importlib.import_module("DeepSegFakeLib.Logic").VERSION == 2
    forget_packages("DeepSegFakeLib")
