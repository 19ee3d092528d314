"""
The admin interface: what an operator can see of the gateway's streams
(RFC 7590 section 3.6), over HTTP on a loopback listener.

  - C{GET /}: a status page, rendered on the server (no scripts): the live
    streams with their encryption and authentication, the certificate each
    peer presented, and the warnings, unacknowledged first.
  - C{GET /api/streams}, C{/api/streams/<id>},
    C{/api/streams/<id>/certificate}: the live streams as JSON, and the
    certificate chain a stream's peer presented, as PEM.
  - C{GET /api/peers}, C{/api/peers/<domain>}: each peer's history.
  - C{GET /api/warnings}, C{POST /api/warnings/<id>/acknowledge}.
  - C{GET /api/records}: whether authentication records can be written,
    and what is accepted while they can't.
  - C{GET /metrics}: Prometheus text exposition.

Every request carries C{Authorization: Bearer <token>}, the token from the
state folder's C{admin.token}.  A browser signs in once with a form that
posts the token to C{/login} (or opens C{/?token=...}); it gets an
C{HttpOnly}, C{SameSite=Strict} session cookie, which is good for reading
(C{GET}) and for the page's own acknowledge buttons, and nothing else.  The
token is never logged; neither are query strings.

L{gateway.ops.status.StatusSource} gathers the data; this module only shows
it.  docs/status.md is the operator's reference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.template import Flattenable, Tag, flattenString, tags

from gateway.log import Logger

if TYPE_CHECKING:
    from gateway.s2s.stream import S2SStream

log = Logger()

#: The session cookie a browser gets for the token.
SESSION_COOKIE = b"xmpp_gateway_admin"

#: Prometheus text exposition format 0.0.4.
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = b"application/json; charset=utf-8"
HTML_CONTENT_TYPE = b"text/html; charset=utf-8"
PEM_CONTENT_TYPE = b"application/x-pem-file"

#: The page's only style sheet, inline; the Content-Security-Policy allows
#: it by its hash and allows nothing else (no scripts at all).
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1a1a1a; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .4em; }
p.summary { margin: .2em 0 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: .25em .45em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; }
code { font-size: .92em; }
tr.unencrypted { background: #ffd6d6; }
tr.unauthenticated { background: #fff0c2; }
tr.changed td.certificate { background: #ffe0b3; }
.flag { display: inline-block; font-weight: bold; font-size: .8em; padding: 0 .35em;
        border-radius: .25em; margin: .1em .2em .1em 0; white-space: nowrap; }
.flag.bad { background: #b00020; color: #fff; }
.flag.warn { background: #8a5a00; color: #fff; }
.flag.ok { background: #1b6e2a; color: #fff; }
ul.warnings { list-style: none; padding: 0; }
ul.warnings li { border: 1px solid #e0b000; background: #fff8e0; padding: .4em .6em; margin: .3em 0; }
ul.warnings li.acknowledged { border-color: #ccc; background: #f6f6f6; color: #555; }
form.inline { display: inline; margin-left: .5em; }
form.signout { margin-top: 1.5em; }
td.since { white-space: nowrap; }
.muted { color: #666; }
form.login { max-width: 26em; }
form.login input[type=password] { width: 100%; box-sizing: border-box; margin: .4em 0; }
"""

_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode("ascii")

#: Nothing loads but the inline style sheet and the blank icon; forms post
#: only to this origin; no framing.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
).encode("ascii")

SECURITY_HEADERS = (
    (b"Content-Security-Policy", CONTENT_SECURITY_POLICY),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Cache-Control", b"no-store"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"X-Frame-Options", b"DENY"),
)


#: A JSON object, as the status source gives it and the API serves it.
JSONObject = dict[str, Any]
Header = tuple[bytes, bytes]


class StatusView(Protocol):
    """
    What the admin interface shows: L{gateway.ops.status.StatusSource}
    offers it, and so can a test's fake.
    """

    def streams(self) -> list[JSONObject]: ...
    def stream(self, stream_id: str) -> S2SStream | None: ...
    def stream_info(self, stream: S2SStream) -> JSONObject: ...
    def stream_certificate_pem(self, stream_id: str) -> str | None: ...
    async def peers(self, limit: int = ..., after: str | None = None) -> list[JSONObject]: ...
    async def peer(self, domain: str) -> JSONObject | None: ...
    def warnings(self) -> list[JSONObject]: ...
    def acknowledge(self, warning_id: int) -> bool: ...
    def records_state(self) -> JSONObject: ...
    def metrics_text(self) -> bytes: ...


@dataclass(frozen=True)
class Reply:
    """
    What a resource answers: written whole, with its length.
    """

    code: int
    body: bytes
    content_type: bytes
    headers: tuple[Header, ...] = ()


def json_bytes(data: object) -> bytes:
    """
    C{data} as UTF-8 JSON with sorted keys.
    """
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def json_reply(data: object, code: int = 200, headers: tuple[Header, ...] = ()) -> Reply:
    return Reply(code, json_bytes(data), JSON_CONTENT_TYPE, headers)


def error_reply(code: int, message: str, headers: tuple[Header, ...] = ()) -> Reply:
    return json_reply({"error": message}, code, headers)


def _not_allowed(allowed: bytes) -> Reply:
    return error_reply(405, "method not allowed", ((b"Allow", allowed),))


def _redirect(location: bytes, *headers: Header) -> Reply:
    return Reply(303, b"", HTML_CONTENT_TYPE, ((b"Location", location), *headers))


def session_value(token: str) -> bytes:
    """
    The session cookie's value for C{token}: derived from it, so that the
    cookie can't be used as a bearer token for the API.
    """
    return hmac.new(
        token.encode("utf-8"), b"xmpp-gateway admin session", hashlib.sha256
    ).hexdigest().encode("ascii")


def _equal(given: bytes | None, expected: bytes) -> bool:
    # hmac.compare_digest takes as long whatever the first differing byte.
    return given is not None and hmac.compare_digest(given, expected)


# Rendering ------------------------------------------------------------------
#
# twisted.web.template escapes every string it flattens, text and attribute
# values alike; nothing below builds markup out of strings.


def _text(value: object) -> str:
    """
    C{value} as the page shows it: L{None} as a dash.
    """
    return "\u2014" if value is None else str(value)


def _path(*segments: object) -> str:
    return "/" + "/".join(urllib.parse.quote(str(s), safe="") for s in segments)


def _short_time(value: str | None) -> str | None:
    """
    C{2026-11-28T21:14:03.250000Z} as C{2026-11-28 21:14:03Z}.
    """
    if not value:
        return None
    return value[:19].replace("T", " ") + "Z"


def _document(title: str, *body: Flattenable) -> defer.Deferred[bytes]:
    """
    An HTML page: C{body} under the head every page shares.
    """
    page = tags.html(lang="en")(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.link(rel="icon", href="data:,"),
            tags.title(title),
            # STYLE holds no &, < or >: escaping leaves it as the CSP hashed it.
            tags.style(STYLE),
        ),
        tags.body(*body),
    )
    return flattenString(None, page).addCallback(lambda html: b"<!DOCTYPE html>\n" + html)


#: Methods that accepted a peer without verifying it: C{none} (policy's
#: better-than-nothing) and C{dns} (an outbound stream authenticated by
#: dialback: we only reached an address DNS gave).
UNVERIFIED_METHODS = ("none", "dns")


def stream_flags(stream: JSONObject) -> list[tuple[str, str]]:
    """
    What a person should notice about C{stream} (a L{StatusSource.stream_info}
    dict): C{(css class, text)} pairs, the worst first.
    """
    flags = []
    if not stream["encrypted"]:
        flags.append(("bad", "NOT ENCRYPTED"))
    if not stream["authenticated"]:
        flags.append(("warn", "NOT YET AUTHENTICATED"))
    elif stream["method"] == "none":
        flags.append(("bad" if not stream["encrypted"] else "warn", "UNAUTHENTICATED"))
    elif stream["method"] == "dns":
        flags.append(("warn", "PEER NOT VERIFIED (DNS ONLY)"))
    if stream["certificate_changed"]:
        flags.append(("warn", "CERTIFICATE CHANGED"))
    return flags


def _flag(kind: str, text: str) -> Tag:
    return tags.span(text, class_=f"flag {kind}")


def _fingerprint(sha256: str) -> Tag:
    """
    The first 16 hex digits of a SHA-256; all of them on hover.
    """
    return tags.code(f"{sha256[:16]}\u2026", title=f"SHA-256 {sha256}")


def _certificate_cell(stream: JSONObject) -> Tag:
    cell = tags.td(class_="certificate")
    certificate = stream["certificate"]
    if not certificate:
        return cell(tags.span("none", class_="muted"))
    cell(
        _fingerprint(certificate["sha256"]), tags.br(), _text(certificate["subject"]), tags.br(),
        tags.a("PEM chain", href=_path("api", "streams", stream["id"], "certificate")),
    )
    if stream["previous_certificate"]:
        previous = stream["previous_certificate"]["previous_sha256"]
        cell(tags.br(), tags.span("was ", _fingerprint(previous), class_="muted"))
    return cell


def _stream_row(stream: JSONObject) -> Tag:
    classes = []
    if not stream["encrypted"]:
        classes.append("unencrypted")
    if not stream["authenticated"] or stream["method"] in UNVERIFIED_METHODS:
        classes.append("unauthenticated")
    if stream["certificate_changed"]:
        classes.append("changed")
    return tags.tr(**{"class": " ".join(classes), "data-stream": _text(stream["id"])})(
        tags.td(tags.a(_text(stream["id"]), href=_path("api", "streams", stream["id"]))),
        tags.td(_text(stream["direction"])),
        tags.td(_text(stream["local_domain"])),
        tags.td(_text(stream["peer_domain"])),
        tags.td("yes" if stream["encrypted"] else "NO", class_="encrypted"),
        tags.td(_text(stream["tls_version"])),
        tags.td(tags.code(_text(stream["cipher"]))),
        tags.td(_text(stream["method"]), class_="method"),
        tags.td(_text(stream["authenticated_by"])),
        _certificate_cell(stream),
        tags.td(_text(_short_time(stream["since"])), class_="since"),
        tags.td(_text(stream["stanzas_in"]), class_="num"),
        tags.td(_text(stream["stanzas_out"]), class_="num"),
        tags.td([_flag(kind, text) for kind, text in stream_flags(stream)]),
    )


STREAM_COLUMNS = (
    "Stream", "Direction", "Local", "Peer", "Encrypted", "TLS", "Cipher", "Method",
    "Authenticated by", "Certificate (SHA-256, subject)", "Since", "In", "Out", "Notes",
)
PEER_COLUMNS = ("Peer", "Last seen", "Last method", "Accepted", "Certificates seen")


def _warning_item(warning: JSONObject) -> Tag:
    acknowledged = warning["acknowledged"]
    if acknowledged:
        action = tags.span("acknowledged", class_="muted")
    else:
        action = tags.form(
            class_="inline", method="post",
            action=_path("warnings", warning["id"], "acknowledge"),
        )(tags.button("Acknowledge", type="submit"))
    item = tags.li(**{
        "class": "acknowledged" if acknowledged else "unacknowledged",
        "data-warning": _text(warning["id"]),
    })(
        tags.strong(f"#{_text(warning['id'])} {_text(warning['kind'])}"), " ",
        _text(warning["peer_domain"]), " ",
        tags.span(_text(_short_time(warning["time"])), class_="muted"),
        action, tags.br(), _text(warning["message"]),
    )
    details = warning["details"]
    if warning["kind"] == "certificate-change" and details.get("sha256"):
        item(tags.br(), tags.span(
            "now ", tags.code(_text(details["sha256"])),
            " was ", tags.code(_text(details.get("previous_sha256"))),
            class_="muted",
        ))
    return item


def _peer_row(peer: JSONObject) -> Tag:
    return tags.tr(
        tags.td(tags.a(_text(peer["peer_domain"]), href=_path("api", "peers", peer["peer_domain"]))),
        tags.td(_text(_short_time(peer["last_seen"]))),
        tags.td(_text(peer["last_method"])),
        tags.td("yes" if peer["last_authenticated"] else "NO"),
        tags.td(_text(peer["certificates"]), class_="num"),
    )


def _table(identifier: str, columns: Sequence[str], rows: list[Tag], empty: str) -> Tag:
    """
    A table of C{rows} under C{columns}, or the sentence C{empty} if none.
    """
    if not rows:
        return tags.p(empty, id=identifier, class_="muted")
    return tags.table(id=identifier)(
        tags.thead(tags.tr([tags.th(column) for column in columns])), tags.tbody(rows)
    )


def render_status_page(
    streams: Sequence[JSONObject],
    warnings: Sequence[JSONObject],
    peers: Sequence[JSONObject],
    records: JSONObject | None = None,
) -> defer.Deferred[bytes]:
    """
    The status page, as UTF-8 HTML, from the data the API serves.
    Domains, subjects and messages come from peers: the template escapes
    them.
    """
    unencrypted = sum(1 for s in streams if not s["encrypted"])
    unauthenticated = sum(
        1 for s in streams if not s["authenticated"] or s["method"] in UNVERIFIED_METHODS
    )
    changed = sum(1 for s in streams if s["certificate_changed"])
    open_warnings = [w for w in warnings if not w["acknowledged"]]
    # Unacknowledged first; each group newest first, as the source keeps them.
    ordered = open_warnings + [w for w in warnings if w["acknowledged"]]

    summary: list[Flattenable] = [f"{len(streams)} live stream{'s' if len(streams) != 1 else ''}"]
    for count, text, kind in (
        (unencrypted, "not encrypted", "bad"),
        (unauthenticated, "unauthenticated", "warn"),
        (changed, "with a changed certificate", "warn"),
        (len(open_warnings), "unacknowledged warning" + ("s" if len(open_warnings) != 1 else ""), "warn"),
    ):
        if count:
            summary.append(_flag(kind, f"{count} {text}"))
    if streams and not (unencrypted or unauthenticated):
        summary.append(_flag("ok", "all encrypted and authenticated"))
    if records is not None and not records["available"]:
        summary.append(_flag("bad", (
            f"authentication records can't be written: accepting {records['accepting']}, "
            f"{records['held']} records held, {records['lost']} lost"
        )))

    if ordered:
        warnings_list = tags.ul(id="warnings", class_="warnings")([_warning_item(w) for w in ordered])
    else:
        warnings_list = tags.p("No warnings.", id="warnings", class_="muted")

    return _document(
        "XMPP gateway status",
        tags.h1("XMPP gateway status"),
        tags.p(summary[0], [[" ", part] for part in summary[1:]], class_="summary"),
        tags.p(class_="muted")(
            "Rows in red are not encrypted; rows in yellow are not authenticated "
            "(RFC 7590 section 3.4, better than nothing). ",
            tags.a("Refresh", href="/"), " \u00b7 ", tags.a("JSON", href="/api/streams"),
            " \u00b7 ", tags.a("metrics", href="/metrics"),
        ),
        tags.h2("Streams"),
        _table("streams", STREAM_COLUMNS, [_stream_row(s) for s in streams], "No live streams."),
        tags.h2("Warnings"),
        warnings_list,
        tags.h2("Peers"),
        _table("peers", PEER_COLUMNS, [_peer_row(p) for p in peers], "No peers recorded yet."),
        tags.form(class_="signout", method="post", action="/logout")(
            tags.button("Sign out", type="submit")
        ),
    )


def render_login_page(problem: str | None = None) -> defer.Deferred[bytes]:
    """
    The sign-in form: the token goes in a POST body, never in a URL.
    """
    return _document(
        "XMPP gateway: sign in",
        tags.h1("XMPP gateway status"),
        tags.p(problem, class_="flag bad") if problem else "",
        tags.form(class_="login", method="post", action="/login")(
            tags.label(for_="token")(
                "Admin token (the file ", tags.code("admin.token"),
                " in the gateway's state folder)",
            ),
            tags.input(
                id="token", name="token", type="password", autocomplete="off",
                required="", autofocus="",
            ),
            tags.button("Sign in", type="submit"),
        ),
    )


# The resources --------------------------------------------------------------


def _argument(request: Request, name: bytes) -> bytes | None:
    """
    The first value of query or form argument C{name}, if given.
    """
    values = (request.args or {}).get(name)
    return values[0] if values else None


def _warning_id(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


class _Admin:
    """
    What every resource of the admin interface shares: the status source,
    and the checks of the token and of the session cookie derived from it.
    """

    def __init__(self, status: StatusView, token: str) -> None:
        self.status = status
        self.token = token.encode("utf-8")
        self.session = session_value(token)

    def has_bearer(self, request: Request) -> bool:
        header = request.getHeader(b"authorization")
        if header is None:
            return False
        scheme, _, credentials = header.partition(b" ")
        return scheme.lower() == b"bearer" and _equal(credentials.strip(), self.token)

    def has_session(self, request: Request) -> bool:
        return _equal(request.getCookie(SESSION_COOKIE), self.session)

    def may_read(self, request: Request, method: bytes) -> bool:
        """
        Whether C{request} carries the bearer token, or the session cookie
        for a C{GET}.
        """
        return self.has_bearer(request) or (method == b"GET" and self.has_session(request))

    def same_origin(self, request: Request) -> bool:
        """
        Whether a cookie-authenticated form post comes from this origin
        (a second guard against cross-site requests, after SameSite).
        """
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host")
        if origin is None or host is None:
            return False
        scheme = b"https" if request.isSecure() else b"http"
        return hmac.compare_digest(origin, scheme + b"://" + host)

    @staticmethod
    def challenge(token_given: bool) -> Header:
        value = b'Bearer realm="xmpp-gateway"'
        if token_given:
            value += b', error="invalid_token"'
        return (b"WWW-Authenticate", value)

    def unauthorised(self, request: Request) -> Reply:
        given = request.getHeader(b"authorization") is not None
        return error_reply(
            401,
            "the token is not right" if given else
            "authentication required: send Authorization: Bearer <token> "
            "(the token is in the state folder's admin.token)",
            (self.challenge(given),),
        )

    def session_cookie(self, request: Request, value: bytes, max_age: int | None = None) -> Header:
        cookie = SESSION_COOKIE + b"=" + value + b"; Path=/; HttpOnly; SameSite=Strict"
        if max_age is not None:
            cookie += b"; Max-Age=" + str(max_age).encode("ascii")
        if request.isSecure():
            cookie += b"; Secure"
        return (b"Set-Cookie", cookie)


class _Endpoint(Resource):
    """
    A resource of the admin interface.  Every answer carries the security
    headers and is written whole, with its length; a failure is logged and
    answered with a JSON 500.

    @ivar name: the path segment it stands for, where it is one of many (a
        stream id, a peer domain, a warning id).
    """

    def __init__(self, admin: _Admin, name: str = "") -> None:
        super().__init__()
        self.admin = admin
        self.name = name

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and not any(request.postpath or ()):
            return self  # a trailing slash names the same resource
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            return _NotFound(self.admin)
        return self.child(name)

    def child(self, name: str) -> Resource:
        """
        The resource at C{name} below this one, where no static child has
        that name.
        """
        return _NotFound(self.admin)

    def render(self, request: Request) -> int:
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        finished: list[object] = []
        request.notifyFinish().addBoth(finished.append)
        method = b"GET" if request.method == b"HEAD" else request.method
        d = defer.Deferred.fromCoroutine(self.answer(request, method))
        d.addErrback(self._failed, request)
        d.addCallback(self._write, request, finished)
        return NOT_DONE_YET

    async def answer(self, request: Request, method: bytes) -> Reply:
        """
        The reply to C{request}; C{method} is C{GET} for a C{HEAD}.
        """
        raise NotImplementedError

    def _failed(self, failure: Failure, request: Request) -> Reply:
        log.failure(
            "admin interface: {method} {path} failed",
            failure,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
        )
        return error_reply(500, "internal error; see the gateway's log")

    def _write(self, reply: Reply, request: Request, finished: list[object]) -> None:
        if finished:
            return  # the client went away
        request.setResponseCode(reply.code)
        request.setHeader(b"Content-Type", reply.content_type)
        for name, value in reply.headers:
            if name.lower() == b"set-cookie":
                request.responseHeaders.addRawHeader(name, value)
            else:
                request.setHeader(name, value)
        request.setHeader(b"Content-Length", str(len(reply.body)).encode("ascii"))
        request.write(reply.body)
        request.finish()


class _Reading(_Endpoint):
    """
    A resource of the API (or the metrics): the bearer token, or the
    session cookie for a C{GET}; then the one method it answers.
    """

    #: The method it answers (C{HEAD} as C{GET}); L{None} for any.
    method: bytes | None = b"GET"

    async def answer(self, request: Request, method: bytes) -> Reply:
        if not self.admin.may_read(request, method):
            return self.admin.unauthorised(request)
        if self.method is not None and method != self.method:
            return _not_allowed(b"GET, HEAD" if self.method == b"GET" else self.method)
        return await self.respond(request)

    async def respond(self, request: Request) -> Reply:
        raise NotImplementedError


class _NotFound(_Reading):
    """
    Nothing, or only the way to what is below: 404 to any method, after the
    token check (a stranger learns nothing of the paths).
    """

    method = None

    async def respond(self, request: Request) -> Reply:
        return error_reply(404, "not found")


def _step(admin: _Admin, name: bytes, child: Resource) -> _NotFound:
    """
    A path segment that is only the way to C{child}, at C{name} below it.
    """
    step = _NotFound(admin)
    step.putChild(name, child)
    return step


class _Metrics(_Reading):
    async def respond(self, request: Request) -> Reply:
        return Reply(200, self.admin.status.metrics_text(), METRICS_CONTENT_TYPE)


class _Streams(_Reading):
    async def respond(self, request: Request) -> Reply:
        return json_reply({"streams": self.admin.status.streams()})

    def child(self, name: str) -> Resource:
        stream = _Stream(self.admin, name)
        stream.putChild(b"certificate", _StreamCertificate(self.admin, name))
        return stream


class _Stream(_Reading):
    async def respond(self, request: Request) -> Reply:
        status = self.admin.status
        stream = status.stream(self.name)
        if stream is None:
            return error_reply(404, f"no live stream {self.name}")
        return json_reply(status.stream_info(stream))


class _StreamCertificate(_Reading):
    async def respond(self, request: Request) -> Reply:
        status = self.admin.status
        pem = status.stream_certificate_pem(self.name)
        if pem is None:
            if status.stream(self.name) is None:
                return error_reply(404, f"no live stream {self.name}")
            return error_reply(404, f"stream {self.name} has no peer certificate")
        # Stream ids are the gateway's own (s1, s2, ...), safe in a header.
        filename = "".join(c for c in self.name if c.isalnum()) or "stream"
        return Reply(
            200, pem.encode("ascii"), PEM_CONTENT_TYPE,
            ((b"Content-Disposition",
              f'inline; filename="{filename}-peer-chain.pem"'.encode("ascii")),),
        )


class _Peers(_Reading):
    async def respond(self, request: Request) -> Reply:
        try:
            given = _argument(request, b"limit")
            limit = 1000 if given is None else int(given)
            if not 0 < limit <= 1000:
                raise ValueError
        except ValueError:
            return error_reply(400, "limit must be an integer from 1 to 1000")
        after = (_argument(request, b"after") or b"").decode("utf-8", "replace") or None
        peers = await self.admin.status.peers(limit=limit, after=after)
        return json_reply({
            "peers": peers,
            # The next page starts after the last peer of this one.
            "next": peers[-1]["peer_domain"] if len(peers) == limit else None,
        })

    def child(self, name: str) -> Resource:
        return _Peer(self.admin, name)


class _Peer(_Reading):
    async def respond(self, request: Request) -> Reply:
        # The status source finds the records under any spelling of the name.
        peer = await self.admin.status.peer(self.name)
        if peer is None:
            return error_reply(404, f"no records for {self.name}")
        return json_reply(peer)


class _Records(_Reading):
    async def respond(self, request: Request) -> Reply:
        return json_reply(self.admin.status.records_state())


class _Warnings(_Reading):
    async def respond(self, request: Request) -> Reply:
        return json_reply({"warnings": self.admin.status.warnings()})

    def child(self, name: str) -> Resource:
        return _step(self.admin, b"acknowledge", _Acknowledge(self.admin, name))


class _Acknowledge(_Reading):
    method = b"POST"

    async def respond(self, request: Request) -> Reply:
        number = _warning_id(self.name)
        if number is None or not self.admin.status.acknowledge(number):
            return error_reply(404, f"no warning {self.name}")
        return json_reply({"acknowledged": True})


class _SignIn(_Endpoint):
    """
    C{POST /login}: the sign-in form's token, for the session cookie.
    """

    async def answer(self, request: Request, method: bytes) -> Reply:
        if method != b"POST":
            return _not_allowed(b"POST")
        admin = self.admin
        if not _equal(_argument(request, b"token"), admin.token):
            return Reply(401, await render_login_page("That token is not right."), HTML_CONTENT_TYPE)
        return _redirect(b"/", admin.session_cookie(request, admin.session))


class _SignOut(_Endpoint):
    async def answer(self, request: Request, method: bytes) -> Reply:
        if method != b"POST":
            return _not_allowed(b"POST")
        return _redirect(b"/", self.admin.session_cookie(request, b"", max_age=0))


class _PageWarnings(_NotFound):
    """
    C{/warnings}: only the way to the page's acknowledge buttons.
    """

    def child(self, name: str) -> Resource:
        return _step(self.admin, b"acknowledge", _PageAcknowledge(self.admin, name))


class _PageAcknowledge(_Endpoint):
    """
    The page's acknowledge buttons: the bearer token, or the session cookie
    on a form posted from this origin.
    """

    async def answer(self, request: Request, method: bytes) -> Reply:
        if method != b"POST":
            return _not_allowed(b"POST")
        admin = self.admin
        bearer = admin.has_bearer(request)
        if not (bearer or admin.has_session(request)):
            return admin.unauthorised(request)
        if not bearer and not admin.same_origin(request):
            return error_reply(403, "cross-origin form posts are refused")
        number = _warning_id(self.name)
        if number is not None:
            admin.status.acknowledge(number)
        return _redirect(b"/#warnings")


class AdminResource(_Endpoint):
    """
    The admin interface: the status page here, every other path below (see
    the module docstring).

    @param status: what to show: a L{gateway.ops.status.StatusSource}.
    @param token: the bearer token.
    """

    def __init__(self, status: StatusView, token: str) -> None:
        if not token:
            raise ValueError("the admin interface needs a token")
        admin = _Admin(status, token)
        super().__init__(admin)
        # Below the static children, child() names the dynamic ones:
        # /warnings/<id>/acknowledge, /api/streams/<id>[/certificate],
        # /api/peers/<domain> and /api/warnings/<id>/acknowledge.
        self.putChild(b"login", _SignIn(admin))
        self.putChild(b"logout", _SignOut(admin))
        self.putChild(b"warnings", _PageWarnings(admin))
        self.putChild(b"metrics", _Metrics(admin))
        api = _NotFound(admin)
        self.putChild(b"api", api)
        api.putChild(b"streams", _Streams(admin))
        api.putChild(b"peers", _Peers(admin))
        api.putChild(b"records", _Records(admin))
        api.putChild(b"warnings", _Warnings(admin))

    async def answer(self, request: Request, method: bytes) -> Reply:
        if method != b"GET":
            return _not_allowed(b"GET, HEAD")
        admin = self.admin
        query_token = _argument(request, b"token")
        if query_token is not None and _equal(query_token, admin.token):
            # A link for a browser: trade the token for the cookie and take
            # it out of the address bar at once.
            return _redirect(b"/", admin.session_cookie(request, admin.session))
        if query_token is not None or not (admin.has_bearer(request) or admin.has_session(request)):
            given = query_token is not None or request.getHeader(b"authorization") is not None
            page = await render_login_page("That token is not right." if given else None)
            return Reply(401, page, HTML_CONTENT_TYPE, (admin.challenge(given),))
        status = admin.status
        peers = await status.peers()
        page = await render_status_page(
            status.streams(), status.warnings(), peers, status.records_state()
        )
        return Reply(200, page, HTML_CONTENT_TYPE)


class AdminSite(Site):
    """
    A L{Site} whose access log leaves out query strings (where a browser
    link may carry the token) and goes to the structured log at debug
    level.
    """

    noisy = False

    def log(self, request: http.Request) -> None:
        log.debug(
            "admin {method} {path} {code} from {client}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            code=request.code,
            client=getattr(request.getClientAddress(), "host", "?"),
        )


def make_admin_site(status: StatusView, token: str) -> AdminSite:
    """
    The admin interface for C{status} (a L{gateway.ops.status.StatusSource}),
    guarded by C{token}.
    """
    site = AdminSite(AdminResource(status, token))
    site.noisy = False
    return site
