"""``/docs``: the API reference as one self-contained HTML page, served by the service itself.

Why not Swagger UI: FastAPI's page loads its script and stylesheet from a CDN, so on a
machine without internet (where a memory service often runs) ``/docs`` was blank, and no
installed package ships the Swagger UI assets. This page is rendered on the server from the
same OpenAPI document (``/openapi.json``): every operation with its parameters, request
body, responses and the schemas they name, with no external asset and no script.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h2{border-bottom:1px solid #ccc;margin-top:2rem}
details{border:1px solid #ddd;border-radius:4px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer}
.m{display:inline-block;min-width:4.2rem;font-weight:bold;font-family:monospace}
.get{color:#0a6}.post{color:#06c}.put{color:#b60}.patch{color:#a0a}.delete{color:#c22}
code,pre{background:#f6f6f6;padding:.1rem .3rem;border-radius:3px}
pre{padding:.5rem;overflow:auto;max-height:24rem}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _params(op: dict[str, Any]) -> str:
    params = op.get("parameters") or []
    if not params:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(p.get('name'))}</code></td><td>{_e(p.get('in'))}</td>"
        f"<td>{'yes' if p.get('required') else ''}</td>"
        f"<td><code>{_e(json.dumps(p.get('schema', {}), sort_keys=True))}</code></td>"
        f"<td>{_e(p.get('description', ''))}</td></tr>"
        for p in params
    )
    head = "<tr><th>name</th><th>in</th><th>required</th><th>schema</th><th></th></tr>"
    return f"<p>Parameters</p><table>{head}{rows}</table>"


def _content(block: dict[str, Any]) -> str:
    parts = []
    for media, spec in (block.get("content") or {}).items():
        schema = json.dumps(spec.get("schema", {}), indent=1, sort_keys=True)
        parts.append(f"<p><code>{_e(media)}</code></p><pre>{_e(schema)}</pre>")
    return "".join(parts)


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    body = ""
    if "requestBody" in op:
        body = f"<p>Request body</p>{_content(op['requestBody'])}"
    responses = "".join(
        f"<li><code>{_e(code)}</code> {_e(resp.get('description', ''))}</li>"
        for code, resp in sorted((op.get("responses") or {}).items())
    )
    return (
        f"<details><summary><span class='m {method}'>{method.upper()}</span> "
        f"<code>{_e(path)}</code> {_e(op.get('summary', ''))}</summary>"
        f"<p>{_e(op.get('description', ''))}</p>{_params(op)}{body}"
        f"<p>Responses</p><ul>{responses}</ul></details>"
    )


def render(spec: dict[str, Any]) -> str:
    """The HTML page of an OpenAPI document."""
    info = spec.get("info", {})
    by_tag: dict[str, list[str]] = {}
    for path, item in (spec.get("paths") or {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or method.startswith("x-"):
                continue
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation(path, method, op))
    sections = "".join(f"<h2>{_e(tag)}</h2>{''.join(ops)}" for tag, ops in sorted(by_tag.items()))
    schemas = (spec.get("components") or {}).get("schemas") or {}
    models = "".join(
        f"<details id='{_e(name)}'><summary><code>{_e(name)}</code></summary>"
        f"<pre>{_e(json.dumps(schema, indent=1, sort_keys=True))}</pre></details>"
        for name, schema in sorted(schemas.items())
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(info.get('title', 'API'))} reference</title><style>{_STYLE}</style>"
        "</head><body>"
        f"<h1>{_e(info.get('title', ''))} {_e(info.get('version', ''))}</h1>"
        f"<pre>{_e(info.get('description', ''))}</pre>"
        "<p>The machine-readable document: <a href='/openapi.json'>/openapi.json</a></p>"
        f"{sections}<h2>Schemas</h2>{models}</body></html>"
    )


def install_docs(app: FastAPI) -> None:
    """Serve :func:`render` of the app's own OpenAPI document at ``/docs``."""
    page: list[str] = []

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    async def docs() -> HTMLResponse:
        if not page:
            page.append(render(app.openapi()))
        return HTMLResponse(page[0])
