"""Parameter node, logic and widget of the DeepSegExplain module (one job per file)."""
