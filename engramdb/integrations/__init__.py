"""Adapters that make engramdb the backend of agent frameworks (a surface layer).

Each adapter drives the facades (``Memory``) only, like the REST server and the CLI, and
imports its framework lazily from its own subpackage, so ``import engramdb`` never needs it.
"""
