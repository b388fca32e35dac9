"""DeepSegTumor panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import slicer

from deepseg_slicer.compat import _
from deepseg_slicer.panel import ModelPanelWidget, confirm_replace, show_segmentation

from .Logic import MAX_INPUTS, DeepSegTumorLogic


class DeepSegTumorWidget(ModelPanelWidget):
    def setup(self) -> None:
        self.setupPanel(DeepSegTumorLogic(), applyText=_("Apply"))
        self.inputLabels = [self.ui.inputLabel1, self.ui.inputLabel2, self.ui.inputLabel3, self.ui.inputLabel4]
        self.inputSelectors = [self.ui.inputVolumeSelector1, self.ui.inputVolumeSelector2,
                               self.ui.inputVolumeSelector3, self.ui.inputVolumeSelector4]

        self.ui.autoAssignButton.connect("clicked()", self.onAutoAssign)
        self.ui.fetchModelButton.connect("clicked()", self.onFetchModel)

        self.initializeParameterNode()
        self.refreshModels()

    def _inputNodes(self) -> list:
        p = self._parameterNode
        nodes = [p.inputVolume1, p.inputVolume2, p.inputVolume3, p.inputVolume4]
        return nodes[:len(self._currentInputs())]

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self.run.running or not self._parameterNode:
            return
        p = self._parameterNode
        self.ui.roiSelector.enabled = p.useROI
        ready = bool(p.model and self._inputNodes() and all(self._inputNodes()) and (p.roi or not p.useROI))
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Segment") if ready else _("Select a model, a volume for each input and (if used) an ROI")

    # --- inputs ----------------------------------------------------------------------------
    def _currentInputs(self):
        choice = self._currentChoice()
        return list(choice.inputs[:MAX_INPUTS]) if choice else []

    def onModelChanged(self, index=None) -> None:
        choice = self._currentChoice()
        self.ui.modelInfoLabel.text = choice.summary if choice else _("No tumour/lesion model in the catalog.")
        self.ui.fetchModelButton.enabled = bool(choice and not choice.installed)
        specs = self._currentInputs()
        for n, (label, selector) in enumerate(zip(self.inputLabels, self.inputSelectors)):
            used = n < len(specs)
            label.visible = selector.visible = used
            if used:
                label.text = f"{specs[n].name} ({specs[n].modality}):"
        if choice and self._parameterNode.model != choice.id:
            self._parameterNode.model = choice.id
            self.onAutoAssign()

    def onAutoAssign(self) -> None:
        """Fill the inputs from the volumes' names (the user can change them afterwards)."""
        specs = self._currentInputs()
        nodes = self.logic.assignInputs(specs) if specs else []
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            for n, node in enumerate(nodes):
                setattr(self._parameterNode, f"inputVolume{n + 1}", node)

    # --- run ------------------------------------------------------------------------------
    def confirmStart(self) -> bool:
        if not confirm_replace(self._parameterNode.outputSegmentation):
            return False
        self.ui.summaryLabel.text = ""
        return True

    def startTask(self):
        p = self._parameterNode
        return self.logic.segment(self._inputNodes(), p.model, roiNode=p.roi if p.useROI else None,
                                  minLesionSizeMl=p.minLesionSizeMl, keepLargest=p.keepLargest, fast=p.fastMode,
                                  device=p.device, backend=p.backend, outputNode=p.outputSegmentation,
                                  onProgress=self.run.progress, onLog=self.run.log, onDone=self.onDone)

    def showResult(self, segmentationNode) -> None:
        p = self._parameterNode
        p.outputSegmentation = segmentationNode
        show_segmentation(segmentationNode, p.inputVolume1, p.showIn3D)
        self.ui.summaryLabel.text = self.logic.summaryText(self.logic.summarize(segmentationNode, p.inputVolume1))
