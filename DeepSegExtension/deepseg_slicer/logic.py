"""Base of the four module logics: the scene they work in, how background tasks are started
(non-blocking for the panels, ``wait=True`` for scripts) and the injected process runner."""
from __future__ import annotations

from typing import Callable, Optional

from .compat import ScriptedLoadableModuleLogic
from .process import ProcessRunner


class DeepSegLogicBase(ScriptedLoadableModuleLogic):
    """``scene`` defaults to ``slicer.mrmlScene``; ``runner_factory`` makes the process runner
    (default: ``SubprocessRunner``); ``python`` overrides the interpreter (default: PythonSlicer)."""

    def __init__(self, scene=None, runner_factory: Optional[Callable[[], ProcessRunner]] = None,
                 python: Optional[str] = None, threads: Optional[int] = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        if scene is None:
            import slicer

            scene = getattr(slicer, "mrmlScene", None)
        self.scene = scene
        self.runner_factory, self.python, self.threads = runner_factory, python, threads

    def task_options(self, onProgress=None, onLog=None, onDone=None) -> dict:
        return dict(runner_factory=self.runner_factory, python=self.python, threads=self.threads,
                    on_progress=onProgress, on_log=onLog, on_done=onDone)

    @staticmethod
    def run(task, wait: bool):
        """Start ``task``; with ``wait`` block and return its result (raising its error)."""
        task.start()
        return task.wait() if wait else task
