"""First-use dependency check: torch (through Slicer's PyTorch extension when it is installed) and
the packages of ``Resources/requirements.txt``.  The check is pure Python; asking and installing
are injected (a dialog and ``slicer.util.pip_install`` in Slicer, plain callables in tests)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

MINIMUM_TORCH = ">=2.1"


def read_requirements(path: "str | Path") -> list[str]:
    """Requirement lines of a requirements file (comments and blank lines dropped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def unmet(requirements: Sequence[str]) -> list[str]:
    """The requirements that are not installed, or installed in a version outside the range."""
    from packaging.requirements import Requirement

    missing = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


@dataclass
class DependencyPlan:
    """What must be installed before the first run: torch and/or pip requirements."""

    torch: bool = False
    packages: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.torch and not self.packages

    def describe(self) -> str:
        lines = []
        if self.torch:
            lines.append(f"PyTorch ({MINIMUM_TORCH}; through the PyTorch extension when it is installed, "
                         "which picks the build matching your GPU)")
        lines += self.packages
        return "\n".join(f"  - {line}" for line in lines)


def plan(requirements_file: "str | Path") -> DependencyPlan:
    return DependencyPlan(torch=importlib.util.find_spec("torch") is None,
                          packages=unmet(read_requirements(requirements_file)))


def ensure(requirements_file: "str | Path", *, confirm: Callable[[str], bool],
           install_packages: Callable[[list[str]], None], install_torch: Callable[[], bool],
           log: Optional[Callable[[str], None]] = None) -> bool:
    """Install what is missing after the user agreed; False when they declined or torch failed."""
    todo = plan(requirements_file)
    if todo.empty:
        return True
    if not confirm("DeepSeg needs these Python packages, which are not installed yet:\n"
                   f"{todo.describe()}\n\nInstall them now? (this can take several minutes)"):
        return False
    if todo.torch:
        if log:
            log("Installing PyTorch...")
        if not install_torch():
            return False
    if todo.packages:
        if log:
            log("Installing: " + " ".join(todo.packages))
        install_packages(todo.packages)
    return True


def install_torch_in_slicer() -> bool:
    """PyTorch through the PyTorch extension (it chooses the CUDA/CPU build); pip as a fallback."""
    try:
        import PyTorchUtils  # the "PyTorch" extension's module
    except ImportError:
        import slicer

        slicer.util.pip_install(f"torch{MINIMUM_TORCH}")
        return importlib.util.find_spec("torch") is not None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if logic.torchInstalled():
        return True
    return logic.installTorch(askConfirmation=False, torchVersionRequirement=MINIMUM_TORCH) is not None
