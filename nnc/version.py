"""The version of nnc: one place (the package metadata reads it too, see pyproject.toml)."""
__version__ = "0.1.0"
