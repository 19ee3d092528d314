"""
The twistd command line: C{twistd -n xmpp-gateway --config FILE}.
"""

import sys
from typing import NoReturn

from twisted.application.service import IService
from twisted.python import usage

from gateway.app.config import ConfigError, default_config, load_config
from gateway.app.state import StateError
from gateway.log import set_level
from gateway.records.interfaces import RecordStoreError
from gateway.tls.pkix import TrustStoreError
from gateway.tls.profile import TLSConfigurationError
from gateway.verifiers.registry import available_verifiers


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run the XMPP federation gateway.  Without --config it runs on the embedded "
        "default configuration: domain 'localhost', s2s on 127.0.0.1:5269, components "
        "on 127.0.0.1:5347, state in ./xmpp-gateway-state (a self-signed certificate "
        "and a component secret are made there on first start).  See "
        "docs/configuration.md for the file format."
    )
    optParameters = [
        ["config", "c", None, "The TOML configuration file (default: the embedded default)."],
    ]

    def postOptions(self) -> None:
        # The verifiers installed as plugins, found once, here: the names a
        # policy may use.
        known = frozenset(available_verifiers())
        try:
            if self["config"] is None:
                self.gateway_config = default_config(known_verifiers=known)
            else:
                self.gateway_config = load_config(self["config"], known_verifiers=known)
        except ConfigError as e:
            _exit(f"configuration error: {e}")


def _exit(message: str) -> NoReturn:
    print(f"xmpp-gateway: {message}", file=sys.stderr)
    raise SystemExit(1)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from gateway.app.service import make_service

    # Before anything is made, so that start-up's own messages obey it.
    set_level(options.gateway_config.log.level)
    try:
        return make_service(options.gateway_config, reactor=reactor)
    except (StateError, TLSConfigurationError, TrustStoreError, RecordStoreError) as e:
        _exit(str(e))
