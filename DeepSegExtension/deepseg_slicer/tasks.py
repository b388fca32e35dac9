"""Background runs of the ``deepseg`` CLI for the module logics: write the input nodes to a
temporary folder, run the command in its own process (``process.BackgroundJob``), and import the
outputs into the scene only when it succeeded.  Cancel ends the process tree and imports nothing.

The same task serves the panels (non-blocking; the panel's timer calls ``process_events``) and
scripts (``wait()`` blocks and returns the imported node or raises the CLI's error).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from deepseg.errors import Cancelled, DeepSegError, InputError
from deepseg.options import EXPLAIN_OPTIONS, SegmentOptions
from deepseg.volume import Volume

from . import commands, mrml
from .process import BackgroundJob, ProcessRunner
from .progress_lines import ProgressEvent


def crop_to_corners(volume: Volume, corners_lps: np.ndarray, margin: int = 0) -> Volume:
    """The part of ``volume`` inside the box spanned by ``corners_lps`` (LPS mm), as a volume on the
    same grid (origin moved to the first kept voxel)."""
    inv = np.linalg.inv(volume.ijk_to_lps())
    ijk = (np.c_[corners_lps, np.ones(len(corners_lps))] @ inv.T)[:, :3]
    size = np.array(volume.size_ijk)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - margin, 0, size)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1 + margin, 0, size)
    if np.any(hi - lo < 2):
        raise InputError(f"The region of interest does not overlap {volume.name or 'the volume'!r}.",
                         "Move or enlarge the ROI so that it covers the structure to segment.")
    array = volume.array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    origin = volume.ijk_to_lps() @ np.r_[lo, 1.0]
    return Volume(np.ascontiguousarray(array), volume.spacing, tuple(origin[:3]), volume.direction.copy(), volume.name)


@dataclass
class SegmentRequest:
    """One segmentation run as the OAR and Tumor panels (and scripts) describe it."""

    model: str
    input_nodes: Sequence  # volume nodes in the model's input order
    options: SegmentOptions = field(default_factory=SegmentOptions)
    output_node: object = None  # existing segmentation node to replace, or None for a new one
    roi_node: object = None
    name: Optional[str] = None
    all_labels: bool = False  # a segment for every model label, also those the run did not find


class CliTask:
    """Base of the background tasks: temp folder, job, callbacks, result/error, cleanup."""

    def __init__(self, scene, *, runner_factory: Optional[Callable[[], ProcessRunner]] = None,
                 on_progress: Optional[Callable[[ProgressEvent], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None,
                 on_done: Optional[Callable[["CliTask"], None]] = None, python: Optional[str] = None,
                 threads: Optional[int] = None) -> None:
        self.scene = scene
        self.runner_factory = runner_factory
        self.on_progress, self.on_log, self.on_done = on_progress, on_log, on_done
        self.python, self.threads = python, threads
        self.workdir: Optional[Path] = None
        self.job: Optional[BackgroundJob] = None
        self.result = None
        self.error: Optional[DeepSegError] = None

    # subclasses: write inputs into self.workdir and return (sub-command, args); import outputs
    def prepare(self) -> tuple[str, list[str]]:
        raise NotImplementedError

    def import_outputs(self):
        raise NotImplementedError

    def start(self) -> "CliTask":
        self.workdir = Path(tempfile.mkdtemp(prefix="deepseg-"))
        try:
            sub, args = self.prepare()
        except Exception:
            self._cleanup()
            raise
        self.job = BackgroundJob(commands.deepseg_command(sub, args, self.python),
                                 env=commands.deepseg_env(threads=self.threads),
                                 runner=self.runner_factory() if self.runner_factory else None,
                                 on_progress=self.on_progress, on_log=self.on_log, on_finished=self._finished)
        self.job.start()
        return self

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def process_events(self) -> bool:
        return self.job.process_events() if self.job else False

    def cancel(self) -> None:
        if self.job:
            self.job.cancel()

    def wait(self, timeout: Optional[float] = None):
        """Block until done; return the imported result or raise the run's error."""
        self.job.wait(timeout)
        if self.error:
            raise self.error
        return self.result

    def _finished(self, job: BackgroundJob) -> None:
        try:
            if job.state == "finished":
                self.result = self.import_outputs()
            elif job.state == "cancelled":
                self.error = Cancelled()
            else:
                self.error = DeepSegError(job.error_message)
        except DeepSegError as exc:
            self.error = exc
        finally:
            self._cleanup()
        if self.on_done:
            self.on_done(self)

    def _cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def write_input(self, node, name: str, roi_node=None) -> Path:
        """Export a volume node (cropped to ``roi_node`` if given) as NRRD in the work folder."""
        from deepseg.io import write_volume

        volume = mrml.volume_from_node(node)
        if roi_node is not None:
            volume = crop_to_corners(volume, mrml.roi_corners_lps(roi_node))
        path = self.workdir / f"{name}.nrrd"
        write_volume(volume, path)
        return path


class SegmentTask(CliTask):
    """``deepseg segment`` on the request's input nodes; result: the segmentation node."""

    def __init__(self, request: SegmentRequest, scene, **kwargs) -> None:
        super().__init__(scene, **kwargs)
        if not request.input_nodes or any(n is None for n in request.input_nodes):
            raise InputError("Not every model input has a volume.", "Select a volume for each input.")
        self.request = request

    def prepare(self) -> tuple[str, list[str]]:
        r = self.request
        inputs = [self.write_input(node, f"input_{n}", r.roi_node) for n, node in enumerate(r.input_nodes)]
        args = commands.run_args(r.model, inputs, r.options)
        return "segment", args + ["--output", str(self.workdir / "result.seg.nrrd")]

    def import_outputs(self):
        from deepseg.export.seg_nrrd import read_seg_nrrd

        labels, label_info = read_seg_nrrd(self.workdir / "result.seg.nrrd")
        source = self.request.input_nodes[0]
        name = self.request.name or f"{source.GetName()} {self.request.model}"
        return mrml.labels_to_segmentation(labels, label_info, self.scene, node=self.request.output_node,
                                           name=name, source_node=source, all_labels=self.request.all_labels)


class CommandTask(CliTask):
    """Any other ``deepseg`` sub-command run in the background (e.g. ``models fetch``); no import."""

    def __init__(self, subcommand: str, args: Sequence[str], scene=None, **kwargs) -> None:
        super().__init__(scene, **kwargs)
        self.subcommand, self.args = subcommand, list(args)

    def prepare(self) -> tuple[str, list[str]]:
        return self.subcommand, self.args

    def import_outputs(self):
        return self.job.log


@dataclass
class ExplainRequest:
    """One explanation run (DeepSegExplain panel): which segment, which model, which inputs."""

    model: str
    input_nodes: Sequence  # the volumes the model segmented, in its input order
    segmentation_node: object
    segment_id: str
    method: str = "gradcam"
    # the run options; the Explain panel asks for the mirroring-TTA uncertainty map by default
    options: SegmentOptions = field(default_factory=lambda: SegmentOptions(tta=True, uncertainty=True))
    colormap: str = "Inferno"
    uncertainty_colormap: str = "Inferno"
    threshold: Optional[float] = None


class ExplainTask(CliTask):
    """``deepseg explain`` for one segment (the segment's voxels are the region explained);
    result: ``{"heatmap": node, "uncertainty": node or None}`` as coloured overlay volumes."""

    def __init__(self, request: ExplainRequest, scene, **kwargs) -> None:
        super().__init__(scene, **kwargs)
        if not request.input_nodes or any(n is None for n in request.input_nodes):
            raise InputError("Not every model input has a volume.", "Select the volume(s) the model segmented.")
        segment = request.segmentation_node.GetSegmentation().GetSegment(request.segment_id) \
            if request.segmentation_node is not None else None
        if segment is None:
            raise InputError("No segment is selected.", "Pick a segmentation and one of its segments.")
        self.request, self.segment_name = request, segment.GetName()

    def prepare(self) -> tuple[str, list[str]]:
        from deepseg.io import write_volume

        r = self.request
        inputs = [self.write_input(node, f"input_{n}") for n, node in enumerate(r.input_nodes)]
        region, _ = mrml.segmentation_to_labels(r.segmentation_node, r.input_nodes[0], [r.segment_id])
        write_volume(region, self.workdir / "region.nrrd")
        options = r.options.replace(uncertainty=self.workdir / "uncertainty.nrrd" if r.options.uncertainty else False)
        args = commands.run_args(r.model, inputs, options, EXPLAIN_OPTIONS)
        return "explain", args + ["--segment", self.segment_name, "--region", str(self.workdir / "region.nrrd"),
                                  "--output", str(self.workdir / "heatmap.nrrd"), "--method", r.method]

    def import_outputs(self):
        from deepseg.io import read_volume

        r = self.request
        source = r.input_nodes[0]
        out = {"heatmap": mrml.heatmap_to_node(
            read_volume(self.workdir / "heatmap.nrrd"), self.scene, name=f"{self.segment_name} {r.method}",
            colormap=r.colormap, value_range=(0.0, 1.0), threshold=r.threshold, source_node=source), "uncertainty": None}
        if r.options.uncertainty:
            out["uncertainty"] = mrml.heatmap_to_node(
                read_volume(self.workdir / "uncertainty.nrrd"), self.scene, name=f"{self.segment_name} uncertainty",
                colormap=r.uncertainty_colormap, value_range=(0.0, 1.0), source_node=source)
        return out
