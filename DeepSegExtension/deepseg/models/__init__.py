"""Model descriptions (cards), format loaders, the catalog and the local model store."""
