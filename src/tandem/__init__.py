"""tandem: learn how to mix training data across domains for language models."""

__version__ = "0.1.0"
