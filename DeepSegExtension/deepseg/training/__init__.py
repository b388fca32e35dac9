"""Training of card-based models (used by the learning benchmark, the tests and model authors)."""
