"""Scale-out: filter hazardous documents out of training corpora (local multiprocessing or Ray Data)."""

from .filter import FilterSummary, filter_corpus
from .sources import UsageError
from .windows import classify_documents, iter_windows
from .worker import GuardSpec

__all__ = ["FilterSummary", "GuardSpec", "UsageError", "classify_documents", "filter_corpus", "iter_windows"]
