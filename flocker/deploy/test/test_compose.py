"""
Tests for docker-compose application files (`flocker.deploy._compose`):
services read as Flocker applications, links through the linked service's
first published port, and every unsupported or unknown key refused by name.
"""

from typing import Any

import pytest
import yaml

from flocker.apiclient import ContainerPort, Link, RestartPolicy
from flocker.deploy import Application, ConfigurationError, Volume
from flocker.deploy._compose import parse_compose_applications

MIB = 1024 * 1024

COMPOSE = """
version: "3.8"
services:
  web:
    image: example/web:1.0
    ports: ["8080:80", "8443:443/tcp"]
    links: ["db:database", "cache"]
    environment: ["MODE=production", "EMPTY=", "WITH_EQUALS=a=b"]
    restart: always
    mem_limit: 256m
    cpu_shares: 512
  db:
    image: postgres
    ports: ["5432:5432", "5433:9999"]
    volumes: ["/var/lib/postgresql/data"]
    environment: {POSTGRES_PASSWORD: secret, PORT: 5432}
    restart: "on-failure:5"
  cache:
    image: memcached
    ports: ["11311:11211"]
    restart: no
"""


def compose(text_or_document: Any) -> dict[str, Application]:
    """Parse compose YAML text (or a document) as ``docker-compose.yml``."""
    document = (
        yaml.safe_load(text_or_document)
        if isinstance(text_or_document, str)
        else text_or_document
    )
    return parse_compose_applications("docker-compose.yml", document)


def rejection(text: str) -> str:
    """The message parsing ``text`` as a compose file fails with."""
    with pytest.raises(ConfigurationError) as info:
        compose(text)
    return str(info.value)


def test_services_become_applications() -> None:
    """Each service becomes an application with its image, ports, environment, limits and restart policy."""
    parsed = compose(COMPOSE)
    assert parsed["web"] == Application(
        name="web",
        image="example/web:1.0",
        ports=[
            ContainerPort(internal=80, external=8080),
            ContainerPort(internal=443, external=8443),
        ],
        links=[
            Link(alias="cache", local_port=11211, remote_port=11311),
            Link(alias="database", local_port=5432, remote_port=5432),
        ],
        environment={"MODE": "production", "EMPTY": "", "WITH_EQUALS": "a=b"},
        restart_policy=RestartPolicy(name="always"),
        memory_limit=256 * MIB,
        cpu_shares=512,
    )
    assert parsed["db"] == Application(
        name="db",
        image="postgres",
        ports=[
            ContainerPort(internal=5432, external=5432),
            ContainerPort(internal=9999, external=5433),
        ],
        volume=Volume(mountpoint="/var/lib/postgresql/data"),
        environment={"POSTGRES_PASSWORD": "secret", "PORT": "5432"},
        restart_policy=RestartPolicy(name="on-failure", maximum_retry_count=5),
    )
    assert parsed["cache"].restart_policy == RestartPolicy(name="never")


def test_link_uses_first_published_port() -> None:
    """A link goes to the linked service's first published port, even when a later one sorts first."""
    parsed = compose(
        """
services:
  app: {image: a, links: ["db"]}
  db: {image: d, ports: ["6000:7000", "5000:8000"]}
"""
    )
    assert list(parsed["app"].links) == [Link(alias="db", local_port=7000, remote_port=6000)]


def test_services_at_top_level() -> None:
    """The oldest compose format, with the services at the top level, is read too."""
    parsed = compose("web: {image: nginx, ports: ['80:80']}\n")
    assert parsed == {
        "web": Application(
            name="web", image="nginx", ports=[ContainerPort(internal=80, external=80)]
        )
    }


def test_replicas_from_deploy_or_scale() -> None:
    """
    ``deploy.replicas`` or ``scale`` (equal when both are given) is how many
    instances run; without them, or with ``deploy: {mode: replicated}`` or
    an empty ``deploy``, one; a service with a volume may have one.
    """
    parsed = compose(
        """
services:
  a: {image: x, deploy: {replicas: 3}}
  b: {image: x, scale: 64}
  c: {image: x, scale: 2, deploy: {mode: replicated, replicas: 2}}
  d: {image: x, deploy: {mode: replicated}}
  e: {image: x, deploy: }
  f: {image: x, volumes: [/data], deploy: {replicas: 1}}
  g: {image: x}
"""
    )
    assert {name: app.replicas for name, app in parsed.items()} == {
        "a": 3,
        "b": 64,
        "c": 2,
        "d": 1,
        "e": 1,
        "f": 1,
        "g": 1,
    }


def test_empty_volumes_and_environment() -> None:
    """Empty ``volumes`` and ``environment`` mean none."""
    parsed = compose("services: {web: {image: nginx, volumes: [], environment: }}\n")
    assert parsed["web"] == Application(name="web", image="nginx")


@pytest.mark.parametrize(
    "text, message",
    [
        ("{}", "docker-compose.yml: no services"),
        ("[web]", "docker-compose.yml: must be a mapping, not a list"),
        ("version: '3'\n", "docker-compose.yml: services: missing"),
        (
            "services: {web: {image: x}}\nnetworks: {}\n",
            "docker-compose.yml: networks: is not supported by flocker-deploy",
        ),
        (
            "services: {web: {image: x}}\nvolumes: {data: {}}\n",
            "docker-compose.yml: volumes: is not supported by flocker-deploy",
        ),
        ("services: [web]\n", "docker-compose.yml: services: must be a mapping, not a list"),
        ("services: {web: nginx}\n", "docker-compose.yml: services.web: must be a mapping, not a string"),
        ("services: {'my app': {image: x}}\n", "docker-compose.yml: services.my app: 'my app' is not a valid name"),
        ("services: {web: {build: .}}\n", "docker-compose.yml: services.web.build: is not supported by flocker-deploy"),
        ("services: {web: {image: x, networks: [a]}}\n", "docker-compose.yml: services.web.networks: is not supported by flocker-deploy"),
        ("services: {web: {image: x, depends_on: [b]}}\n", "docker-compose.yml: services.web.depends_on: is not supported by flocker-deploy"),
        ("services: {web: {image: x, command: run}}\n", "docker-compose.yml: services.web.command: is not supported by flocker-deploy"),
        ("services: {web: {image: x, imagez: y}}\n", "docker-compose.yml: services.web.imagez: unknown key"),
        ("services: {web: {ports: ['80:80']}}\n", "docker-compose.yml: services.web.image: missing"),
        ("web: {image: x, portz: []}\n", "docker-compose.yml: web.portz: unknown key"),
        # ports
        ("services: {web: {image: x, ports: '80:80'}}\n", "docker-compose.yml: services.web.ports: must be a list, not a string"),
        ("services: {web: {image: x, ports: [80]}}\n", "docker-compose.yml: services.web.ports[0]: 80 publishes no node port"),
        ("services: {web: {image: x, ports: [22:22]}}\n", "docker-compose.yml: services.web.ports[0]: 1342 publishes no node port"),
        ("services: {web: {image: x, ports: ['80']}}\n", "docker-compose.yml: services.web.ports[0]: '80' is not 'EXTERNAL:INTERNAL'"),
        ("services: {web: {image: x, ports: ['127.0.0.1:80:80']}}\n", "docker-compose.yml: services.web.ports[0]: '127.0.0.1:80:80' is not 'EXTERNAL:INTERNAL'"),
        ("services: {web: {image: x, ports: ['53:53/udp']}}\n", "docker-compose.yml: services.web.ports[0]: '53:53/udp' is not 'EXTERNAL:INTERNAL'"),
        ("services: {web: {image: x, ports: ['8000-8001:80-81']}}\n", "docker-compose.yml: services.web.ports[0]: '8000-8001:80-81' is not"),
        ("services: {web: {image: x, ports: ['70000:80']}}\n", "docker-compose.yml: services.web.ports[0]: 70000 is not between 1 and 65535"),
        ("services: {web: {image: x, ports: [{target: 80}]}}\n", "docker-compose.yml: services.web.ports[0]: must be a string, not a mapping"),
        ("services: {web: {image: x, ports: ['80:80', '80:81']}}\n", "docker-compose.yml: services.web.ports: port 80 is published twice"),
        # environment
        ("services: {web: {image: x, environment: [HOME]}}\n", "docker-compose.yml: services.web.environment[0]: 'HOME' has no value"),
        ("services: {web: {image: x, environment: ['=1']}}\n", "docker-compose.yml: services.web.environment[0]: must not be empty"),
        ("services: {web: {image: x, environment: {DEBUG: true}}}\n", "docker-compose.yml: services.web.environment.DEBUG: must be a string, not a boolean"),
        ("services: {web: {image: x, environment: {HOME: }}}\n", "docker-compose.yml: services.web.environment.HOME: must be a string, not nothing"),
        ("services: {web: {image: x, environment: A=1}}\n", "docker-compose.yml: services.web.environment: must be a list, not a string"),
        # volumes
        ("services: {web: {image: x, volumes: ['/a', '/b']}}\n", "docker-compose.yml: services.web.volumes[1]: an application has at most one volume"),
        ("services: {web: {image: x, volumes: ['./data:/data']}}\n", "docker-compose.yml: services.web.volumes[0]: './data:/data': host paths and named volumes are not supported"),
        ("services: {web: {image: x, volumes: ['data:/data']}}\n", "docker-compose.yml: services.web.volumes[0]: 'data:/data': host paths and named volumes"),
        ("services: {web: {image: x, volumes: ['data']}}\n", "docker-compose.yml: services.web.volumes[0]: 'data' is not an absolute path"),
        ("services: {web: {image: x, volumes: [{type: volume}]}}\n", "docker-compose.yml: services.web.volumes[0]: must be a string, not a mapping"),
        # restart
        ("services: {web: {image: x, restart: unless-stopped}}\n", "docker-compose.yml: services.web.restart: 'unless-stopped' is not one of no, always, on-failure, on-failure:N"),
        ("services: {web: {image: x, restart: 'on-failure:x'}}\n", "docker-compose.yml: services.web.restart: 'on-failure:x' is not one of"),
        ("services: {web: {image: x, restart: 'on-failure:0'}}\n", "docker-compose.yml: services.web.restart: 0 is not between 1"),
        ("services: {web: {image: x, restart: true}}\n", "docker-compose.yml: services.web.restart: must be a string, not a boolean"),
        # limits
        ("services: {web: {image: x, mem_limit: 1k}}\n", "docker-compose.yml: services.web.mem_limit: 1024 is not between 4194304"),
        ("services: {web: {image: x, cpu_shares: '512'}}\n", "docker-compose.yml: services.web.cpu_shares: must be an integer, not a string"),
        # links
        ("services: {web: {image: x, links: [db]}}\n", "docker-compose.yml: services.web.links[0]: 'db' is not a service in this file"),
        (
            "services: {web: {image: x, links: [db]}, db: {image: y}}\n",
            "docker-compose.yml: services.web.links[0]: 'db' publishes no port to link to",
        ),
        (
            "services: {web: {image: x, links: ['db:bad alias']}, db: {image: y, ports: ['1:1']}}\n",
            "docker-compose.yml: services.web.links[0]: 'bad alias' is not a valid name",
        ),
        (
            "services: {web: {image: x, links: ['db:a', 'db:a']}, db: {image: y, ports: ['1:1']}}\n",
            "docker-compose.yml: services.web.links: alias 'a' is used twice",
        ),
        ("services: {web: {image: x, links: db}}\n", "docker-compose.yml: services.web.links: must be a list, not a string"),
        # deploy.replicas and scale
        ("services: {web: {image: x, deploy: 3}}\n", "docker-compose.yml: services.web.deploy: must be a mapping, not an integer"),
        ("services: {web: {image: x, deploy: {replicas: 0}}}\n", "docker-compose.yml: services.web.deploy.replicas: 0 is not between 1 and 64"),
        ("services: {web: {image: x, deploy: {replicas: 65}}}\n", "docker-compose.yml: services.web.deploy.replicas: 65 is not between 1 and 64"),
        ("services: {web: {image: x, deploy: {replicas: '2'}}}\n", "docker-compose.yml: services.web.deploy.replicas: must be an integer, not a string"),
        ("services: {web: {image: x, deploy: {replicas: 2, resources: {}}}}\n", "docker-compose.yml: services.web.deploy.resources: is not supported by flocker-deploy"),
        ("services: {web: {image: x, deploy: {placement: {}}}}\n", "docker-compose.yml: services.web.deploy.placement: is not supported by flocker-deploy"),
        ("services: {web: {image: x, deploy: {replikas: 2}}}\n", "docker-compose.yml: services.web.deploy.replikas: unknown key"),
        ("services: {web: {image: x, deploy: {1: 2}}}\n", "docker-compose.yml: services.web.deploy.1: keys must be strings"),
        ("services: {web: {image: x, deploy: {mode: global}}}\n", "docker-compose.yml: services.web.deploy.mode: 'global' is not supported: only replicated"),
        ("services: {web: {image: x, scale: 0}}\n", "docker-compose.yml: services.web.scale: 0 is not between 1 and 64"),
        ("services: {web: {image: x, scale: true}}\n", "docker-compose.yml: services.web.scale: must be an integer, not a boolean"),
        (
            "services: {web: {image: x, scale: 3, deploy: {replicas: 2}}}\n",
            "docker-compose.yml: services.web.scale: 3 differs from services.web.deploy.replicas (2): give one",
        ),
        (
            "services: {db: {image: x, volumes: [/data], deploy: {replicas: 2}}}\n",
            "docker-compose.yml: services.db.deploy.replicas: 2 instances of 'db', which has a "
            "volume: an application with volumes runs once: its data is on one node "
            "(replicas are for applications without volumes)",
        ),
        (
            "db: {image: x, volumes: [/data], scale: 3}\n",
            "docker-compose.yml: db.scale: 3 instances of 'db', which has a volume: an "
            "application with volumes runs once",
        ),
    ],
)
def test_rejections_name_the_key(text: str, message: str) -> None:
    """A compose file with an unsupported, unknown or bad key is refused, naming the file and key."""
    assert rejection(text).startswith(message)
