"""The admin page's HTML: string templates where every value is escaped unless it is markup.

Rule: nothing reaches a page unescaped. :func:`render` escapes every value it is given
(memory text, metadata, namespaces, key ids, error messages are all untrusted) unless the
value is :class:`Markup`, which only this module's helpers produce, from values they
escaped themselves. No template puts a value inside a ``<script>`` or ``style`` element or
an unquoted attribute, so HTML escaping is the one escaping needed.

Pages carry no script at all and their one ``<style>`` element is allowed by a per-response
nonce in the Content-Security-Policy (:func:`page`), so an injected tag could not run even
if escaping failed.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from string import Template
from typing import Any


class Markup(str):
    """HTML known to be safe (built by this module from escaped parts)."""


def esc(value: Any) -> Markup:
    """``value`` as safe HTML text: markup kept, anything else escaped (quotes too)."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(str(value), quote=True))


def render(template: str, **values: Any) -> Markup:
    """Fill ``$name`` placeholders of ``template`` with escaped ``values``."""
    return Markup(Template(template).substitute({k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[Markup]) -> Markup:
    """Concatenate safe fragments."""
    return Markup("".join(esc(p) for p in parts))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> Markup:
    """A table with escaped headers and cells (a :class:`Markup` cell is kept as is)."""
    head = join(render("<th>$h</th>", h=h) for h in headers)
    body = join(
        render("<tr>$cells</tr>", cells=join(render("<td>$c</td>", c=c) for c in row))
        for row in rows
    )
    if not body:
        body = render('<tr><td colspan="$n" class="empty">none</td></tr>', n=len(headers))
    return render(
        '<table class="$cls"><thead><tr>$head</tr></thead><tbody>$body</tbody></table>',
        cls=cls,
        head=head,
        body=body,
    )


def link(href: str, text: Any) -> Markup:
    """An ``<a>`` with an escaped (quoted) href and text."""
    return render('<a href="$href">$text</a>', href=href, text=text)


def pretty(value: Any) -> Markup:
    """A JSON value in a ``<pre>`` block, escaped."""
    return render("<pre>$v</pre>", v=json.dumps(value, indent=2, sort_keys=True, default=str))


def hidden_csrf(token: str) -> Markup:
    """The hidden field every form POST carries (checked against the session)."""
    return render('<input type="hidden" name="csrf" value="$t">', t=token)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#22303c;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#cde}header form{margin-left:auto}main{padding:1em 1.2em;max-width:1200px}
table{border-collapse:collapse;margin:.4em 0 1.2em;background:#fff}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eef}td.empty{color:#888}.bad{color:#a00;font-weight:600}.ok{color:#070}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
.error{background:#fee;border:1px solid #c66;padding:.5em}.notice{background:#efe;
border:1px solid #6a6;padding:.5em}.secret{font-family:monospace;font-size:1.1em}
input[type=text],input[type=password]{padding:.3em;min-width:18em}
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>$title - engramdb admin</title>
<style nonce="$nonce">$style</style></head>
<body>$header<main><h1>$title</h1>$body</main></body></html>
"""

NAV = """<header><strong>engramdb admin</strong>
<a href="/admin">Overview</a> <a href="/admin/memories">Memories</a>
<a href="/admin/keys">Keys</a>
<form method="post" action="/admin/logout">$csrf<button type="submit">Log out</button></form>
</header>"""


def page(title: str, body: Markup, nonce: str, csrf: str | None) -> str:
    """A whole page: ``csrf`` None for the login page (no navigation, not logged in)."""
    header = render(NAV, csrf=hidden_csrf(csrf)) if csrf is not None else Markup("")
    return render(PAGE, title=title, nonce=nonce, style=Markup(STYLE), header=header, body=body)


LOGIN = """<form method="post" action="/admin/login">$csrf
<p><label>Admin key <input type="password" name="key" autocomplete="off" required
 autofocus></label></p>
<p><button type="submit">Log in</button></p></form>
<p>Or send the key as <code>Authorization: Bearer &lt;key&gt;</code>.</p>"""


def login_body(csrf: str, error: str | None) -> Markup:
    """The login form, with the reason of a refused attempt."""
    notice = render('<p class="error" id="error">$e</p>', e=error) if error else Markup("")
    return join([notice, render(LOGIN, csrf=hidden_csrf(csrf))])


def error_body(status: int, message: str) -> Markup:
    """What an error page says (the same message the REST error would carry)."""
    return render(
        '<p class="error" id="error">$status: $message</p>', status=status, message=message
    )


SEARCH = """<form method="get" action="/admin/memories" id="search">
<label>Namespace <input type="text" name="ns" value="$ns" list="namespaces" required></label>
<datalist id="namespaces">$options</datalist>
<label>Search <input type="text" name="q" value="$q" placeholder="empty: newest first"></label>
<button type="submit">Search</button></form>"""


def search_form(ns: str, q: str, namespaces: Iterable[str]) -> Markup:
    """The search box: a namespace (suggested from the store's) and a query."""
    options = join(render('<option value="$n">', n=n) for n in namespaces)
    return render(SEARCH, ns=ns, q=q, options=options)


KEY_FORM = """<h2>Create a key</h2>
<form method="post" action="/admin/keys" id="create-key">$csrf
<label>Namespace <input type="text" name="namespace" required></label>
<label><input type="checkbox" name="read_only" value="1"> read-only</label>
<button type="submit">Create</button></form>"""

REVOKE = """<form method="post" action="/admin/keys/$id/revoke" class="revoke">$csrf
<button type="submit" name="revoke" value="$id">Revoke</button></form>"""


def key_form(csrf: str) -> Markup:
    """The form that makes a namespace key."""
    return render(KEY_FORM, csrf=hidden_csrf(csrf))


def revoke_button(key_id: str, csrf: str) -> Markup:
    """The form that revokes one key."""
    return render(REVOKE, id=key_id, csrf=hidden_csrf(csrf))


def new_key_notice(key: str, key_id: str, namespace: str | None) -> Markup:
    """The key just made, shown this once."""
    return render(
        '<div class="notice" id="new-key">Key <code>$id</code> for namespace '
        "<strong>$ns</strong> (shown only now; only its hash is stored):"
        '<p class="secret" id="new-key-secret">$key</p></div>',
        id=key_id,
        ns=namespace or "(admin)",
        key=key,
    )


def status_cell(status: Any) -> Markup:
    """A component's or an entry's status, coloured by whether it is ok."""
    text = str(status)
    return render('<span class="$cls">$s</span>', cls="ok" if text == "ok" else "bad", s=text)


READ_FROM_NEW_FORM = """<form method="post" action="/admin/read-from-new" id="read-from-new">$csrf
<label>Reads from the new store (%) <input type="number" name="percent" min="0" max="100"
step="1" value="$percent" required></label>
<button type="submit">Set</button></form>"""


def side_by_side(status: dict[str, Any] | None, csrf: str) -> Markup:
    """The side-by-side section: where reads go, the rollback state, the agreement figures
    and the form that sets the share (``status`` None: the server is not side by side)."""
    if status is None:
        return render(
            '<p id="side-by-side">Not running side by side (ENGRAM_SIDEBYSIDE_OLD unset).</p>'
        )
    agreement, dual = status["agreement"], status["dual_write"]
    rows = [
        ("Namespace", status["namespace"]),
        ("Old store", status["old"]),
        ("Reads from the new store", f"{status['read_from_new']}%"),
        ("Rolled back", status_cell("ROLLED BACK" if status["rolled_back"] else "ok")),
        ("Automatic rollbacks", status["rollbacks"]),
        ("Compared reads (window)", f"{agreement['compared']} ({agreement['samples']})"),
        ("Inconsistency", f"{agreement['inconsistency']:.4f}"),
        ("Added p95 latency (ms)", f"{agreement['added_p95_ms']:.1f}"),
        ("New-store error rate", f"{agreement['error_rate']:.4f}"),
        ("Writes queued for the old store", dual["pending"]),
    ]
    last = status["last_rollback"]
    if last is not None:
        rows.append(("Last rollback", last["reason"]))
    return join(
        [
            table(("", "Side by side"), rows, "side-by-side"),
            render(READ_FROM_NEW_FORM, csrf=hidden_csrf(csrf), percent=status["read_from_new"]),
        ]
    )
