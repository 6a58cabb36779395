"""Every input that once gave a 5xx answers 4xx through REST, one status per kind.

Found by trying the service as a user and an attacker would: times at the calendar's edges
with extreme offsets, integers past 64 bits, lone surrogates and bytes that are not UTF-8,
empty lists, ``$in`` lists at their limit, a garbage restore, identifiers with a trailing
newline, unknown query parameters. The library side is in tests/contract/test_contract_edges.py.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx
import pytest
from server_helpers import LEAKS, assert_error

from engramdb.stores.sqlite.connection import translate

NS = "/v1/namespaces/edges"
EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
HUGE = "1" + "0" * 30


async def post_raw(client: httpx.AsyncClient, method: str, url: str, body: str | bytes) -> Any:
    return await client.request(
        method, url, content=body, headers={"content-type": "application/json"}
    )


async def add_one(client: httpx.AsyncClient, text: str = "an edge case") -> str:
    resp = await client.post(f"{NS}/records", json={"text": text})
    assert resp.status_code == 200, resp.text
    rid: str = resp.json()["results"][0]["id"]
    return rid


@pytest.mark.parametrize("when", EDGE_TIMES)
async def test_times_outside_the_calendar_in_utc_are_422(
    client: httpx.AsyncClient, when: str
) -> None:
    rid = await add_one(client)
    for field in ("occurred_at", "expires_at", "valid_from", "valid_to"):
        body = assert_error(
            await client.post(f"{NS}/records", json={"text": "t", field: when}),
            422,
            "validation_error",
        )
        assert "outside the supported range" in str(body["message"])
        if field != "occurred_at":
            assert_error(await client.patch(f"{NS}/records/{rid}", json={field: when}), 422)
    assert_error(await client.post(f"{NS}/search", json={"query": "x", "valid_at": when}), 422)
    flt = {"filter": {"created_at": {"$lt": when}}}
    assert_error(await client.post(f"{NS}/records/count", json=flt), 422)
    assert_error(
        await client.get(f"{NS}/threads/t/events", params={"since": when}), 422, "validation_error"
    )
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 1


async def test_times_at_the_edges_in_range_are_stored(client: httpx.AsyncClient) -> None:
    for when in ("0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59+14:00"):
        resp = await client.post(f"{NS}/records", json={"text": f"at {when}", "valid_to": when})
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/records", f'{{"text":"a","metadata":{{"x":{HUGE}}}}}'),
        ("POST", "/records", '{"text":"a","metadata":{"x":1e400}}'),
        ("POST", "/records/count", f'{{"filter":{{"metadata.x":{{"$gt":{HUGE}}}}}}}'),
        ("POST", "/records/count", f'{{"filter":{{"importance":{{"$gt":{HUGE}}}}}}}'),
        ("POST", "/records/count", f'{{"filter":{{"version":{HUGE}}}}}'),
        ("POST", "/records/count", f'{{"filter":{{"metadata.x":{{"$in":[1,{HUGE}]}}}}}}'),
        ("PUT", "/threads/t/slots", f'{{"values":{{"a":{HUGE}}}}}'),
        ("POST", "/search", f'{{"query":"a","filter":{{"version":{{"$lte":-{HUGE}}}}}}}'),
    ],
)
async def test_integers_past_64_bits_are_422(
    client: httpx.AsyncClient, method: str, path: str, body: str
) -> None:
    assert_error(await post_raw(client, method, f"{NS}{path}", body), 422, "validation_error")


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/records", '{"text":"a\\ud800b"}'),
        ("POST", "/records", '{"text":"ab","user_id":"\\ud800"}'),
        ("POST", "/records", '{"text":"ab","tags":["\\udfff"]}'),
        ("POST", "/records", '{"text":"ab","source":"\\ud800"}'),
        ("POST", "/records", '{"text":"ab","metadata":{"\\ud800":1}}'),
        ("POST", "/search", '{"query":"a","user_id":"\\ud800"}'),
        ("POST", "/records/count", '{"filter":{"user_id":"\\ud800"}}'),
        ("POST", "/records/count", '{"filter":{"metadata.x":"\\ud800"}}'),
        ("POST", "/threads/t/events", '{"action":"\\ud800"}'),
        ("POST", "/threads/t/messages", '{"messages":[{"role":"user","content":"\\ud800"}]}'),
        ("PUT", "/threads/t/slots", '{"values":{"\\ud800":1}}'),
        ("POST", "/forget", '{"user_id":"\\ud800"}'),
        ("POST", "/records", b'{"text":"a\xff\xfeb"}'),
        ("POST", "/search", b'{"query":"\xc3\x28"}'),
    ],
)
async def test_lone_surrogates_and_bytes_that_are_not_utf8_are_422(
    client: httpx.AsyncClient, method: str, path: str, body: str | bytes
) -> None:
    assert_error(await post_raw(client, method, f"{NS}{path}", body), 422, "validation_error")


async def test_empty_lists(client: httpx.AsyncClient) -> None:
    await client.post(f"{NS}/records", json={"text": "tagged", "tags": ["a"]})
    assert (await client.post(f"{NS}/records/count", json={"tags": []})).json()["count"] == 1
    resp = await client.post(f"{NS}/search", json={"query": "tagged", "tags": []})
    assert resp.status_code == 200 and len(resp.json()["hits"]) == 1
    assert (await client.post(f"{NS}/records/get-many", json={"ids": []})).json() == {"records": []}
    for flt in ({"user_id": {"$in": []}}, {"tags": {"$nin": []}}, {"metadata.a": {"$in": []}}):
        assert (await client.post(f"{NS}/records/count", json={"filter": flt})).status_code == 200
    assert_error(await client.post(f"{NS}/records", json={"items": []}), 422)
    assert_error(await client.post(f"{NS}/threads/t/messages", json={"messages": []}), 422)
    assert_error(await client.post(f"{NS}/records/count", json={"filter": {"$or": []}}), 422)
    flt = {"filter": {"tags": {"$contains": []}}}
    assert_error(await client.post(f"{NS}/records/count", json=flt), 422)


@pytest.mark.parametrize("field", ["user_id", "id", "tags", "metadata.a", "importance"])
async def test_in_lists_at_their_limit_answer(client: httpx.AsyncClient, field: str) -> None:
    await client.post(f"{NS}/records", json={"text": "one", "user_id": "v1", "tags": ["v1"]})
    values: list[Any] = (
        [i / 1000 for i in range(1000)] if field == "importance" else [f"v{i}" for i in range(1000)]
    )
    for op in ("$in", "$nin"):
        flt = {field: {op: values}}
        resp = await client.post(f"{NS}/records/count", json={"filter": flt})
        assert resp.status_code == 200, resp.text
        resp = await client.post(f"{NS}/search", json={"query": "one", "filter": flt})
        assert resp.status_code == 200, resp.text
    wide = {"$or": [{field: {"$in": values}}] * 200}
    assert (await client.post(f"{NS}/records/count", json={"filter": wide})).status_code == 200
    over = {field: {"$in": [*values, "one more"]}}
    body = assert_error(
        await client.post(f"{NS}/records/count", json={"filter": over}), 413, "limit_exceeded"
    )
    assert body["details"]["limit"] == "max_in_values"


async def test_garbage_restore_and_import_uploads_are_422(client: httpx.AsyncClient) -> None:
    await add_one(client)
    octet = {"content-type": "application/octet-stream"}
    for garbage in (b"garbage" * 100, b"", b"SQLite format 3\x00" + b"\x00" * 5000):
        resp = await client.post("/v1/admin/restore", content=garbage, headers=octet)
        body = assert_error(resp, 422, "validation_error")
        assert "the uploaded file" in str(body["message"]) and "/tmp" not in resp.text
    ndjson = {"content-type": "application/x-ndjson"}
    for garbage in (
        b"\xff\xfe\n",
        b"garbage\n",
        b'{"format":"engramdb-export","version":1}\n\xff\n',
    ):
        resp = await client.post("/v1/admin/import", content=garbage, headers=ndjson)
        assert_error(resp, 422, "validation_error")
    assert (await client.post(f"{NS}/records/count", json={})).json()["count"] == 1


@pytest.mark.parametrize(
    "method,url,body",
    [
        ("GET", "/v1/namespaces/edges%0A/records", None),
        ("GET", f"{NS}/records/an-id%0A", None),
        ("GET", f"{NS}/threads/t%0A/events", None),
        ("POST", f"{NS}/records", {"text": "x", "user_id": "alice\n"}),
        ("POST", f"{NS}/records", {"text": "x", "id": "an-id\n"}),
        ("POST", f"{NS}/records/get-many", {"ids": ["an-id\n"]}),
        ("POST", f"{NS}/records", {"text": "x", "type": "fact\n"}),
        ("POST", "/v1/admin/export", {"namespace": "edges\n"}),
    ],
)
async def test_a_trailing_newline_fails_every_identifier(
    client: httpx.AsyncClient, method: str, url: str, body: Any
) -> None:
    assert_error(await client.request(method, url, json=body), 422, "validation_error")


async def test_unknown_query_parameters_are_422(client: httpx.AsyncClient) -> None:
    await client.post(f"{NS}/records", json={"text": "x", "user_id": "alice"})
    body = assert_error(await client.get(f"{NS}/records", params={"userid": "bob"}), 422)
    assert body["details"]["field"] == "userid" and "user_id" in str(body["message"])
    assert_error(await client.get("/health", params={"verbose": "1"}), 422)
    assert_error(await client.post(f"{NS}/search?top=3", json={"query": "x"}), 422)
    ok = await client.get(f"{NS}/records", params={"user_id": "alice", "limit": 5})
    assert ok.status_code == 200 and len(ok.json()["records"]) == 1


async def test_one_status_per_kind(client: httpx.AsyncClient) -> None:
    rid = await add_one(client)
    assert_error(await client.post(f"{NS}/search", json={"query": "x", "top_k": 0}), 422)
    assert_error(await client.post(f"{NS}/search", json={"query": "x", "offset": -1}), 422)
    assert_error(await client.post(f"{NS}/search", json={"query": "x", "top_k": 10**6}), 413)
    patch = {"importance": 0.5, "expected_version": -1}
    assert_error(await client.patch(f"{NS}/records/{rid}", json=patch), 422, "validation_error")
    slots = {"values": {"a": 1}, "expected_version": -1}
    assert_error(await client.put(f"{NS}/threads/t/slots", json=slots), 422, "validation_error")
    ids = {"ids": [f"id{i}" for i in range(1001)]}
    body = assert_error(await client.post(f"{NS}/records/get-many", json=ids), 413)
    assert body["details"]["limit"] == "max_top_k"


def test_sqlite_errors_never_carry_sql_text() -> None:
    conn = sqlite3.connect(":memory:")
    for sql in ("SELEC nonsense FROM records WHERE x = 1", "SELECT * FROM no_such_table"):
        with pytest.raises(sqlite3.Error) as raised:
            conn.execute(sql)
        err = translate(raised.value, "counting records")
        assert not LEAKS.search(err.message) and "no_such_table" not in err.message
        assert "counting records" in err.message
    conn.close()


async def test_no_error_body_leaks_sql_under_a_battery(client: httpx.AsyncClient) -> None:
    await add_one(client)
    battery = [
        {"filter": {"metadata.a": {"$in": [json.dumps({"x": 1})] * 20}}},
        {"filter": {"$not": {"$or": [{"tags": {"$nin": [f"t{i}" for i in range(999)]}}]}}},
        {"filter": {"metadata.a.b.c.d.e.f.g": {"$contains": "' OR 1=1 --"}}},
        {"tags": ["'; DROP TABLE records; --"], "user_id": "x' OR '1'='1"},
    ]
    for body in battery:
        resp = await client.post(f"{NS}/records/count", json=body)
        assert resp.status_code < 500 and not LEAKS.search(resp.text), resp.text
