"""Network architectures implemented in DeepSeg (MONAI provides V-Net and U-Net)."""
