"""Package list only (everything else is in pyproject.toml): the ``deepseg`` and ``deepseg_slicer``
trees, plus ``deepseg_resources`` (schemas, catalog, terminology), which lives in ``Resources/`` (see
``package-dir``) and which setuptools' automatic discovery cannot find under that folder name."""
from setuptools import find_namespace_packages, setup

setup(packages=find_namespace_packages("DeepSegExtension", include=["deepseg", "deepseg.*", "deepseg_slicer",
                                                                    "deepseg_slicer.*"])
      + ["deepseg_resources"] + [f"deepseg_resources.{p}" for p in find_namespace_packages("Resources")])
