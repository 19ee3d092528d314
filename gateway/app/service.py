"""
Wiring: from a L{gateway.app.config.GatewayConfig} to a running service with
its listeners.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.task import LoopingCall
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from gateway import __version__
from gateway.app.config import GatewayConfig
from gateway.app.state import GatewayState, prepare_state
from gateway.components.listener import ComponentFactory
from gateway.components.routing import Router
from gateway.log import Logger
from gateway.names.interfaces import IDNSClient
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


class Listener(service.Service):
    """
    One listening port of the gateway: C{factory} on C{endpoint}, bound at
    L{privilegedStartService} (before twistd drops privileges).  A port that
    can't be had then stops the gateway (L{SystemExit}) with one line that
    names it.

    @ivar what: what listens here (C{"s2s (STARTTLS)"}, C{"components"},
        ...), for the log and L{GatewayService.listening_ports}.
    @ivar description: the endpoint as the configuration gives it.
    """

    def __init__(
        self,
        what: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
    ) -> None:
        self.what = what
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self._port: Deferred[IListeningPort] | None = None
        self._listening_port: IListeningPort | None = None

    def port(self) -> Deferred[IListeningPort]:
        """
        The listening port, once L{privilegedStartService} or
        L{startService} asked for it.

        @return: a Deferred firing with the L{IListeningPort}, or failing
            with L{CannotListenError}.
        @raise RuntimeError: before the service started.
        """
        if self._port is None:
            raise RuntimeError(f"not listening for {self.what} yet")
        return self._port

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self._port is None:
            self._listen()

    def _listen(self) -> None:
        refused: list[str] = []

        def cannot_listen(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, CannotListenError):
                message = (
                    f"cannot listen for {self.what} on {self.description}: {error.socketError}"
                )
                log.critical("{message}", message=message)
                refused.append(message)
            return failure

        port = self.endpoint.listen(self.factory)
        port.addCallbacks(self._listening, cannot_listen)
        if refused:
            # A port that can't be had stops the gateway with one clear
            # line; the failure is told by the exit, not kept.
            port.addErrback(lambda _: None)
            raise SystemExit(f"xmpp-gateway: {refused[0]}")
        self._port = port

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self._listening_port = port
        address = port.getHost()
        log.info(
            "listening for {what} on {address}",
            what=self.what,
            address=f"{getattr(address, 'host', '')}:{getattr(address, 'port', '')}"
            if hasattr(address, "port")
            else str(getattr(address, "name", address)),
        )
        return port

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, or give up a listen still on its way.
        """
        super().stopService()
        waiting, self._port = self._port, None
        listening, self._listening_port = self._listening_port, None
        if listening is not None:
            stopped = listening.stopListening()
            return stopped if stopped is not None else defer.succeed(None)
        if waiting is not None:
            waiting.cancel()
            waiting.addErrback(_never_listened)
        return defer.succeed(None)


def _never_listened(failure: Failure) -> None:
    failure.trap(CancelledError, CannotListenError)


class GatewayService(service.MultiService):
    """
    The gateway: a router, the federation and their listeners.

    @ivar router: the L{Router}.
    @ivar federation: the L{Federation}.
    """

    def __init__(
        self,
        config: GatewayConfig,
        state: GatewayState,
        reactor: Any = None,
        resolver: IDNSClient | None = None,
    ) -> None:
        """
        @param state: the L{gateway.app.state.GatewayState} that
            L{prepare_state} made (L{make_service} does both): the
            constructor reads and writes no files.
        @param reactor: the reactor the gateway listens, connects and keeps
            time with (the global one by default).
        @param resolver: the DNS client (by default one made from
            C{config.dns}, on C{reactor}).
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

        self.listeners: list[Listener] = []

        def listen(description: str, factory: IProtocolFactory, what: str) -> None:
            listener = Listener(what, description, serverFromString(reactor, description), factory)
            listener.setServiceParent(self)
            self.listeners.append(listener)

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

            # prepare_state makes the token when the admin interface listens.
            assert self.state.admin_token is not None
            site = make_admin_site(self.status, self.state.admin_token)
            for description in config.admin.listen:
                listen(description, site, "admin")
        secrets = {i.domain: i.component_secret for i in self.state.identities}
        self.components = ComponentFactory(
            self.router, secrets, self.backpressure, config.s2s.max_stanza_size, config.s2s.max_depth
        )
        for description in config.components.listen:
            listen(description, self.components, "components")

    def listening_ports(self, what: str) -> Deferred[list[IListeningPort]]:
        """
        The listening ports for C{what} (C{"s2s (STARTTLS)"},
        C{"s2s (direct TLS)"} or C{"components"}) once the service runs.

        @return: a Deferred list of L{IListeningPort}.
        """
        return defer.gatherResults(
            [listener.port() for listener in self.listeners if listener.what == what]
        )

    def startService(self) -> None:
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
        d = Deferred.fromCoroutine(self._open_records())
        d.addErrback(
            lambda f: log.critical(
                "authentication records unavailable: {error}", error=f.getErrorMessage()
            )
        )

    async def _open_records(self) -> None:
        await self.records.start()
        log.info("authentication records in {path}", path=self.records.path)
        self._start_pruning()
        # Remember the certificate each peer presented last, across restarts.
        self.federation.continuity.load(await self.records.latest_accepted())

    def _start_pruning(self) -> None:
        # Not waited for: the loop's Deferred fires only when it stops.  The
        # store may come up after the service was stopped again.
        if self.running and not self._pruner.running:
            self._pruner.start(3600.0, now=True)

    def _prune_records(self) -> None:
        retention = self.config.records
        before = self.federation.clock.seconds() - retention.max_age_days * 86400
        d = self.records.prune(before=before, keep=retention.max_records)

        def pruned(count: int) -> None:
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

    def stopService(self) -> Deferred[None]:
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
        closed: Deferred[None] = done.addBoth(lambda _: self.records.close())
        return closed


def make_service(
    config: GatewayConfig, reactor: Any = None, resolver: IDNSClient | None = None
) -> GatewayService:
    """
    The gateway for C{config}: its state folder made or read first (the
    dialback secret, self-signed certificates, component secrets), then the
    service built over it.

    @raise gateway.app.state.StateError: the state folder can't be used.
    """
    return GatewayService(config, prepare_state(config), reactor=reactor, resolver=resolver)
