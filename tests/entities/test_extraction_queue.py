"""The extraction queue: modes, pending counts, failures that lose nothing, concurrency."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from entities_helpers import by_name, open_memory

from engramdb import AsyncMemory, Extraction, HashEmbedder, Settings
from engramdb.extract import EntityExtractor


class PoisonExtractor(EntityExtractor):
    """Our own deterministic double: the real extractor, failing on texts with POISON."""

    def extract(self, texts: list[str]) -> list[Extraction]:
        """Fail the whole batch when one text is poisoned (as a crashing NLP step would)."""
        if any("POISON" in t for t in texts):
            raise RuntimeError("the NLP step crashed")
        return super().extract(texts)


def test_off_leaves_records_pending_and_turning_it_on_catches_up(store_url: str) -> None:
    with open_memory(store_url, extract="off") as m:
        m.add(["John works for Microsoft.", "Maria Garcia lives in Paris."])
        stats = m.stats()["entities"]
        assert (stats["pending"], stats["entities"]) == (2, 0)
        assert m.entities() == []  # off: reads do not extract either
    with open_memory(store_url, extract="inline") as m:
        assert m.stats()["entities"]["pending"] == 2
        m.add("Anna is married to Peter.")  # an inline write drains its namespace
        stats = m.stats()["entities"]
        assert stats["pending"] == 0
        assert {"John", "Microsoft", "Maria Garcia", "Paris", "Anna", "Peter"} <= set(
            by_name(m.entities())
        )
        assert stats["entity_extraction_seconds"] > 0


def test_inline_extracts_before_add_returns(store_url: str) -> None:
    with open_memory(store_url, extract="inline") as m:
        m.add("John works for Microsoft in Seattle", user_id="u1")
        # Counted straight from the tables: nothing is pending, the rows are there.
        stats = m.stats()["entities"]
        assert (stats["pending"], stats["entities"], stats["relations"]) == (0, 3, 1)


def test_background_reads_catch_up_their_scope(store_url: str) -> None:
    with open_memory(store_url, extract="background") as m:
        m.add(["John works for Microsoft.", "Maria Garcia lives in Paris."], user_id="u1")
        m.add("Bob Smith lives in Rome.", user_id="u2")
        assert set(by_name(m.entities(user_id="u2"))) == {"Bob Smith", "Rome"}
        assert set(by_name(m.entities(user_id="u1"))) == {
            "John",
            "Microsoft",
            "Maria Garcia",
            "Paris",
        }


def test_a_failing_nlp_step_loses_no_record_and_doctor_repair_retries(store_url: str) -> None:
    with open_memory(store_url, extract="inline") as m:
        index = m._engine._entities  # noqa: SLF001 - installing our own failing double
        index.extractor = PoisonExtractor()
        results = m.add(["John works for Microsoft.", "POISON: Maria Garcia lives in Paris."])
        assert [r.outcome for r in results] == ["written", "written"]
        assert m.count() == 2
        stats = m.stats()["entities"]
        assert (stats["pending"], stats["failed"]) == (0, 1)
        assert set(by_name(m.entities())) == {"John", "Microsoft"}
        # The step is fixed: doctor --repair queues the parked record again and extracts it.
        index.extractor = EntityExtractor()
        report = m.doctor(repair=True)
        assert report["entities"]["retried"] == 1
        assert m.stats()["entities"]["failed"] == 0
        assert {"Maria Garcia", "Paris"} <= set(by_name(m.entities()))


@pytest.mark.slow
def test_concurrent_writers_each_record_extracted_once(store_url: str) -> None:
    """Four threads over two Memory objects (two workers draining one queue) add at once."""
    mems = [open_memory(store_url), open_memory(store_url, extract="inline")]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            m = mems[k % 2]
            for i in range(10):
                m.add(f"John works for Microsoft, note {k}-{i}.", user_id="u1")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        for m in mems:
            found = by_name(m.entities(user_id="u1"))
            assert set(found) == {"John", "Microsoft"}
            assert found["John"].mention_count == 40
            assert found["Microsoft"].mention_count == 40
            assert m.stats()["entities"]["mentions"] == 80
            john = m.relations(found["John"].id)
            assert len(john.relations) == 1 and len(john.relations[0].record_ids) == 40
    finally:
        for m in mems:
            m.close()


def test_restore_brings_back_entities_rebuilt_from_the_records(
    store_url: str, tmp_path: Path
) -> None:
    with open_memory(store_url) as m:
        m.add(["John works for Microsoft.", "Maria Garcia lives in Paris."], user_id="u1")
        before = {(e.name, e.type, e.mention_count) for e in m.entities()}
        m.backup(tmp_path / "b.bak")
        m.delete_all(all=True)
        assert m.entities() == []
        m.restore(tmp_path / "b.bak")
        assert {(e.name, e.type, e.mention_count) for e in m.entities()} == before
        john = by_name(m.entities())["John"]
        assert [r.type for r in m.relations(john.id).relations] == ["works_for"]


async def test_the_async_face_reads_entities(store_url: str) -> None:
    mem = await AsyncMemory.open(
        store_url, embedder=HashEmbedder(384), settings=Settings(extract="background")
    )
    try:
        await mem.add("John works for Microsoft in Seattle", user_id="u1")
        found = by_name(await mem.entities(user_id="u1"))
        assert set(found) == {"John", "Microsoft", "Seattle"}
        graph = await mem.relations(found["John"].id)
        assert [r.type for r in graph.relations] == ["works_for"]
        assert [r.text for r in await mem.records_about(found["Seattle"].id)] == [
            "John works for Microsoft in Seattle"
        ]
    finally:
        await mem.aclose()


@pytest.mark.fault
def test_a_killed_extraction_process_is_started_again(store_url: str) -> None:
    from engramdb.extract import process

    with open_memory(store_url, extract="background") as m:
        m.add("John works for Microsoft.")
        assert set(by_name(m.entities())) == {"John", "Microsoft"}
        assert process._helper is not None  # noqa: SLF001 - the helper this process started
        helper = process._helper.proc  # noqa: SLF001
        helper.kill()
        helper.wait()
        m.add("Maria Garcia lives in Paris.")
        assert {"Maria Garcia", "Paris"} <= set(by_name(m.entities()))
        assert m.stats()["entities"]["failed"] == 0
        assert process._helper is not None and process._helper.proc.pid != helper.pid  # noqa: SLF001


@pytest.mark.fault
def test_close_abandons_a_batch_the_helper_does_not_answer(store_url: str) -> None:
    """A helper that never answers (stopped: a stand-in for one still loading its pipeline
    on a busy machine) does not hold up ``close`` (SIGTERM's shutdown); the batch it was
    given stays queued for the next process, neither lost nor parked as failed."""
    from engramdb.extract import process

    m = open_memory(store_url, extract="background")
    helper = None
    try:
        extractor = m._engine._entities.extractor  # noqa: SLF001 - the worker's extractor
        helper = process._current(64).proc  # noqa: SLF001 - start the helper now, to stop it
        os.kill(helper.pid, signal.SIGSTOP)
        m.add("John works for Microsoft.")
        deadline = time.monotonic() + 60  # a bound for a failure, not a measurement
        while extractor._waiting is None and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        assert extractor._waiting is helper  # noqa: SLF001 - the worker awaits its answer
        closer = threading.Thread(target=m.close)
        closer.start()
        closer.join(timeout=60)
        assert not closer.is_alive(), "close() waited for a helper that never answers"
        assert helper.poll() is not None
    finally:
        if helper is not None and helper.poll() is None:
            helper.kill()
        m.close()
    with open_memory(store_url, extract="off") as again:
        stats = again.stats()["entities"]
        assert (stats["pending"], stats["failed"]) == (1, 0)
