"""Tests of the framework adapters (engramdb.integrations)."""
