"""A fixed configuration covering every model feature, shared by the tests."""

from flocker.control import (
    Application,
    AttachedVolume,
    Dataset,
    Deployment,
    HealthCheck,
    Lease,
    Leases,
    Link,
    Manifestation,
    Node,
    Port,
    Replication,
    RestartAlways,
    RestartOnFailure,
)

NODE_A = "11111111-1111-4111-8111-111111111111"
NODE_B = "22222222-2222-4222-8222-222222222222"
DATASET_PG = "aaaaaaaa-0000-4000-8000-000000000001"
DATASET_LOGS = "aaaaaaaa-0000-4000-8000-000000000002"
DATASET_OLD = "aaaaaaaa-0000-4000-8000-000000000003"
DATASET_FREE = "aaaaaaaa-0000-4000-8000-000000000004"

PG = Dataset(dataset_id=DATASET_PG, metadata={"name": "pg"}, maximum_size=67108864)
LOGS = Dataset(dataset_id=DATASET_LOGS, metadata={"name": "logs"})
OLD = Dataset(dataset_id=DATASET_OLD, deleted=True)
FREE = Dataset(dataset_id=DATASET_FREE, metadata={"owner": "ops", "tier": "gold"})

POSTGRES = Application(
    name="postgres",
    image="postgres:16",
    ports=[Port(internal_port=5432, external_port=15432)],
    environment={"POSTGRES_PASSWORD": "secret"},
    volumes=[
        AttachedVolume(dataset_id=DATASET_PG, mountpoint="/var/lib/postgresql/data"),
        AttachedVolume(dataset_id=DATASET_LOGS, mountpoint="/var/log/postgresql"),
    ],
    restart_policy=RestartOnFailure(maximum_retry_count=5),
    cpu_shares=512,
    memory_limit=268435456,
)

WEB = Application(
    name="web",
    image="example/web:1.2",
    ports=[Port(internal_port=80, external_port=8080)],
    links=[Link(alias="db", local_port=5432, remote_port=15432)],
    restart_policy=RestartAlways(),
    command_line=["serve", "--port", "80"],
)

#: The deployment that test/fixtures/configuration_v1.json holds.
EXAMPLE_DEPLOYMENT = Deployment(
    nodes={
        NODE_A: Node(
            uuid=NODE_A,
            applications={"postgres": POSTGRES},
            manifestations={
                DATASET_PG: Manifestation(dataset=PG, primary=True),
                DATASET_LOGS: Manifestation(dataset=LOGS, primary=True),
                DATASET_FREE: Manifestation(dataset=FREE, primary=False),
            },
        ),
        NODE_B: Node(
            uuid=NODE_B,
            applications={"web": WEB},
            manifestations={
                DATASET_OLD: Manifestation(dataset=OLD, primary=True),
                DATASET_FREE: Manifestation(dataset=FREE, primary=True),
            },
        ),
    },
    leases=Leases(
        leases={
            DATASET_FREE: Lease(
                dataset_id=DATASET_FREE, node_uuid=NODE_B, expiration=1800000000.5
            ),
            DATASET_PG: Lease(dataset_id=DATASET_PG, node_uuid=NODE_A),
        }
    ),
)

#: EXAMPLE_DEPLOYMENT with a standing replica of the pg dataset on node B,
#: non-default replication and an epoch after two failovers: what
#: test/fixtures/configuration_v4_replicated.json holds.
REPLICATED_DEPLOYMENT = EXAMPLE_DEPLOYMENT.set_replicas(
    DATASET_PG, [NODE_B], Replication(interval_seconds=30, failover="automatic")
)._replace_dataset(
    PG.set(replication=Replication(interval_seconds=30, failover="automatic"), epoch=2)
)

#: EXAMPLE_DEPLOYMENT after updates: web runs a new image with an HTTP
#: health check and waits to be healthy (revision 1, the old specification
#: kept as previous); postgres's update to a new image was rolled back by
#: itself (revision 2, why in update_failed).  What
#: test/fixtures/configuration_v5_updated.json holds.
UPDATED_DEPLOYMENT = (
    EXAMPLE_DEPLOYMENT.update_application(
        WEB.set(
            image="example/web:1.3",
            health=HealthCheck(
                kind="http", port=80, path="/healthz", interval=2.5, retries=5
            ),
        )
    )
    .update_application(
        POSTGRES.set(image="postgres:17", health=HealthCheck(kind="tcp", port=5432))
    )
    .rollback_application("postgres", "unhealthy: connection refused")
)

#: EXAMPLE_DEPLOYMENT with web scaled out to 3 and then to 5 instances
#: (revision 2, its previous specification running 3): what
#: test/fixtures/configuration_v6_scaled.json holds.
SCALED_DEPLOYMENT = EXAMPLE_DEPLOYMENT.update_application(
    WEB.set(replicas=3)
).update_application(WEB.set(replicas=5))
