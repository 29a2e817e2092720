"""The leader's singleton duties (`flocker.control._maintenance`)."""

from __future__ import annotations

from eliot import MemoryLogger
from eliot.testing import LoggedMessage, capture_logging
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from .. import ClusterStateService, ConfigurationService, Deployment
from .._failover import AutomaticFailover
from .._maintenance import LEASES_EXPIRED, LeaseExpirer, build_duties
from .._persistence import MemoryConfigurationStore
from ._examples import DATASET_PG, NODE_A, PG


class LeaseExpirerTests(SynchronousTestCase):
    """Lapsed leases leave the stored configuration."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.configuration = ConfigurationService(MemoryConfigurationStore())
        self.successResultOf(self.configuration.load())

        def leased(deployment: Deployment) -> Deployment:
            deployment = deployment.add_dataset(PG, NODE_A)
            leases = deployment.leases.acquire(1000, DATASET_PG, NODE_A, expires=10)
            return deployment.set(leases=leases)

        self.successResultOf(self.configuration.change(leased))
        self.expirer = LeaseExpirer(self.clock, self.configuration, interval=5)

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_lapsed_lease_removed(self, logger: MemoryLogger) -> None:
        """A lease past its expiry is removed by the next check, and logged."""
        self.expirer.startService()
        self.assertEqual(len(self.configuration.deployment.leases), 1)
        self.clock.advance(10)
        self.assertEqual(len(self.configuration.deployment.leases), 0)
        [message] = LoggedMessage.of_type(logger.messages, LEASES_EXPIRED)
        self.assertEqual(message.message["count"], 1)

    def test_nothing_lapsed_nothing_written(self) -> None:
        """While every lease holds, the configuration is not rewritten."""
        generation = self.configuration.generation
        self.expirer.startService()
        self.clock.advance(5)
        self.assertEqual(self.configuration.generation, generation)

    def test_stopped_expirer_checks_no_more(self) -> None:
        """A stopped expirer (no longer the leader's) leaves leases alone."""
        self.expirer.startService()
        self.expirer.stopService()
        self.clock.advance(20)
        self.assertEqual(len(self.configuration.deployment.leases), 1)


class BuildDutiesTests(SynchronousTestCase):
    """`build_duties` gathers every singleton duty, not started."""

    def test_every_duty_named(self) -> None:
        """Failover, clean-up, port moves, lease expiry and rollback, each by name."""
        clock = Clock()
        configuration = ConfigurationService(MemoryConfigurationStore())
        duties = build_duties(clock, configuration, ClusterStateService(clock), 30.0)
        self.assertEqual(
            sorted(service.name for service in duties),
            ["cleaner", "failover", "lease-expirer", "port-mover", "rollback"],
        )
        failover = duties.getServiceNamed("failover")
        self.assertIsInstance(failover, AutomaticFailover)
        self.assertEqual(failover.failover_after, 30.0)
        self.assertFalse(duties.running)
