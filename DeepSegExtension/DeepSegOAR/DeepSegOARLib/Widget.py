"""DeepSegOAR panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import qt
import slicer

from deepseg_slicer.compat import _
from deepseg_slicer.panel import ModelPanelWidget, confirm_replace, show_segmentation

from .Logic import DeepSegOARLogic


class DeepSegOARWidget(ModelPanelWidget):
    defaultNodes = {"inputVolume": "vtkMRMLScalarVolumeNode"}

    def setup(self) -> None:
        self.setupPanel(DeepSegOARLogic(), applyText=_("Apply"))
        self.ui.structureList.connect("itemChanged(QListWidgetItem*)", self.onStructuresChanged)
        self.ui.allStructuresButton.connect("clicked()", lambda: self.setAllStructures(True))
        self.ui.noStructuresButton.connect("clicked()", lambda: self.setAllStructures(False))
        self.ui.fetchModelButton.connect("clicked()", self.onFetchModel)

        self.initializeParameterNode()
        self.refreshModels()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self.run.running:
            return
        p = self._parameterNode
        ready = bool(p and p.inputVolume and p.model)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Segment the input volume") if ready else _("Select an input volume and a model")

    # --- model and structures -------------------------------------------------------------
    def onModelChanged(self, index=None) -> None:
        choice = self._currentChoice()
        self.ui.modelInfoLabel.text = choice.summary if choice else _("No organ-at-risk model in the catalog.")
        self.ui.fetchModelButton.enabled = bool(choice and not choice.installed)
        changed = bool(self._parameterNode and choice and self._parameterNode.model != choice.id)
        kept = "" if changed or not self._parameterNode else self._parameterNode.structures
        wanted = set(filter(None, kept.split(",")))
        self.ui.structureList.blockSignals(True)
        self.ui.structureList.clear()
        for lab in (choice.labels if choice else ()):
            item = qt.QListWidgetItem(f"{lab.name}  ({lab.tg263})" if lab.tg263 else lab.name)
            item.setData(qt.Qt.UserRole, lab.name)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if not wanted or lab.name in wanted else qt.Qt.Unchecked)
            self.ui.structureList.addItem(item)
        self.ui.structureList.blockSignals(False)
        if changed:
            with slicer.util.NodeModify(self._parameterNode.parameterNode):
                self._parameterNode.model = choice.id
                self._parameterNode.structures = ""

    def onStructuresChanged(self, item=None) -> None:
        items = [self.ui.structureList.item(i) for i in range(self.ui.structureList.count)]
        checked = [it.data(qt.Qt.UserRole) for it in items if it.checkState() == qt.Qt.Checked]
        self._parameterNode.structures = "" if len(checked) == len(items) else ",".join(checked)

    def setAllStructures(self, checked: bool) -> None:
        self.ui.structureList.blockSignals(True)
        for i in range(self.ui.structureList.count):
            self.ui.structureList.item(i).setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
        self.ui.structureList.blockSignals(False)
        self.onStructuresChanged()

    # --- run ------------------------------------------------------------------------------
    def confirmStart(self) -> bool:
        if not confirm_replace(self._parameterNode.outputSegmentation):
            return False
        items = [self.ui.structureList.item(i) for i in range(self.ui.structureList.count)]
        if items and not any(it.checkState() == qt.Qt.Checked for it in items):
            slicer.util.errorDisplay(_("Select at least one structure."))
            return False
        return True

    def startTask(self):
        p = self._parameterNode
        structures = [s for s in p.structures.split(",") if s] or None
        return self.logic.segment(p.inputVolume, p.model, structures=structures, useTG263=p.useTG263,
                                  fast=p.fastMode, device=p.device, backend=p.backend, outputNode=p.outputSegmentation,
                                  onProgress=self.run.progress, onLog=self.run.log, onDone=self.onDone)

    def showResult(self, segmentationNode) -> None:
        self._parameterNode.outputSegmentation = segmentationNode
        show_segmentation(segmentationNode, self._parameterNode.inputVolume, self._parameterNode.showIn3D)
