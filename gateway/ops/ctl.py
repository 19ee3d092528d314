"""
The admin interface from a terminal:

    python -m gateway.ctl [--url http://127.0.0.1:5280]
        [--token-file STATE/admin.token | --state-dir DIR] [--json]
        streams | stream ID | certificate ID | peers | peer DOMAIN | records
        | warnings | ack ID

Only the standard library, so it runs wherever the gateway's Python does.
Exit status: 0 when it worked, 1 when the gateway answered with an error or
could not be reached (the message says which), 2 for a usage error.
See docs/status.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

#: The embedded default configuration's state folder and admin listener.
DEFAULT_STATE_DIR = "xmpp-gateway-state"
DEFAULT_URL = "http://127.0.0.1:5280"
TIMEOUT = 10.0

#: An answer of the admin interface, as L{json.loads} gives it.
JSONObject = dict[str, Any]


class CtlError(Exception):
    """
    A problem to report on one line, exit status 1.
    """


def printable(value: object) -> str:
    """
    C{value} as text safe for a terminal: peers choose their certificates'
    subjects, so control characters (escape sequences) are shown escaped.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "") -> str:
    """
    Format C{rows} (lists of values) under C{headers} in aligned columns.
    """
    cells = [[printable(h) for h in headers]] + [[printable(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(indent + line for line in lines)


def short_time(value: str | None) -> str | None:
    if not value:
        return None
    return value[:19].replace("T", " ") + "Z"


def stream_notes(stream: JSONObject) -> str:
    notes = []
    if not stream["encrypted"]:
        notes.append("NOT ENCRYPTED")
    if not stream["authenticated"]:
        notes.append("NOT YET AUTHENTICATED")
    elif stream["method"] == "none":
        notes.append("UNAUTHENTICATED")
    if stream["certificate_changed"]:
        notes.append("CERTIFICATE CHANGED")
    return ", ".join(notes)


def format_streams(data: JSONObject) -> str:
    streams = data["streams"]
    if not streams:
        return "No live streams."
    rows = []
    for s in streams:
        certificate = s.get("certificate") or {}
        rows.append([
            s["id"], s["direction"], s["local_domain"], s["peer_domain"],
            s["encrypted"], s["tls_version"], s["cipher"], s["method"], s["authenticated_by"],
            (certificate.get("sha256") or "")[:16] or None, certificate.get("subject"),
            short_time(s["since"]), s["stanzas_in"], s["stanzas_out"], stream_notes(s),
        ])
    return table(
        ["ID", "DIRECTION", "LOCAL", "PEER", "ENCRYPTED", "TLS", "CIPHER", "METHOD",
         "AUTHENTICATED BY", "CERT SHA-256", "SUBJECT", "SINCE", "IN", "OUT", "NOTES"],
        rows,
    )


def _pairs(pairs: Sequence[tuple[str, object]]) -> str:
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key.ljust(width)}  {printable(value)}" for key, value in pairs)


def format_stream(s: JSONObject) -> str:
    pairs: list[tuple[str, object]] = [
        ("id", s["id"]), ("direction", s["direction"]), ("state", s["state"]),
        ("local domain", s["local_domain"]), ("peer domain", s["peer_domain"]),
        ("encrypted", s["encrypted"]), ("TLS version", s["tls_version"]),
        ("cipher", s["cipher"]), ("authenticated", s["authenticated"]),
        ("method", s["method"]), ("authenticated by", s["authenticated_by"]),
        ("since", s["since"]), ("stanzas in", s["stanzas_in"]),
        ("stanzas out", s["stanzas_out"]),
    ]
    for key, value in sorted(s.get("evidence", {}).items()):
        pairs.append((f"evidence.{key}", json.dumps(value) if not isinstance(value, str) else value))
    certificate = s.get("certificate")
    if certificate:
        pairs += [
            ("certificate sha256", certificate["sha256"]),
            ("certificate spki", certificate["spki_sha256"]),
            ("subject", certificate["subject"]), ("issuer", certificate["issuer"]),
            ("valid", f"{certificate['not_before']} to {certificate['not_after']}"),
            ("names", ", ".join(f"{kind}:{value}" for kind, value in certificate["sans"])),
        ]
    else:
        pairs.append(("certificate", None))
    pairs.append(("certificate changed", s["certificate_changed"]))
    if s.get("previous_certificate"):
        pairs.append(("previous sha256", s["previous_certificate"]["previous_sha256"]))
        pairs.append(("key changed", s["previous_certificate"]["key_changed"]))
    for a in s.get("authentications", [])[1:]:
        pairs.append(("also for", f"{a['peer_domain']} -> {a['local_domain']} by {a['method']}"))
    notes = stream_notes(s)
    if notes:
        pairs.append(("NOTES", notes))
    return _pairs(pairs)


def format_peers(data: JSONObject) -> str:
    peers = data["peers"]
    if not peers:
        return "No peers recorded."
    return table(
        ["PEER", "LAST SEEN", "LAST METHOD", "ACCEPTED", "CERTIFICATES"],
        [[p["peer_domain"], short_time(p["last_seen"]), p["last_method"],
          p["last_authenticated"], p["certificates"]] for p in peers],
    )


def format_records(r: JSONObject) -> str:
    return _pairs([
        ("available", r["available"]),
        ("unavailable since", r["unavailable_since"] or "-"),
        ("accepting", r["accepting"]),
        ("held", f"{r['held']} of {r['held_limit']}"),
        ("lost", r["lost"]),
    ])


def format_peer(p: JSONObject) -> str:
    lines = [_pairs([
        ("peer domain", p["peer_domain"]), ("last seen", p["last_seen"]),
        ("last method", p["last_method"]), ("accepted", p["last_authenticated"]),
        ("certificates", p["certificates"]),
    ])]
    for entry in p.get("history", []):
        certificate = entry["certificate"]
        lines.append("")
        if certificate:
            lines.append(f"certificate {printable(certificate['sha256'])}")
            lines.append(f"  subject {printable(certificate['subject'])}, "
                         f"issuer {printable(certificate['issuer'])}")
        else:
            lines.append("no certificate")
        lines.append(f"  seen {printable(entry['first_seen'])} to {printable(entry['last_seen'])}")
        lines.append(table(
            ["TIME", "DIRECTION", "LOCAL", "ACCEPTED", "METHOD", "AUTHENTICATED BY", "TLS", "REASON"],
            [[short_time(v["time"]), v["direction"], v["local_domain"],
              v["authenticated"], v["method"], v["authenticated_by"], v["tls_version"],
              v["reason"] or None] for v in entry["verifications"]],
            indent="  ",
        ))
    return "\n".join(lines)


def format_warnings(data: JSONObject) -> str:
    warnings = data["warnings"]
    if not warnings:
        return "No warnings."
    ordered = [w for w in warnings if not w["acknowledged"]] + [w for w in warnings if w["acknowledged"]]
    return table(
        ["ID", "TIME", "KIND", "PEER", "ACKNOWLEDGED", "MESSAGE"],
        [[w["id"], short_time(w["time"]), w["kind"], w["peer_domain"], w["acknowledged"],
          w["message"]] for w in ordered],
    )


class AdminClient:
    """
    Talks to the admin interface at C{url} with C{token}.
    """

    def __init__(self, url: str, token: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
            data=b"" if method == "POST" else None,
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode("utf-8", "replace").strip() or e.reason
            raise CtlError(f"HTTP {e.code}: {printable(message)}") from None
        except urllib.error.URLError as e:
            raise CtlError(f"cannot reach the admin interface at {self.url}: {e.reason}") from None
        except (OSError, ValueError) as e:
            raise CtlError(f"cannot reach the admin interface at {self.url}: {e}") from None

    def json(self, path: str, method: str = "GET") -> Any:
        body = self.request(path, method)
        try:
            return json.loads(body)
        except ValueError:
            raise CtlError(f"{path}: the answer is not JSON") from None


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gateway.ctl",
        description="Show the XMPP gateway's streams, peers and warnings "
                    "(RFC 7590 section 3.6) from its admin interface.",
    )
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"the admin interface (default {DEFAULT_URL})")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token-file", help="the file holding the admin token")
    token.add_argument("--state-dir", default=None,
                       help=f"the gateway's state folder, whose admin.token is read "
                            f"(default ./{DEFAULT_STATE_DIR})")
    p.add_argument("--json", action="store_true", help="print the JSON as the gateway sends it")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("streams", help="the live s2s streams")
    commands.add_parser("stream", help="one live stream in detail").add_argument("id")
    commands.add_parser("certificate", help="the certificate chain a stream's peer presented (PEM)").add_argument("id")
    commands.add_parser("peers", help="every peer domain in the records")
    commands.add_parser("records", help="whether authentication records can be written")
    commands.add_parser("peer", help="one peer's certificates and verifications").add_argument("domain")
    commands.add_parser("warnings", help="warnings, unacknowledged first")
    commands.add_parser("ack", help="acknowledge a warning (accepts a changed certificate)").add_argument("id")
    return p


def read_token(arguments: argparse.Namespace) -> str:
    path = arguments.token_file or os.path.join(
        arguments.state_dir or DEFAULT_STATE_DIR, "admin.token"
    )
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise CtlError(f"cannot read the admin token from {path}: {e.strerror}") from None
    if not token:
        raise CtlError(f"the admin token file {path} is empty")
    return token


def _all_peers(client: AdminClient) -> JSONObject:
    """
    Every peer, page by page (the API gives at most 1000 at a time).
    """
    peers: list[JSONObject] = []
    after = None
    while True:
        query = "?limit=1000" + (f"&after={_segment(after)}" if after else "")
        page = client.json("/api/peers" + query)
        peers.extend(page["peers"])
        after = page.get("next")
        if not after:
            break
    return {"peers": peers}


def run(arguments: argparse.Namespace, out: TextIO) -> None:
    client = AdminClient(arguments.url, read_token(arguments))
    if arguments.command == "certificate":
        out.write(client.request(f"/api/streams/{_segment(arguments.id)}/certificate").decode("ascii"))
        return
    # What each command asks the admin interface for, and how it shows the
    # answer (with --json, as it came).
    commands: dict[str, tuple[Callable[[], JSONObject], Callable[[JSONObject], str]]] = {
        "streams": (lambda: client.json("/api/streams"), format_streams),
        "stream": (lambda: client.json(f"/api/streams/{_segment(arguments.id)}"), format_stream),
        "peers": (lambda: _all_peers(client), format_peers),
        "records": (lambda: client.json("/api/records"), format_records),
        "peer": (lambda: client.json(f"/api/peers/{_segment(arguments.domain)}"), format_peer),
        "warnings": (lambda: client.json("/api/warnings"), format_warnings),
        "ack": (
            lambda: client.json(f"/api/warnings/{_segment(arguments.id)}/acknowledge", "POST"),
            lambda data: f"warning {printable(arguments.id)} acknowledged",
        ),
    }
    ask, show = commands[arguments.command]
    data = ask()
    if arguments.json:
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    else:
        text = show(data)
    out.write(text + "\n")


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    arguments = parser().parse_args(argv)  # exits 2 on a usage error
    try:
        run(arguments, out)
    except CtlError as e:
        err.write(f"gateway.ctl: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
