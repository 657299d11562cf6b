"""tandem: learn how to mix training data across domains for language models.

The Python API (tandem.api): `optimize`, `train`, `recommend`, `compare`; `InputError` is what they raise on bad
input; `load_config` reads a config file. For a Hugging Face Trainer: `tandem.integrations.hf.TandemCallback`
(the online peers: `OnlineCallback`)."""

__version__ = "0.1.0"

# Imported on first use, so that `import tandem` stays light (torch loads only when a job runs).
_LAZY = {"optimize": "tandem.api", "train": "tandem.api", "recommend": "tandem.api", "compare": "tandem.api",
         "InputError": "tandem.errors", "load_config": "tandem.config", "Config": "tandem.config"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tandem' has no attribute {name!r}")


def __dir__():
    return sorted(n for n in set(globals()) | set(_LAZY) if not n.startswith("_") or n.startswith("__"))
