"""
The inbound stanza path in one process, without sockets or TLS: an
authenticated L{InboundStream} parses stanzas, checks their addresses and
domain pair, and the real L{Router} hands them to a component that only
counts.  What it measures is the gateway's own CPU per stanza on that path
(parsing, addresses, routing), with none of the noise of a second process
and the kernel, so that small changes to it can be compared:

    .venv/bin/python bench/inbound_path.py [--messages N] [--repeats R]

Each kind of stanza is fed R times (in 64 KiB reads, as TLS delivers them);
the figures are the best and the median CPU seconds per 10,000 stanzas.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from gateway.app.config import PolicyConfig  # noqa: E402
from gateway.components.routing import Router  # noqa: E402
from gateway.s2s.inbound import InboundState, InboundStream  # noqa: E402
from gateway.tls.profile import TLSFacts  # noqa: E402

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    b"from='peer.bench' to='gw.bench' version='1.0'>"
)
BODY = "x" * 100

KINDS = {
    "ascii": "<message from='u@peer.bench' to='sink@gw.bench' type='chat' id='b{n}'>"
             f"<body>{BODY}</body></message>",
    "emoji nickname": "<message from='room@peer.bench/\U0001F98A fox' to='sink@gw.bench/r'"
                      f" type='groupchat' id='b{{n}}'><body>{BODY}</body></message>",
    "rewritten domain": "<message from='u@PEER.bench.' to='sink@gw.bench' type='chat' id='b{n}'>"
                        f"<body>{BODY}</body></message>",
}


class Sink:
    def __init__(self):
        self.count = 0

    def send(self, data):
        self.count += 1


class Federation:
    """
    What an inbound stream needs of the federation, and no more.
    """

    def __init__(self, router):
        self.local_domains = frozenset(["gw.bench"])
        self.max_stanza_size = 512 * 1024
        self.max_depth = 64
        self.clock = Clock()
        self.authentication_timeout = 30
        self.policy = PolicyConfig()
        self.router = router
        self.max_verifications = 200
        self.max_verifications_per_stream = 10
        self.verifications_in_progress = 0

    def stream_opened(self, stream):
        pass

    def stream_closed(self, stream):
        pass


def run(kind, messages):
    router = Router(["gw.bench"])
    sink = Sink()
    router.attach_component("gw.bench", sink)
    federation = Federation(router)
    router.federation = federation
    stream = InboundStream(federation)
    transport = StringTransport()
    stream.makeConnection(transport)
    stream.dataReceived(HEADER)
    # As if STARTTLS and dialback had happened.
    stream.tls = TLSFacts("TLSv1.3", "TLS_AES_256_GCM_SHA384", ())
    stream.state = InboundState.OPEN
    stream.verified.add(("peer.bench", "gw.bench"))
    data = "".join(KINDS[kind].format(n=n) for n in range(messages)).encode("utf-8")
    reads = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    started = time.process_time()
    for read in reads:
        stream.dataReceived(read)
    elapsed = time.process_time() - started
    if sink.count != messages or stream.closed:
        raise SystemExit(f"BENCHMARK FAILED: {kind}: {sink.count} of {messages} delivered")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--language", default=None,
                        help="the stream header's xml:lang (default: none), which stanzas "
                        "without their own are given on their way")
    args = parser.parse_args()
    if args.language is not None:
        global HEADER
        HEADER = HEADER.replace(b"version='1.0'>", f"version='1.0' xml:lang='{args.language}'>".encode())
    print(f"inbound stanza path, in process: {args.messages} messages x {args.repeats} repeats")
    for kind in args.kinds.split(","):
        per_10k = sorted(
            run(kind, args.messages) / args.messages * 10000 for _ in range(args.repeats)
        )
        print(
            f"  {kind:<18} CPU per 10,000 stanzas: best {per_10k[0]:.4f} s, "
            f"median {statistics.median(per_10k):.4f} s"
        )


if __name__ == "__main__":
    main()
