"""Native libraries that crash when one process loads them in the wrong order.

usearch's extension (2.26) carries a statically linked copy of parts of the C++ runtime.
Loaded into a process whose system C++ runtime has not set up its default locale yet, it
leaves onnxruntime's extension (1.32, which uses the system runtime) crashing with a
segmentation fault as it loads, in the locale's character conversion. The default encoder
is onnxruntime's and the SQLite ANN graphs are usearch's, so a process that searched a large
store before it first encoded a text died on that text.

The rule: whoever imports usearch calls :func:`before_usearch` first. It loads the system's
C++ runtime and sets up its default locale (``std::locale::classic()``), which is what
loading onnxruntime first would have done, at the cost of a library the process loads
anyway. :func:`check_onnxruntime_loadable` turns the order it cannot mend (usearch imported
by someone else first) into an error that says so.
"""

from __future__ import annotations

import ctypes
import sys
import threading

from engramdb.errors import EmbeddingError

_lock = threading.Lock()
_prepared = False


def before_usearch() -> None:
    """Call before importing usearch (once is enough; later calls return at once)."""
    global _prepared
    with _lock:
        if _prepared:
            return
        try:
            runtime = ctypes.CDLL("libstdc++.so.6")
            runtime._ZNSt6locale7classicEv()  # std::locale::classic()
        except (OSError, AttributeError):
            pass  # no system C++ runtime by that name: nothing of it to protect
        _prepared = True


def check_onnxruntime_loadable() -> None:
    """Call before importing onnxruntime: refuse, instead of crashing, after a usearch
    that was loaded without :func:`before_usearch`."""
    if "onnxruntime" in sys.modules or "usearch.compiled" not in sys.modules:
        return
    if not _prepared:
        raise EmbeddingError(
            "onnxruntime cannot be loaded in this process: usearch was imported before it "
            "without engramdb.native.before_usearch() (the two then crash); call that, or "
            "import onnxruntime, before importing usearch"
        )
