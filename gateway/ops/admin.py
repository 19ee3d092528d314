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

import base64
import hashlib
import hmac
import html
import json
import urllib.parse
from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

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


@dataclass(frozen=True)
class Reply:
    """
    What a handler answers.
    """

    code: int
    body: bytes
    content_type: bytes
    headers: tuple = ()


def json_bytes(data):
    """
    C{data} as UTF-8 JSON with sorted keys.
    """
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def json_reply(data, code=200, headers=()):
    return Reply(code, json_bytes(data), JSON_CONTENT_TYPE, headers)


def error_reply(code, message, headers=()):
    return json_reply({"error": message}, code, headers)


class NotAuthorised(Exception):
    """
    The request did not carry a valid token (or session cookie).
    """


def session_value(token):
    """
    The session cookie's value for C{token}: derived from it, so that the
    cookie can't be used as a bearer token for the API.
    """
    return hmac.new(
        token.encode("utf-8"), b"xmpp-gateway admin session", hashlib.sha256
    ).hexdigest().encode("ascii")


def _equal(given, expected):
    # hmac.compare_digest takes as long whatever the first differing byte.
    return given is not None and hmac.compare_digest(given, expected)


# Rendering ------------------------------------------------------------------


def _e(value):
    """
    Escape C{value} for HTML text and attribute values; L{None} shows as a
    dash.
    """
    if value is None:
        return "\u2014"
    return html.escape(str(value), quote=True)


def _path(*segments):
    return "/" + "/".join(urllib.parse.quote(str(s), safe="") for s in segments)


def _short_time(value):
    """
    C{2026-11-28T21:14:03.250000Z} as C{2026-11-28 21:14:03Z}.
    """
    if not value:
        return None
    return value[:19].replace("T", " ") + "Z"


def _page(title, body):
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    ).encode("utf-8")


#: Methods that accepted a peer without verifying it: C{none} (policy's
#: better-than-nothing) and C{dns} (an outbound stream authenticated by
#: dialback: we only reached an address DNS gave).
UNVERIFIED_METHODS = ("none", "dns")


def stream_flags(stream):
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


def _stream_row(stream):
    classes = []
    if not stream["encrypted"]:
        classes.append("unencrypted")
    if not stream["authenticated"] or stream["method"] in UNVERIFIED_METHODS:
        classes.append("unauthenticated")
    if stream["certificate_changed"]:
        classes.append("changed")
    flags = "".join(
        f'<span class="flag {kind}">{_e(text)}</span>' for kind, text in stream_flags(stream)
    )
    certificate = stream["certificate"]
    if certificate:
        sha256 = certificate["sha256"]
        cell = (
            f'<code title="SHA-256 {_e(sha256)}">{_e(sha256[:16])}\u2026</code><br>'
            f'{_e(certificate["subject"])}<br>'
            f'<a href="{_e(_path("api", "streams", stream["id"], "certificate"))}">PEM chain</a>'
        )
        if stream["previous_certificate"]:
            previous = stream["previous_certificate"]["previous_sha256"]
            cell += f'<br><span class="muted">was <code title="SHA-256 {_e(previous)}">{_e(previous[:16])}\u2026</code></span>'
    else:
        cell = '<span class="muted">none</span>'
    return (
        f'<tr class="{" ".join(classes)}" data-stream="{_e(stream["id"])}">'
        f'<td><a href="{_e(_path("api", "streams", stream["id"]))}">{_e(stream["id"])}</a></td>'
        f'<td>{_e(stream["direction"])}</td>'
        f'<td>{_e(stream["local_domain"])}</td>'
        f'<td>{_e(stream["peer_domain"])}</td>'
        f'<td class="encrypted">{"yes" if stream["encrypted"] else "NO"}</td>'
        f'<td>{_e(stream["tls_version"])}</td>'
        f'<td><code>{_e(stream["cipher"])}</code></td>'
        f'<td class="method">{_e(stream["method"])}</td>'
        f'<td>{_e(stream["authenticated_by"])}</td>'
        f'<td class="certificate">{cell}</td>'
        f'<td class="since">{_e(_short_time(stream["since"]))}</td>'
        f'<td class="num">{_e(stream["stanzas_in"])}</td>'
        f'<td class="num">{_e(stream["stanzas_out"])}</td>'
        f"<td>{flags}</td>"
        "</tr>"
    )


STREAM_COLUMNS = (
    "Stream", "Direction", "Local", "Peer", "Encrypted", "TLS", "Cipher", "Method",
    "Authenticated by", "Certificate (SHA-256, subject)", "Since", "In", "Out", "Notes",
)


def _warning_item(warning):
    acknowledged = warning["acknowledged"]
    details = warning["details"]
    extra = ""
    if warning["kind"] == "certificate-change" and details.get("sha256"):
        extra = (
            f'<br><span class="muted">now <code>{_e(details["sha256"])}</code>'
            f' was <code>{_e(details.get("previous_sha256"))}</code></span>'
        )
    if acknowledged:
        action = '<span class="muted">acknowledged</span>'
    else:
        action = (
            f'<form class="inline" method="post" '
            f'action="{_e(_path("warnings", warning["id"], "acknowledge"))}">'
            '<button type="submit">Acknowledge</button></form>'
        )
    return (
        f'<li class="{"acknowledged" if acknowledged else "unacknowledged"}" '
        f'data-warning="{_e(warning["id"])}">'
        f'<strong>#{_e(warning["id"])} {_e(warning["kind"])}</strong> '
        f'{_e(warning["peer_domain"])} <span class="muted">{_e(_short_time(warning["time"]))}</span>'
        f"{action}<br>{_e(warning['message'])}{extra}</li>"
    )


def _peer_row(peer):
    return (
        f'<tr><td><a href="{_e(_path("api", "peers", peer["peer_domain"]))}">'
        f'{_e(peer["peer_domain"])}</a></td>'
        f'<td>{_e(_short_time(peer["last_seen"]))}</td>'
        f'<td>{_e(peer["last_method"])}</td>'
        f'<td>{"yes" if peer["last_authenticated"] else "NO"}</td>'
        f'<td class="num">{_e(peer["certificates"])}</td></tr>'
    )


def render_status_page(streams, warnings, peers, records=None):
    """
    The status page, as UTF-8 HTML, from the data the API serves.  Every
    value is escaped: domains, subjects and messages come from peers.
    """
    unencrypted = sum(1 for s in streams if not s["encrypted"])
    unauthenticated = sum(
        1 for s in streams if not s["authenticated"] or s["method"] in UNVERIFIED_METHODS
    )
    changed = sum(1 for s in streams if s["certificate_changed"])
    open_warnings = [w for w in warnings if not w["acknowledged"]]
    # Unacknowledged first; each group newest first, as the source keeps them.
    ordered = open_warnings + [w for w in warnings if w["acknowledged"]]

    summary = [f"{len(streams)} live stream{'s' if len(streams) != 1 else ''}"]
    for count, text, kind in (
        (unencrypted, "not encrypted", "bad"),
        (unauthenticated, "unauthenticated", "warn"),
        (changed, "with a changed certificate", "warn"),
        (len(open_warnings), "unacknowledged warning" + ("s" if len(open_warnings) != 1 else ""), "warn"),
    ):
        if count:
            summary.append(f'<span class="flag {kind}">{count} {_e(text)}</span>')
    if streams and not (unencrypted or unauthenticated):
        summary.append('<span class="flag ok">all encrypted and authenticated</span>')
    if records is not None and not records["available"]:
        summary.append(
            '<span class="flag bad">authentication records can\'t be written: accepting '
            f'{_e(records["accepting"])}, {records["held"]} records held, '
            f'{records["lost"]} lost</span>'
        )

    if streams:
        header = "".join(f"<th>{_e(c)}</th>" for c in STREAM_COLUMNS)
        rows = "\n".join(_stream_row(s) for s in streams)
        streams_html = (
            f'<table id="streams"><thead><tr>{header}</tr></thead>\n<tbody>\n{rows}\n</tbody></table>'
        )
    else:
        streams_html = '<p id="streams" class="muted">No live streams.</p>'

    if ordered:
        warnings_html = (
            '<ul id="warnings" class="warnings">\n'
            + "\n".join(_warning_item(w) for w in ordered)
            + "\n</ul>"
        )
    else:
        warnings_html = '<p id="warnings" class="muted">No warnings.</p>'

    if peers:
        peers_html = (
            '<table id="peers"><thead><tr><th>Peer</th><th>Last seen</th><th>Last method</th>'
            "<th>Accepted</th><th>Certificates seen</th></tr></thead>\n<tbody>\n"
            + "\n".join(_peer_row(p) for p in peers)
            + "\n</tbody></table>"
        )
    else:
        peers_html = '<p id="peers" class="muted">No peers recorded yet.</p>'

    body = (
        "<h1>XMPP gateway status</h1>\n"
        f'<p class="summary">{" ".join(summary)}</p>\n'
        '<p class="muted">Rows in red are not encrypted; rows in yellow are not '
        "authenticated (RFC 7590 section 3.4, better than nothing). "
        '<a href="/">Refresh</a> \u00b7 <a href="/api/streams">JSON</a> \u00b7 '
        '<a href="/metrics">metrics</a></p>\n'
        f"<h2>Streams</h2>\n{streams_html}\n"
        f"<h2>Warnings</h2>\n{warnings_html}\n"
        f"<h2>Peers</h2>\n{peers_html}\n"
        '<form class="signout" method="post" action="/logout"><button type="submit">Sign out</button></form>'
    )
    return _page("XMPP gateway status", body)


def render_login_page(problem=None):
    """
    The sign-in form: the token goes in a POST body, never in a URL.
    """
    notice = f'<p class="flag bad">{_e(problem)}</p>' if problem else ""
    body = (
        "<h1>XMPP gateway status</h1>\n"
        f"{notice}"
        '<form class="login" method="post" action="/login">'
        '<label for="token">Admin token (the file <code>admin.token</code> in the '
        "gateway's state folder)</label>"
        '<input id="token" name="token" type="password" autocomplete="off" required autofocus>'
        '<button type="submit">Sign in</button></form>'
    )
    return _page("XMPP gateway: sign in", body)


# The resource ---------------------------------------------------------------


class AdminResource(Resource):
    """
    Every path of the admin interface; see the module docstring.

    @param status: a L{gateway.ops.status.StatusSource}.
    @param token: the bearer token (a string).
    """

    isLeaf = True

    def __init__(self, status, token):
        super().__init__()
        if not token:
            raise ValueError("the admin interface needs a token")
        self.status = status
        self._token = token.encode("utf-8")
        self._session = session_value(token)

    # Authentication --------------------------------------------------------

    def _bearer(self, request):
        header = request.getHeader(b"authorization")
        if header is None:
            return None
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        return credentials.strip()

    def _has_bearer(self, request):
        return _equal(self._bearer(request), self._token)

    def _has_session(self, request):
        return _equal(request.getCookie(SESSION_COOKIE), self._session)

    def _same_origin(self, request):
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

    def _unauthorised(self, request, html_page=False):
        given = request.getHeader(b"authorization") is not None
        challenge = b'Bearer realm="xmpp-gateway"'
        if given:
            challenge += b', error="invalid_token"'
        headers = ((b"WWW-Authenticate", challenge),)
        if html_page:
            return Reply(
                401,
                render_login_page("That token is not right." if given else None),
                HTML_CONTENT_TYPE,
                headers,
            )
        return error_reply(
            401,
            "the token is not right" if given else
            "authentication required: send Authorization: Bearer <token> "
            "(the token is in the state folder's admin.token)",
            headers,
        )

    def _session_cookie(self, request, value, max_age=None):
        cookie = SESSION_COOKIE + b"=" + value + b"; Path=/; HttpOnly; SameSite=Strict"
        if max_age is not None:
            cookie += b"; Max-Age=" + str(max_age).encode("ascii")
        if request.isSecure():
            cookie += b"; Secure"
        return (b"Set-Cookie", cookie)

    # Dispatch ----------------------------------------------------------------

    def render(self, request):
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        finished = []
        request.notifyFinish().addBoth(finished.append)
        d = defer.Deferred.fromCoroutine(self._dispatch(request))
        d.addErrback(self._failed, request)
        d.addCallback(self._write, request, finished)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request):
        log.failure(
            "admin interface: {method} {path} failed",
            failure,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
        )
        return error_reply(500, "internal error; see the gateway's log")

    def _write(self, reply, request, finished):
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

    async def _dispatch(self, request):
        method = request.method
        if method == b"HEAD":
            method = b"GET"
        try:
            segments = [s.decode("utf-8") for s in request.postpath]
        except UnicodeDecodeError:
            segments = None
        while segments and segments[-1] == "":
            segments.pop()

        # The two doors of a browser session: signing in and out.
        if segments == ["login"]:
            if method != b"POST":
                return self._not_allowed(b"POST")
            return self._login(request)
        if segments == ["logout"]:
            if method != b"POST":
                return self._not_allowed(b"POST")
            return Reply(
                303, b"", HTML_CONTENT_TYPE,
                ((b"Location", b"/"), self._session_cookie(request, b"", max_age=0)),
            )

        bearer = self._has_bearer(request)
        session = not bearer and self._has_session(request)
        if segments == []:
            if method != b"GET":
                return self._not_allowed(b"GET, HEAD")
            query_token = request.args.get(b"token", [None])[0]
            if query_token is not None:
                # A link for a browser: trade the token for the cookie and
                # take it out of the address bar at once.
                if _equal(query_token, self._token):
                    return Reply(
                        303, b"", HTML_CONTENT_TYPE,
                        ((b"Location", b"/"), self._session_cookie(request, self._session)),
                    )
                return Reply(
                    401, render_login_page("That token is not right."), HTML_CONTENT_TYPE,
                    ((b"WWW-Authenticate", b'Bearer realm="xmpp-gateway", error="invalid_token"'),),
                )
            if not (bearer or session):
                return self._unauthorised(request, html_page=True)
            return await self._status_page()

        # The page's acknowledge buttons: a cookie, from this origin.
        if (
            segments is not None and len(segments) == 3
            and segments[0] == "warnings" and segments[2] == "acknowledge"
        ):
            if method != b"POST":
                return self._not_allowed(b"POST")
            if not (bearer or session):
                return self._unauthorised(request)
            if session and not self._same_origin(request):
                return error_reply(403, "cross-origin form posts are refused")
            number = _warning_id(segments[1])
            if number is not None:
                self.status.acknowledge(number)
            return Reply(303, b"", HTML_CONTENT_TYPE, ((b"Location", b"/#warnings"),))

        # Everything else: the bearer token, or the cookie for reading.
        if not (bearer or (session and method == b"GET")):
            return self._unauthorised(request)
        if segments is None:
            return error_reply(404, "not found")
        return await self._api(method, segments, request.args)

    def _not_allowed(self, allowed):
        return error_reply(405, "method not allowed", ((b"Allow", allowed),))

    def _login(self, request):
        token = request.args.get(b"token", [None])[0]
        if not _equal(token, self._token):
            return Reply(401, render_login_page("That token is not right."), HTML_CONTENT_TYPE)
        return Reply(
            303, b"", HTML_CONTENT_TYPE,
            ((b"Location", b"/"), self._session_cookie(request, self._session)),
        )

    async def _status_page(self):
        status = self.status
        peers = await status.peers()
        return Reply(
            200, render_status_page(
                status.streams(), status.warnings(), peers, status.records_state()
            ), HTML_CONTENT_TYPE
        )

    async def _api(self, method, segments, args=None):
        status = self.status
        match segments:
            case ["metrics"]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                return Reply(200, status.metrics_text(), METRICS_CONTENT_TYPE)
            case ["api", "streams"]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                return json_reply({"streams": status.streams()})
            case ["api", "streams", stream_id]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                stream = status.stream(stream_id)
                if stream is None:
                    return error_reply(404, f"no live stream {stream_id}")
                return json_reply(status.stream_info(stream))
            case ["api", "streams", stream_id, "certificate"]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                pem = status.stream_certificate_pem(stream_id)
                if pem is None:
                    if status.stream(stream_id) is None:
                        return error_reply(404, f"no live stream {stream_id}")
                    return error_reply(404, f"stream {stream_id} has no peer certificate")
                # Stream ids are the gateway's own (s1, s2, ...), safe in a header.
                filename = "".join(c for c in stream_id if c.isalnum()) or "stream"
                return Reply(
                    200, pem.encode("ascii"), PEM_CONTENT_TYPE,
                    ((b"Content-Disposition",
                      f'inline; filename="{filename}-peer-chain.pem"'.encode("ascii")),),
                )
            case ["api", "peers"]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                args = args or {}
                try:
                    limit = int(args.get(b"limit", [b"1000"])[0])
                    if not 0 < limit <= 1000:
                        raise ValueError
                except ValueError:
                    return error_reply(400, "limit must be an integer from 1 to 1000")
                after = args.get(b"after", [b""])[0].decode("utf-8", "replace") or None
                peers = await status.peers(limit=limit, after=after)
                return json_reply({
                    "peers": peers,
                    # The next page starts after the last peer of this one.
                    "next": peers[-1]["peer_domain"] if len(peers) == limit else None,
                })
            case ["api", "peers", domain]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                peer = await status.peer(domain)
                if peer is None:
                    return error_reply(404, f"no records for {domain}")
                return json_reply(peer)
            case ["api", "records"]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                return json_reply(status.records_state())
            case ["api", "warnings"]:
                if method != b"GET":
                    return self._not_allowed(b"GET, HEAD")
                return json_reply({"warnings": status.warnings()})
            case ["api", "warnings", warning_id, "acknowledge"]:
                if method != b"POST":
                    return self._not_allowed(b"POST")
                number = _warning_id(warning_id)
                if number is None or not status.acknowledge(number):
                    return error_reply(404, f"no warning {warning_id}")
                return json_reply({"acknowledged": True})
        return error_reply(404, "not found")


def _warning_id(text):
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


class AdminSite(Site):
    """
    A L{Site} whose access log leaves out query strings (where a browser
    link may carry the token) and goes to the structured log at debug
    level.
    """

    noisy = False

    def log(self, request):
        log.debug(
            "admin {method} {path} {code} from {client}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            code=request.code,
            client=getattr(request.getClientAddress(), "host", "?"),
        )


def make_admin_site(status, token):
    """
    The admin interface for C{status} (a L{gateway.ops.status.StatusSource}),
    guarded by C{token}.
    """
    site = AdminSite(AdminResource(status, token))
    site.noisy = False
    return site
