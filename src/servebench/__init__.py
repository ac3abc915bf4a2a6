"""servebench: a reproducible experiment pipeline for model-serving performance and robustness."""

__version__ = "0.1.0"
