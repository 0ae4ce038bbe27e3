"""Local knowledge: indexes of the user's documents and code (one SQLite database each, FTS5
for BM25 ranking), searched for the passages a task needs, cited by number.

One module per job: chunking (passages that follow a document's structure), store (the
databases), indexer (files through the file-access policy into an index, incrementally),
retrieval (BM25, fusion across indexes), citations (the sources given to a run and the check
that an answer cites only them). docs/knowledge.md is the user's guide.
"""

from ai_stack.knowledge.retrieval import Passage, retrieve
from ai_stack.knowledge.store import IndexStore

__all__ = ["IndexStore", "Passage", "retrieve"]
