"""ffmrec: Federated Foundation Models for RECommendation.

``ffmrec.run(recipe, dataset=..., overrides={...}, out=...)`` trains a recipe and ``ffmrec.load(run_dir)`` opens a
finished run (see :mod:`ffmrec.api`); both are imported on first use, so ``import ffmrec`` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["load", "run"]


def __getattr__(name: str):
    if name in ("run", "load"):
        from ffmrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'ffmrec' has no attribute {name!r}")
