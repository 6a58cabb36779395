"""engramdb as LangGraph's long-term store and its checkpointer (``engramdb[langgraph]``).

* :class:`EngramStore`: a ``langgraph.store.base.BaseStore`` (what LangMem's memory tools
  use) over one engramdb namespace, searched with engramdb's hybrid search;
* :class:`EngramSaver`: a ``langgraph.checkpoint.base.BaseCheckpointSaver`` keeping a graph's
  checkpoints, channel values and pending writes in engramdb's store (SQLite or PostgreSQL).

Example::

    from engramdb import Memory
    from engramdb.integrations.langgraph import EngramSaver, EngramStore

    mem = Memory("sqlite:///agent.db")
    graph = builder.compile(checkpointer=EngramSaver(mem), store=EngramStore(mem))
"""

from engramdb.integrations.langgraph.saver import EngramSaver
from engramdb.integrations.langgraph.store import EngramStore

__all__ = ["EngramSaver", "EngramStore"]
