"""``python -m nnc``: the ``nnc`` command (as the ``nnc`` script installs it)."""
import sys

from .cli import main

sys.exit(main())
