"""Volume input/output with exact geometry, and atomic multi-file outputs."""
from .atomic import AtomicOutputs, full_suffix
from .convert import volume_from_sitk, volume_to_sitk
from .readers import read_volume, write_volume
from .resample import resample_onto

__all__ = ["AtomicOutputs", "full_suffix", "read_volume", "write_volume", "volume_from_sitk", "volume_to_sitk",
           "resample_onto"]
