"""DeepSegExplain panel: edits the parameter node and calls the logic; nothing else."""
from __future__ import annotations

import slicer

from deepseg_slicer.compat import _
from deepseg_slicer.panel import ModelPanelWidget, fill_model_combo, load_models

from .Logic import DeepSegExplainLogic


class DeepSegExplainWidget(ModelPanelWidget):
    startFailedText = _("Could not start the explanation.")

    def setup(self) -> None:
        # method, overlay and colour-map combo boxes: filled from the parameters' Choice by connectGui
        self.setupPanel(DeepSegExplainLogic(), applyText=_("Compute maps"))

        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.segmentSelector.setCurrentNode)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.toSegmentButton.connect("clicked()", self.onToSegment)

        self._choices = load_models(self.logic)
        self.initializeParameterNode()
        fill_model_combo(self.ui.modelComboBox, self._choices, self._parameterNode.model)

    def _shownMap(self):
        p = self._parameterNode
        return p.uncertaintyVolume if p.overlay == "uncertainty" else p.heatmapVolume

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable buttons and keep the overlay in step with colour map, opacity and threshold."""
        p = self._parameterNode
        if not p:
            return
        if not self.run.running:
            ready = bool(p.segmentation and p.segmentId and p.inputVolume and p.model)
            self.ui.applyButton.enabled = ready
            self.ui.applyButton.toolTip = _("Compute the maps") if ready else _("Pick a segmentation, a segment, its image and the model")
        shown = self._shownMap()
        self.ui.toSegmentButton.enabled = bool(shown and p.segmentation)
        if shown and p.inputVolume:
            self.logic.showOverlay(p.inputVolume, shown, colormap=p.colormap, opacity=p.opacity, threshold=p.threshold)

    def onSegmentChanged(self, segmentId) -> None:
        self._parameterNode.segmentId = segmentId or ""
        segmentation = self._parameterNode.segmentation
        segment = segmentation.GetSegmentation().GetSegment(segmentId) if segmentation and segmentId else None
        guess = self.logic.modelFor(segment.GetName(), self._choices) if segment else None
        if guess:
            fill_model_combo(self.ui.modelComboBox, self._choices, guess)
            self.onModelChanged()

    def onModelChanged(self, index=None) -> None:
        choice = self._currentChoice()
        self.ui.modelInfoLabel.text = choice.summary if choice else ""
        if choice:
            self._parameterNode.model = choice.id

    def startTask(self):
        p = self._parameterNode
        inputs = self.logic.inputsFor(p.model, p.inputVolume)
        return self.logic.explain(p.segmentation, p.segmentId, p.model, inputs, method=p.method,
                                  uncertainty=p.computeUncertainty, device=p.device, colormap=p.colormap,
                                  threshold=p.threshold, onProgress=self.run.progress, onLog=self.run.log,
                                  onDone=self.onDone)

    def showResult(self, maps) -> None:
        with slicer.util.NodeModify(self._parameterNode.parameterNode):
            self._parameterNode.heatmapVolume = maps["heatmap"]
            self._parameterNode.uncertaintyVolume = maps["uncertainty"]
            self._parameterNode.overlay = "heat map"

    def onToSegment(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not make a segment from the map."), waitCursor=True):
            self.logic.thresholdToSegment(self._shownMap(), p.threshold, p.segmentation)
