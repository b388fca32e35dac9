"""Inference engine: device choice, sliding window with test-time mirroring, pre/post-processing."""
