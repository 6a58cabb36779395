"""Native libraries that crash when one process loads them in the wrong order.

usearch's extension (2.26) carries a statically linked copy of parts of the C++ runtime.
Loaded before onnxruntime's extension (1.32), which uses the system's, it leaves onnxruntime
crashing with a segmentation fault as it loads (in the C++ locale machinery); loaded after
it, both work. The default encoder is onnxruntime's and the SQLite ANN graphs are usearch's,
so a process that searched a large store before it first encoded a text died on that text.

The rule: the ONNX encoder says so when it is made (:func:`onnxruntime_wanted`), and the ANN
code calls :func:`before_usearch` before it first imports usearch, which then loads
onnxruntime first, in such a process only (one that never encodes with ONNX is spared the
import). An encoder first made after usearch was loaded cannot be helped:
:func:`check_onnxruntime_loadable` turns that into an error that says so.
"""

from __future__ import annotations

import sys

from engramdb.errors import EmbeddingError

_onnxruntime_wanted = False


def onnxruntime_wanted() -> None:
    """This process will run onnxruntime: load it before usearch, whenever that comes."""
    global _onnxruntime_wanted
    _onnxruntime_wanted = True


def before_usearch() -> None:
    """Call before importing usearch: loads onnxruntime first if this process will use it."""
    if _onnxruntime_wanted and "onnxruntime" not in sys.modules:
        import onnxruntime  # noqa: F401  (loaded for its order, see the module docstring)


def check_onnxruntime_loadable() -> None:
    """Call before importing onnxruntime: refuse (instead of crashing) after usearch."""
    if "onnxruntime" not in sys.modules and "usearch.compiled" in sys.modules:
        raise EmbeddingError(
            "onnxruntime cannot be loaded after usearch in one process (it crashes): make the "
            "ONNX embedder before opening a store whose ANN graphs are in use"
        )
