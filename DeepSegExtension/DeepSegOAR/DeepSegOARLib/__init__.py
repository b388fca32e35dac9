"""Parameter node, logic and widget of the DeepSegOAR module (one job per file)."""
