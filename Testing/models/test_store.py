"""The model store: verified downloads from a loopback http server, atomic installs, offline cache hits,
imports of archives packed like the published nnU-Net/TotalSegmentator zips, removal.

Only 127.0.0.1 is contacted; the server is started and stopped by the fixtures.
"""
from __future__ import annotations

import copy
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from deepseg.errors import Cancelled, StoreError
from deepseg.models.catalog import load_catalog, resources_dir
from deepseg.models.card import CARD_FILE
from deepseg.models.formats import detect_format
from deepseg.models.store import MARKER, ModelStore, _move_in
from deepseg.progress import CancelToken, Progress

REPO = Path(__file__).resolve().parents[2]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        server = self.server
        server.requests.append(self.path)
        if self.path not in server.routes:
            self.send_error(404)
            return
        body, mode = server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "truncate":  # promise everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def published_zip(tmp_path_factory) -> Path:
    """A genuine nnU-Net v2 results folder (trained by nnunetv2 on CPU), zipped the way TotalSegmentator's
    release assets are: ``DatasetXXX_Name/Trainer__Plans__3d_fullres/{dataset.json, plans.json, fold_N/...}``."""
    import sys

    sys.path.insert(0, str(REPO / "Testing" / "fixtures"))
    from make_nnunet_model import ensure_nnunet_fixture, pack_results_zip

    results = ensure_nnunet_fixture(REPO / "Testing" / "_fixtures")
    return pack_results_zip(results, tmp_path_factory.mktemp("zip") / f"{results.name}.zip",
                            configurations=["3d_fullres"])


def _catalog(tmp_path: Path, url: str, data: bytes | None, **file_fields):
    """The shipped 'totalseg-total-fast' entry, pointed at the loopback server (pinned to ``data``)."""
    raw = json.loads((resources_dir() / "models.json").read_text())
    entry = copy.deepcopy(next(m for m in raw["models"] if m["id"] == "totalseg-total-fast"))
    entry["id"] = "test-model"
    entry["labels"] = entry["labels"][:2]
    f = {"url": url, "unpack": "zip"}
    if data is not None:
        f.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    f.update(file_fields)
    entry["sources"][0]["files"] = [f]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"catalog_version": 1, "models": [entry]}))
    return load_catalog(path)


def _assert_nothing_installed(store: ModelStore) -> None:
    assert store.installed("test-model") is None
    assert store.problems() == []
    assert not (store.models_dir / "test-model").exists()
    with pytest.raises(StoreError, match="deepseg models fetch test-model"):
        store.path_for("test-model")


def test_fetch_verifies_unpacks_and_installs(tmp_path, server, published_zip):
    data = published_zip.read_bytes()
    server.routes["/m.zip"] = (data, "ok")
    store = ModelStore(tmp_path / "home", _catalog(tmp_path, server.base + "/m.zip", data))
    with pytest.raises(StoreError, match="has not been fetched yet"):
        store.path_for("test-model")
    assert server.requests == []  # path_for never downloads

    seen = []
    installed = store.fetch("test-model", progress=Progress(lambda s, d, t: seen.append((s, d, t))))
    path = store.path_for("test-model")
    assert path == installed.path and path.name.endswith("__3d_fullres")
    assert (path / "dataset.json").is_file() and (path / "plans.json").is_file()
    assert sorted(p.name for p in path.glob("fold_*")) == ["fold_0", "fold_1"]
    assert detect_format(path) == "nnunetv2"
    card = json.loads((path / CARD_FILE).read_text())
    assert [lab["name"] for lab in card["labels"]] == ["spleen", "kidney right"]
    assert card["labels"][0]["type"]["value"] == "78961009"
    record = json.loads((installed.folder / MARKER).read_text())
    assert record["verified"] and record["source"]["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert any(s.startswith("download") and d == t == len(data) for s, d, t in seen)
    assert [p.name for p in store.models_dir.iterdir() if p.is_dir()] == ["test-model"]  # no staging left


def test_checksum_mismatch_installs_nothing(tmp_path, server, published_zip):
    data = published_zip.read_bytes()
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    server.routes["/m.zip"] = (bytes(corrupt), "ok")
    store = ModelStore(tmp_path / "home", _catalog(tmp_path, server.base + "/m.zip", data))
    with pytest.raises(StoreError, match="Checksum mismatch") as info:
        store.fetch("test-model")
    assert "nothing was installed" in str(info.value)
    _assert_nothing_installed(store)


def test_interrupted_download_installs_nothing(tmp_path, server, published_zip):
    data = published_zip.read_bytes()
    server.routes["/m.zip"] = (data, "truncate")
    store = ModelStore(tmp_path / "home", _catalog(tmp_path, server.base + "/m.zip", data))
    with pytest.raises(StoreError, match="interrupted") as info:
        store.fetch("test-model")
    assert "Nothing was installed" in str(info.value)
    _assert_nothing_installed(store)


def test_cancel_during_download_installs_nothing(tmp_path, server, published_zip):
    data = published_zip.read_bytes()
    server.routes["/m.zip"] = (data, "ok")
    store = ModelStore(tmp_path / "home", _catalog(tmp_path, server.base + "/m.zip", data))
    token = CancelToken()

    def cancel_after_first_bytes(stage, done, total):
        if stage.startswith("download") and done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        store.fetch("test-model", progress=Progress(cancel_after_first_bytes, token))
    _assert_nothing_installed(store)


def test_second_fetch_is_an_offline_cache_hit(tmp_path, server, published_zip):
    data = published_zip.read_bytes()
    server.routes["/m.zip"] = (data, "ok")
    catalog = _catalog(tmp_path, server.base + "/m.zip", data)
    first = ModelStore(tmp_path / "home", catalog).fetch("test-model")
    server.shutdown()  # the network is gone
    server.routes.clear()
    again = ModelStore(tmp_path / "home", catalog)
    assert again.fetch("test-model").path == first.path
    assert again.path_for("test-model") == first.path
    assert server.requests == ["/m.zip"]


def test_unpinned_download_needs_consent_and_is_recorded_unverified(tmp_path, server, published_zip):
    data = published_zip.read_bytes()
    server.routes["/m.zip"] = (data, "ok")
    store = ModelStore(tmp_path / "home", _catalog(tmp_path, server.base + "/m.zip", None, approx_size=len(data)))
    with pytest.raises(StoreError, match="no published checksum"):
        store.fetch("test-model")
    assert server.requests == []
    installed = store.fetch("test-model", allow_unpinned=True)
    assert not installed.verified
    assert installed.record["source"]["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_non_https_urls_are_refused_before_any_connection(tmp_path):
    from deepseg.models.download import check_url

    check_url("https://example.org/a.zip")
    check_url("http://127.0.0.1:8000/a.zip")
    for bad in ("http://example.org/a.zip", "ftp://example.org/a.zip", "file:///etc/passwd"):
        with pytest.raises(StoreError, match="only https"):
            check_url(bad)


def test_interrupted_install_leftovers_are_reported_and_replaced(tmp_path, server, published_zip):
    data = published_zip.read_bytes()
    server.routes["/m.zip"] = (data, "ok")
    store = ModelStore(tmp_path / "home", _catalog(tmp_path, server.base + "/m.zip", data))
    # what a killed process leaves: a staging folder, and a model folder without completion marker
    (store.models_dir / ".staging-test-model-abc123").mkdir(parents=True)
    (store.models_dir / "test-model" / "fold_0").mkdir(parents=True)
    reasons = {p.folder.name: p.reason for p in store.problems()}
    assert "interrupted" in reasons[".staging-test-model-abc123"] and "marker" in reasons["test-model"]
    with pytest.raises(StoreError, match="incomplete"):
        store.path_for("test-model")
    store.fetch("test-model")
    assert store.problems() == []
    assert (store.path_for("test-model") / "plans.json").is_file()


def test_import_zip_packed_like_published_archives_then_remove(tmp_path, published_zip):
    store = ModelStore(tmp_path / "home")
    installed = store.import_path(published_zip)
    model_id = published_zip.stem.lower()
    assert installed.id == model_id and store.path_for(model_id) == installed.path
    assert installed.path.name.endswith("__3d_fullres") and detect_format(installed.path) == "nnunetv2"
    assert not installed.verified and installed.record["sha256"] == hashlib.sha256(published_zip.read_bytes()).hexdigest()
    assert not (installed.path / CARD_FILE).exists()  # not a catalog id: the nnU-Net files speak for themselves
    removed = store.remove(model_id)
    assert removed == [store.models_dir / model_id] and not removed[0].exists()
    with pytest.raises(StoreError):
        store.path_for(model_id)
    with pytest.raises(StoreError, match="not installed"):
        store.remove(model_id)


def test_import_under_a_catalog_id_gets_catalog_labels_and_pinned_zip_is_verified(tmp_path, published_zip):
    data = published_zip.read_bytes()
    store = ModelStore(tmp_path / "home", _catalog(tmp_path, "https://example.org/m.zip", data))
    installed = store.import_path(published_zip, "test-model")
    assert installed.verified  # same bytes as the catalog pins
    card = json.loads((installed.path / CARD_FILE).read_text())
    assert card["id"] == "test-model" and card["labels"][1]["tg263"] == "Kidney_R"
    from deepseg.models.loaders import load_model

    model = load_model(store.path_for("test-model"))  # the nnU-Net loader takes names and codes from the card
    assert model.card.id == "test-model" and len(model.networks) == 2
    assert [(lab.value, lab.tg263) for lab in model.card.labels] == [(1, "Spleen"), (2, "Kidney_R")]


def test_import_folder_and_reject_non_models(tmp_path, published_zip):
    import zipfile

    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(published_zip).extractall(unpacked)
    store = ModelStore(tmp_path / "home")
    installed = store.import_path(unpacked / published_zip.stem, "my-model")
    assert (installed.path / "plans.json").is_file()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a model")
    with pytest.raises(StoreError, match="not a model folder DeepSeg recognises|do not hold a model"):
        store.import_path(tmp_path / "junk", "junk")
    assert store.installed("junk") is None and store.problems() == []


def test_zip_with_escaping_member_is_refused(tmp_path):
    import zipfile

    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../outside.txt", "x")
    store = ModelStore(tmp_path / "home")
    with pytest.raises(StoreError, match="unsafe entry"):
        store.import_path(bad)
    assert not (tmp_path / "outside.txt").exists() and store.problems() == []


def test_default_home_honours_environment(tmp_path, monkeypatch):
    from deepseg.models.store import default_home

    monkeypatch.setenv("DEEPSEG_HOME", str(tmp_path / "x"))
    assert default_home() == tmp_path / "x"
    monkeypatch.delenv("DEEPSEG_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_home() == tmp_path / "data" / "deepseg"


def test_import_of_a_published_folder_is_verified_file_by_file(tmp_path, shared):
    """brainchop's published model folder (../shared) matches the catalog's pinned files; a changed copy does not."""
    import shutil

    store = ModelStore(tmp_path / "home")
    original = shared / "models" / "brainchop" / "model18cls"
    installed = store.import_path(original, "brainchop-subcortical-18")
    assert installed.verified and installed.record["format"] == "brainchop-meshnet"
    card = json.loads((installed.path / CARD_FILE).read_text())
    assert next(lab for lab in card["labels"] if lab["name"] == "Thalamus")["type"]["value"] == "42695009"
    changed = tmp_path / "changed"
    shutil.copytree(original, changed)
    (changed / "colormap.json").write_text((original / "colormap.json").read_text().replace("Thalamus", "thalamus"))
    assert not store.import_path(changed, "brainchop-subcortical-18").verified


def test_ids_that_are_paths_never_reach_outside_the_store(tmp_path):
    store = ModelStore(tmp_path / "home")
    (tmp_path / "home" / "models").mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    for bad in ("..", "../keep", str(tmp_path / "keep"), ".staging-x"):
        with pytest.raises(StoreError):
            store.remove(bad)
        with pytest.raises(StoreError, match="neither a model folder nor a catalog id"):
            store.path_for(bad)
    assert (tmp_path / "keep").is_dir() and (tmp_path / "home" / "models").is_dir()


@pytest.mark.parametrize("how", ["file where a folder is expected", "new folder gone"])
def test_a_replace_whose_new_folder_fails_to_move_in_keeps_the_old_install(tmp_path, how):
    """The rename that moves the new install in fails for real (nothing mocked): the old install stays
    in place, whole, and nothing is left aside.  The old code deleted it before that rename."""
    final, aside = tmp_path / "m", tmp_path / ".staging-m-old"
    (final / "fold_0").mkdir(parents=True)
    (final / "fold_0" / "checkpoint.pth").write_bytes(b"old weights")
    (tmp_path / "a-file").write_text("")
    new = tmp_path / "a-file" / "staging" if how.startswith("file") else tmp_path / "gone"
    with pytest.raises((NotADirectoryError, FileNotFoundError)):
        _move_in(new, final, aside)
    assert (final / "fold_0" / "checkpoint.pth").read_bytes() == b"old weights" and not aside.exists()
    new = tmp_path / "staging"
    (new / "fold_0").mkdir(parents=True)
    (new / "fold_0" / "checkpoint.pth").write_bytes(b"new weights")
    _move_in(new, final, aside)
    assert (final / "fold_0" / "checkpoint.pth").read_bytes() == b"new weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "m"]


def test_an_install_set_aside_by_a_killed_replace_is_put_back(tmp_path, published_zip):
    """What a process killed between the two renames of a replace leaves: the old install set aside and
    nothing in place.  It is reported, kept by installs of other ids (even one whose id it starts with),
    and put back by the next install of its id, even when that install fails."""
    store = ModelStore(tmp_path / "home")
    store.import_path(published_zip, "my-model")
    (store.models_dir / "my-model").rename(store.models_dir / ".staging-my-model-old")
    [problem] = store.problems()
    assert problem.id == "my-model" and "set aside" in problem.reason
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a model")
    for model_id in ("my", "my-model"):
        with pytest.raises(StoreError, match="do not hold a model"):
            store.import_path(junk, model_id)
    assert (store.path_for("my-model") / "plans.json").is_file() and store.problems() == []
