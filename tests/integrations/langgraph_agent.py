"""A small LangGraph agent on engramdb, run as a process by test_langgraph_graph.py.

Deterministic nodes (no LLM): ``remember`` stores a fact said as ``remember: …`` in the
user's long-term memory (EngramStore), ``recall`` searches it with the last message.
Checkpoints go to EngramSaver, so a thread interrupted before ``recall`` in one process is
resumed by the next one over the same file.

    python langgraph_agent.py URL start   # thread t1 remembers; thread t2 stops before recall
    python langgraph_agent.py URL resume  # thread t2 resumes and recalls what t1 stored

Prints one JSON object with what the test checks.
"""

from __future__ import annotations

import hashlib
import json
import operator
import sys
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from engramdb import HashEmbedder, Memory
from engramdb.integrations.langgraph import EngramSaver, EngramStore


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    recalled: Annotated[list[str], operator.add]


def remember(state: State, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
    text = state["messages"][-1]
    if text.startswith("remember: "):
        fact = text.removeprefix("remember: ")
        user = config["configurable"]["user_id"]
        key = hashlib.sha256(fact.encode()).hexdigest()[:16]
        store.put(("memories", user), key, {"text": fact})
    return {}


def recall(state: State, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
    user = config["configurable"]["user_id"]
    hits = store.search(("memories", user), query=state["messages"][-1], limit=3)
    return {"recalled": [h.value["text"] for h in hits]}


def build(mem: Memory) -> Any:
    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", END)
    return builder.compile(
        checkpointer=EngramSaver(mem), store=EngramStore(mem), interrupt_before=["recall"]
    )


def main(url: str, phase: str) -> dict[str, Any]:
    with Memory(url, embedder=HashEmbedder(384)) as mem:
        graph = build(mem)
        t1 = {"configurable": {"thread_id": "t1", "user_id": "alice"}}
        t2 = {"configurable": {"thread_id": "t2", "user_id": "alice"}}
        if phase == "start":
            graph.invoke({"messages": ["remember: alice loves ramen"], "recalled": []}, t1)
            graph.invoke(None, t1)  # past the interrupt: thread t1 runs to its end
            graph.invoke({"messages": ["what food does alice love"], "recalled": []}, t2)
            return {"t2_next": list(graph.get_state(t2).next)}
        state = graph.invoke(None, t2)  # resume thread t2 where the last process stopped
        return {
            "t2_recalled": state["recalled"],
            "t2_messages": state["messages"],
            "t1_messages": graph.get_state(t1).values["messages"],
            "t2_history": len(list(graph.get_state_history(t2))),
        }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
