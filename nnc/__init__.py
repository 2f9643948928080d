"""nnc: a declarative model-spec compiler for neural networks.

    import nnc
    model = nnc.load("specs/iris_mlp.nnspec")   # compile + initialise (nnc.api.Model)
    model.fit(x, y, epochs=50)
    model.predict(x)

Importing ``nnc`` is cheap: the API (and NumPy) load on first use, so ``nnc check`` stays fast.
"""
from .version import __version__

__all__ = ["load", "Model", "compile_source", "NncError", "__version__"]


def __getattr__(name):
    if name in ("load", "Model"):
        from . import api
        return getattr(api, name)
    if name == "compile_source":
        from .compiler.lower import compile_source
        return compile_source
    if name == "NncError":
        from .errors import NncError
        return NncError
    raise AttributeError(f"module 'nnc' has no attribute {name!r}")
