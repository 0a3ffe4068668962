"""xmodal: do neural cross-modal mappings bridge modalities? (Collell & Moens, ACL 2018)."""

from xmodal.hookspecs import hookimpl
from xmodal.neighbors import knn, mnno

__all__ = ["hookimpl", "knn", "mnno"]
