"""nnU-Net v2 results folders in DeepSeg's own inference engine (see ``model.py``)."""
from .model import NnUNetModel, load_nnunet_folder

__all__ = ["NnUNetModel", "load_nnunet_folder"]
