"""tandem: learn how to mix training data across domains for language models."""

__version__ = "0.1.0"


def __getattr__(name):
    # `tandem.optimize`, `tandem.train`, `tandem.recommend` (tandem.api), imported on first use so that `import
    # tandem` stays light.
    if name in ("optimize", "train", "recommend", "compare"):
        from tandem import api

        return getattr(api, name)
    raise AttributeError(f"module 'tandem' has no attribute {name!r}")
