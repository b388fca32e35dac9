"""Parameter node, logic and widget of the DeepSegTumor module (one job per file)."""
