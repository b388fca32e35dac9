"""``deepseg models list | show ID | fetch ID | import PATH | remove ID`` (all with ``--json``).

Models are chosen by task from the catalog; nothing is downloaded except by ``fetch``, which says
what it will download and how big it is first.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from ..models.catalog import TASK_GROUPS, CatalogEntry
from ..models.download import human_size
from ..models.store import Installed, ModelStore
from ..progress import Progress
from .common import add_progress_option, emit, progress_callback


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list, fetch, import and remove pretrained models",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="models_command", required=True)

    p = sub.add_parser("list", help="catalog models by task, with their install status")
    p.add_argument("--group", choices=sorted(TASK_GROUPS), help="only this task group")
    p.add_argument("--installed", action="store_true", help="only installed models (including imports)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("show", help="everything about one model: labels, sources, licence, citation")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("fetch", help="download, verify and install a catalog model")
    p.add_argument("id")
    p.add_argument("--allow-unpinned", action="store_true",
                   help="download files the catalog has no checksum for, recording their sha256 (trust on first use)")
    p.add_argument("--force", action="store_true", help="download again even if installed")
    p.add_argument("--json", action="store_true")
    add_progress_option(p)

    p = sub.add_parser("import", help="install a local model folder or zip (e.g. a published nnU-Net archive)")
    p.add_argument("path", type=Path)
    p.add_argument("--id", help="store it under this id (a catalog id adds the catalog's labels and licence)")
    p.add_argument("--json", action="store_true")
    add_progress_option(p)

    p = sub.add_parser("remove", help="delete an installed model (and leftovers of interrupted installs)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    store = ModelStore()
    return {"list": _list, "show": _show, "fetch": _fetch, "import": _import, "remove": _remove}[
        args.models_command](store, args)


def _emit(args, data, text: str) -> int:
    emit(data, args.json, text)
    return 0


def _status(store: ModelStore, entry: CatalogEntry) -> str:
    if store.installed(entry.id):
        return "installed"
    if (store.models_dir / entry.id).exists():
        return "incomplete"
    if not entry.runnable:
        return "catalog only"
    if not any(s["type"] in ("url", "pypi") for s in entry.sources):
        return "import only"
    return "not fetched"


def _summary(store: ModelStore, entry: CatalogEntry) -> dict:
    found = store.installed(entry.id)
    return {"id": entry.id, "title": entry.title, "task_group": entry.task_group, "modality": entry.modality,
            "status": _status(store, entry), "path": str(found.path) if found else None,
            "download_bytes": entry.download_size(), "license": entry.license["id"],
            "commercial_use": entry.license["commercial_use"], "labels": len(entry.labels),
            "citation": entry.citation, "limitations": entry.limitations}


def _installed_json(found: Installed) -> dict:
    return {"id": found.id, "path": str(found.path), "verified": found.verified, "format": found.record.get("format"),
            "source": found.record.get("source"), "installed": found.record.get("installed")}


def _list(store: ModelStore, args) -> int:
    entries = [e for e in store.catalog.models.values() if not args.group or e.task_group == args.group]
    rows = [_summary(store, e) for e in entries]
    if args.installed:
        rows = [r for r in rows if r["status"] == "installed"]
    imports = [_installed_json(f) for f in store.list_installed() if f.id not in store.catalog.models]
    problems = [{"id": p.id, "folder": str(p.folder), "reason": p.reason} for p in store.problems()]
    data = {"store": str(store.models_dir), "models": rows, "imported": imports, "problems": problems}
    lines = []
    for group, title in TASK_GROUPS.items():
        group_rows = [r for r in rows if r["task_group"] == group]
        if not group_rows:
            continue
        lines.append(f"{title.upper()}")
        for r in group_rows:
            size = human_size(r["download_bytes"]) if r["download_bytes"] else "-"
            lines.append(f"  {r['id']:<36} {r['modality']:<3} {r['status']:<12} {size:>10}  {r['license']}"
                         + ("  (commercial use needs a licence)" if r["commercial_use"] == "licence-required" else "")
                         + ("  (non-commercial)" if r["commercial_use"] == "not-allowed" else "")
                         + ("  (limited: see models show)" if r["limitations"] else ""))
    if imports:
        lines.append("IMPORTED")
        lines += [f"  {i['id']:<36} {i['format']}  {i['path']}" for i in imports]
    for p in problems:
        lines.append(f"! {p['folder']}: {p['reason']} -- `deepseg models remove {p['id']}` deletes it")
    lines.append(f"Store: {store.models_dir}  (set DEEPSEG_HOME to move it). Details: deepseg models show ID")
    return _emit(args, data, "\n".join(lines))


def _show(store: ModelStore, args) -> int:
    if args.id not in store.catalog.models and (found := store.installed(args.id)):
        return _emit(args, _installed_json(found), json.dumps(_installed_json(found), indent=2))
    entry = store.catalog.get(args.id)
    data = dict(entry.data, status=_status(store, entry))
    found = store.installed(entry.id)
    data["path"] = str(found.path) if found else None
    lines = [f"{entry.title}  [{entry.id}]", entry.description]
    if entry.limitations:
        lines.append(f"LIMITATIONS: {entry.limitations}")
    lines += ["",
             f"Task: {TASK_GROUPS[entry.task_group]}   Modality: {entry.modality}   Format: {entry.format}   "
             f"Status: {data['status']}" + (f" at {data['path']}" if found else ""),
             "Inputs: " + ", ".join(f"{i['name']} ({i['modality']})" for i in entry.inputs),
             f"Licence: {entry.license['id']} -- {entry.license['note']}", f"Cite: {entry.citation}"]
    if entry.resources:
        r = entry.resources
        lines.append("Resources: " + "; ".join(
            (f"GPU memory about {v} GB" if k == "gpu_memory_gb" else f"{k.upper()}: {v}") for k, v in r.items()))
    lines.append("Sources:")
    for s in entry.sources:
        if s["type"] == "url":
            for f in s["files"]:
                pin = "sha256 " + f["sha256"][:12] + "..." if "sha256" in f else "no published checksum"
                lines.append(f"  url   {f['url']}  ({human_size(f.get('size') or f.get('approx_size'))}, {pin})")
        elif s["type"] == "pypi":
            lines.append(f"  pypi  {s['requirement']}" + "".join(f"\n          {m['path']}" for m in s.get("members", [])))
        else:
            lines.append(f"  local {s['hint']}")
    lines.append(f"Labels ({len(entry.labels)}):")
    for lab in entry.labels:
        code = lab.get("type")
        lines.append(f"  {lab['value']:>4}  {lab['name']:<34} {lab.get('tg263', ''):<18} "
                     + (f"SCT {code['value']} {code['meaning']}" if code else "")
                     + (f" ({lab['modifier']['meaning']})" if lab.get("modifier") else ""))
    return _emit(args, data, "\n".join(lines))


def _progress(args) -> Progress:
    return Progress(progress_callback(args.progress), args.cancel)


def _fetch(store: ModelStore, args) -> int:
    entry = store.catalog.get(args.id)
    if not args.force and (found := store.installed(entry.id)):
        return _emit(args, _installed_json(found), f"{entry.id} is already installed at {found.path} (no download).")
    plan = entry.download_plan()
    if plan and not args.json:
        print(f"Fetching {entry.id} ({entry.license['id']}):", file=sys.stderr)
        for what, size in plan:
            print(f"  {what}  ({human_size(size)})", file=sys.stderr)
    found = store.fetch(entry.id, progress=_progress(args), allow_unpinned=args.allow_unpinned, force=args.force)
    check = "verified against its sha256" if found.verified else "NOT verified (no published checksum)"
    return _emit(args, _installed_json(found), f"Installed {entry.id} at {found.path} ({check}).")


def _import(store: ModelStore, args) -> int:
    found = store.import_path(args.path, args.id, progress=_progress(args))
    check = ("matches the catalog's published checksums" if found.verified else "user-provided (not checked against "
             "a published checksum)")
    return _emit(args, _installed_json(found), f"Imported {found.id} at {found.path} ({check}).")


def _remove(store: ModelStore, args) -> int:
    removed = store.remove(args.id)
    return _emit(args, {"id": args.id, "removed": [str(p) for p in removed]},
                 "Removed " + ", ".join(str(p) for p in removed))
