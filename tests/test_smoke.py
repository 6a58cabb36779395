from engramdb import Memory


def test_add_search_roundtrip(mem: Memory) -> None:
    res = mem.add("Alice moved to Lisbon in 2021", user_id="alice", tags=["profile"])
    assert res[0].outcome == "written"
    again = mem.add("Alice   moved to Lisbon in 2021", user_id="alice")
    assert again[0].outcome == "deduplicated" and again[0].id == res[0].id
    hits = mem.search("Lisbon", user_id="alice")
    assert [h.record.id for h in hits] == [res[0].id]
    assert mem.search("Lisbon", user_id="bob").hits == []
