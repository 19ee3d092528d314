"""
Wiring: from a L{gateway.config.GatewayConfig} to a running service with
its listeners.
"""

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from gateway import __version__
from gateway.component import ComponentFactory
from gateway.dns import make_resolver
from gateway.routing import Router
from gateway.s2s.federation import Federation
from gateway.s2s.inbound import InboundFactory
from gateway.state import prepare_state
from gateway.tls import TLSProfile

log = Logger()


class GatewayService(service.MultiService):
    """
    The gateway: a router, the federation and their listeners.

    @ivar router: the L{Router}.
    @ivar federation: the L{Federation}.
    """

    def __init__(self, config, reactor=None, resolver=None):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        log.info(
            "xmpp-gateway {version} starting from {source}; state folder {state_dir}",
            version=__version__,
            source=config.source,
            state_dir=config.state_dir,
        )
        self.state = prepare_state(config)
        self.tls_profile = TLSProfile(self.state.identities)
        self.router = Router(config.domain_names)
        self.federation = Federation(
            config,
            self.state,
            self.tls_profile,
            resolver or make_resolver(config.dns),
            self.router,
            reactor,
        )
        self.router.federation = self.federation
        log.info(
            "serving {domains}", domains=", ".join(sorted(config.domain_names))
        )

        def listen(description, factory, what):
            endpoint = serverFromString(reactor, description)
            listener = StreamServerEndpointService(endpoint, factory)
            listener._raiseSynchronously = True
            listener.setServiceParent(self)
            log.info("listening for {what} on {endpoint}", what=what, endpoint=description)

        for description in config.s2s.listen:
            listen(description, InboundFactory(self.federation), "s2s (STARTTLS)")
        for description in config.s2s.listen_direct_tls:
            listen(
                description,
                TLSMemoryBIOFactory(
                    self.tls_profile.server_creator(None),
                    False,
                    InboundFactory(self.federation, direct_tls=True),
                ),
                "s2s (direct TLS)",
            )
        secrets = {i.domain: i.component_secret for i in self.state.identities}
        for description in config.components.listen:
            listen(description, ComponentFactory(self.router, secrets), "components")

    def stopService(self):
        self.federation.shut_down()
        return super().stopService()


def make_service(config, reactor=None, resolver=None):
    return GatewayService(config, reactor=reactor, resolver=resolver)
