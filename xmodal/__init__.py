"""xmodal: do neural cross-modal mappings bridge modalities? (Collell & Moens, ACL 2018)."""

import os

# numpy's OpenBLAS worker threads keep spinning after each call and starve torch's threads when
# the two alternate in one process (measured: the quickstart took 99 s instead of 7 s). xmodal's
# heavy linear algebra runs in torch, so OpenBLAS gets one thread unless the user chose otherwise.
# This must happen before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from xmodal.hookspecs import hookimpl
from xmodal.neighbors import knn, mnno

__all__ = ["hookimpl", "knn", "mnno"]
