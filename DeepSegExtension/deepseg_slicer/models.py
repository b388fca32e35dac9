"""What the panels' model selectors show: catalog models of a task group, with description,
licence, citation, download size, named inputs, labels and whether the weights are installed; and
the modules' acknowledgement text citing those models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from deepseg.models.card import InputSpec, LabelInfo

from .compat import _

OAR_GROUPS = ("organs-at-risk", "anatomy")
TUMOUR_GROUPS = ("tumour-lesion", "brain")


@dataclass(frozen=True)
class ModelChoice:
    id: str
    title: str
    description: str
    license: str
    commercial_use: str
    citation: str
    inputs: tuple[InputSpec, ...]
    labels: tuple[LabelInfo, ...]
    installed: bool
    runnable: bool
    download_bytes: Optional[int]
    limitations: str = ""

    @property
    def summary(self) -> str:
        """Description + licence + size, for the panel's info box (plain text)."""
        size = f"{self.download_bytes / 2**20:.0f} MB download" if self.download_bytes else "download size unknown"
        state = "installed" if self.installed else size
        limits = f"\nLimitations: {self.limitations}" if self.limitations else ""
        return (f"{self.description}{limits}\nLicence: {self.license} (commercial use: {self.commercial_use}); "
                f"{state}.\nCite: {self.citation}")


def model_choices(groups: Sequence[str], catalog=None, store=None) -> list[ModelChoice]:
    """Runnable catalog models in ``groups``, installed ones first, then by title."""
    from deepseg.models.catalog import load_catalog
    from deepseg.models.store import ModelStore

    catalog = catalog or load_catalog()
    store = store or ModelStore(catalog=catalog)
    out = []
    for entry in catalog.models.values():
        if entry.task_group not in groups:
            continue
        card = entry.card()
        lic = entry.license
        out.append(ModelChoice(
            id=entry.id, title=entry.title, description=entry.description, license=lic["id"],
            commercial_use=lic.get("commercial_use", "unknown"), citation=entry.citation,
            inputs=tuple(card.inputs), labels=tuple(card.labels), installed=store.installed(entry.id) is not None,
            runnable=bool(entry.runnable), download_bytes=entry.download_size(), limitations=entry.limitations or ""))
    return sorted((c for c in out if c.runnable), key=lambda c: (not c.installed, c.title.lower()))


def citations(groups: Sequence[str]) -> list[str]:
    """Distinct citations of the models in ``groups``."""
    try:
        seen: list[str] = []
        for choice in model_choices(groups):
            if choice.citation and choice.citation not in seen:
                seen.append(choice.citation)
        return seen
    except Exception:  # noqa: BLE001 - a broken catalog must not stop the module from loading
        return []


def acknowledgement(groups: Sequence[str]) -> str:
    """A module's acknowledgement text: please cite the model you use, then the models' citations."""
    return _("DeepSeg runs published models; please cite the model you use:") + \
        "<ul>" + "".join(f"<li>{c}</li>" for c in citations(groups)) + "</ul>"
