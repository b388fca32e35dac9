"""Disk taken by the README's install (command 1): the installed size of every distribution that
``pip install torch torchvision -e .`` pulls, measured in the current environment.

    python benchmarks/install_size.py [deepseg torch torchvision]

Walks the requirement closure (no extras) through the installed distributions' metadata and sums the
sizes of their recorded files; prints the total, the NVIDIA CUDA libraries plus triton (GPU only), and
the largest packages.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(roots: list[str]) -> dict[str, md.Distribution]:
    found: dict[str, md.Distribution] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        found[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def installed_bytes(dist: md.Distribution) -> int:
    return sum(os.path.getsize(p) for f in dist.files or [] if os.path.isfile(p := dist.locate_file(f)))


def main() -> None:
    sizes = {name: installed_bytes(d) for name, d in closure(sys.argv[1:] or ["deepseg", "torch", "torchvision"]).items()}
    gpu = sum(v for n, v in sizes.items() if n.startswith("nvidia") or n == "triton")
    total = sum(sizes.values())
    print(f"{len(sizes)} packages, {total / 1e9:.2f} GB; NVIDIA libraries + triton {gpu / 1e9:.2f} GB; "
          f"the rest {(total - gpu) / 1e9:.2f} GB")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {name:<28} {size / 1e6:7.0f} MB")


if __name__ == "__main__":
    main()
