"""
Wiring: from a L{gateway.app.config.GatewayConfig} to a running service with
its listeners.
"""

import os

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from gateway import __version__
from gateway.app.state import prepare_state
from gateway.components.listener import ComponentFactory
from gateway.components.routing import Router
from gateway.names.srv import make_resolver
from gateway.ops.status import StatusSource
from gateway.records.sqlite import SQLiteRecordStore
from gateway.s2s.federation import Federation
from gateway.s2s.flow import Backpressure
from gateway.s2s.inbound import InboundFactory
from gateway.s2s.metrics import GatewayMetrics
from gateway.tls.profile import TLSProfile
from gateway.verifiers.registry import available_verifiers

log = Logger()


class GatewayService(service.MultiService):
    """
    The gateway: a router, the federation and their listeners.

    @ivar router: the L{Router}.
    @ivar federation: the L{Federation}.
    """

    def __init__(self, config, state, reactor=None, resolver=None):
        """
        @param state: the L{gateway.app.state.GatewayState} that
            L{prepare_state} made (L{make_service} does both): the
            constructor reads and writes no files.
        """
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
        self.state = state
        self.tls_profile = TLSProfile(self.state.identities)
        self.metrics = GatewayMetrics()
        self.router = Router(config.domain_names, metrics=self.metrics)
        self.records = SQLiteRecordStore(
            os.path.join(self.state.state_dir, "records.sqlite3"), reactor
        )
        self.backpressure = Backpressure()
        self.federation = Federation(
            config,
            self.state,
            self.tls_profile,
            resolver or make_resolver(config.dns, reactor),
            self.router,
            reactor,
            records=self.records,
            backpressure=self.backpressure,
            metrics=self.metrics,
            verifier_factories=available_verifiers(),
        )
        # Build every verifier a policy names now, so that a bad trust store
        # stops the gateway at start rather than at the first peer.
        for policy in (config.policy.default, *(p for _, p in config.policy.domains)):
            self.federation.verifiers.chain_for(policy)
        log.info(
            "serving {domains}", domains=", ".join(sorted(config.domain_names))
        )

        self.listeners = []

        def listen(description, factory, what):
            endpoint = serverFromString(reactor, description)
            listener = StreamServerEndpointService(endpoint, factory)
            listener._raiseSynchronously = True
            listener.setServiceParent(self)
            self.listeners.append((what, description, listener))

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
        if config.posh.listen:
            from gateway.posh.publisher import make_posh_site

            site = make_posh_site(self.state.identities, config.posh.expires)
            for description in config.posh.listen:
                listen(
                    description,
                    TLSMemoryBIOFactory(self.tls_profile.server_creator(None), False, site),
                    "POSH (HTTPS)",
                )
        self.status = StatusSource(
            self.federation, self.records, self.federation.warnings, self.metrics
        )
        if config.admin.listen:
            from gateway.ops.admin import make_admin_site

            site = make_admin_site(self.status, self.state.admin_token)
            for description in config.admin.listen:
                listen(description, site, "admin")
        secrets = {i.domain: i.component_secret for i in self.state.identities}
        self.components = ComponentFactory(self.router, secrets, self.backpressure)
        for description in config.components.listen:
            listen(description, self.components, "components")

    def listening_ports(self, what):
        """
        The listening ports for C{what} (C{"s2s (STARTTLS)"},
        C{"s2s (direct TLS)"} or C{"components"}) once the service runs.

        @return: a Deferred list of L{IListeningPort}.
        """
        return defer.gatherResults(
            [listener._waitingForPort for kind, _, listener in self.listeners if kind == what]
        )

    def privilegedStartService(self):
        # Listeners bind here (before twistd drops privileges); a port that
        # can't be had stops the gateway with one clear line.
        service.Service.privilegedStartService(self)
        for what, description, listener in self.listeners:
            try:
                listener.privilegedStartService()
            except CannotListenError as e:
                message = f"cannot listen for {what} on {description}: {e.socketError}"
                log.critical("{message}", message=message)
                raise SystemExit(f"xmpp-gateway: {message}") from None
            listener._waitingForPort.addCallback(self._listening, what)

    @staticmethod
    def _listening(port, what):
        address = port.getHost()
        log.info(
            "listening for {what} on {address}",
            what=what,
            address=f"{getattr(address, 'host', '')}:{getattr(address, 'port', '')}"
            if hasattr(address, "port")
            else str(getattr(address, "name", address)),
        )
        return port

    def startService(self):
        super().startService()
        self._sweeper = LoopingCall(self.federation.sweep)
        self._sweeper.clock = self.federation.clock
        self._sweeper.start(min(self.config.timeouts.idle / 4, 10.0), now=False)
        self._parker = LoopingCall(self.federation.park_quiet_parsers)
        self._parker.clock = self.federation.clock
        self._parker.start(1.0, now=False)
        # Records are kept for records.max_age_days, and at most
        # records.max_records of them: checked at start and every hour.
        self._pruner = LoopingCall(self._prune_records)
        self._pruner.clock = self.federation.clock
        d = self.records.start()
        d.addCallback(
            lambda _: log.info("authentication records in {path}", path=self.records.path)
        )
        d.addCallback(self._start_pruning)
        # Remember the certificate each peer presented last, across restarts.
        d.addCallback(lambda _: self.records.latest_accepted())
        d.addCallback(self.federation.continuity.load)
        d.addErrback(
            lambda f: log.critical(
                "authentication records unavailable: {error}", error=f.getErrorMessage()
            )
        )

    def _start_pruning(self, ignored):
        # Not waited for: the loop's Deferred fires only when it stops.  The
        # store may come up after the service was stopped again.
        if self.running and not self._pruner.running:
            self._pruner.start(3600.0, now=True)

    def _prune_records(self):
        retention = self.config.records
        before = self.federation.clock.seconds() - retention.max_age_days * 86400
        d = self.records.prune(before=before, keep=retention.max_records)

        def pruned(count):
            if count:
                log.info(
                    "forgot {count} authentication records (older than {days:g} days, or "
                    "beyond the newest {keep})",
                    count=count,
                    days=retention.max_age_days,
                    keep=retention.max_records,
                )

        d.addCallbacks(pruned, lambda f: log.failure("pruning authentication records", f))
        return None

    def stopService(self):
        if not self.running:
            return defer.succeed(None)
        if self._sweeper.running:
            self._sweeper.stop()
        if self._parker.running:
            self._parker.stop()
        if self._pruner.running:
            self._pruner.stop()
        stopped = defer.maybeDeferred(super().stopService)
        done = defer.gatherResults(
            [stopped, self.federation.shut_down(), self.components.close_all()]
        )
        done.addBoth(lambda _: self.records.close())
        return done


def make_service(config, reactor=None, resolver=None):
    """
    The gateway for C{config}: its state folder made or read first (the
    dialback secret, self-signed certificates, component secrets), then the
    service built over it.

    @raise gateway.app.state.StateError: the state folder can't be used.
    """
    return GatewayService(config, prepare_state(config), reactor=reactor, resolver=resolver)
