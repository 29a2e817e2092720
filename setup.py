"""Packaging for Flocker: Docker containers together with their data."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "twisted[tls]>=24.3",
    "treq",
    "klein",
    "eliot>=1.14",
    "eliot-tree",
    "pyrsistent",
    "zope.interface",
    "docker>=7",
    "pyyaml",
    "jsonschema>=4",
    "pyOpenSSL",
    "cryptography",
    "service-identity",
    "automat",
    "xxhash>=3",
]

DEV_REQUIRES = [
    "pytest>=8",
    "pytest-twisted",
    "pytest-timeout",
    "hypothesis",
    # The OpenAPI conformance test (flocker/control/test/test_openapi_conformance.py).
    "schemathesis>=4.32,<5",
    "ruff",
    "mypy",
    "mypy-zope",
    "matplotlib",
    "sphinx",
]

# Each console script is declared by the issue that builds it.
CONSOLE_SCRIPTS: list[str] = [
    "flocker-ca = flocker.ca.script:main",
    "flocker-control = flocker.control.script:_run",
    "flocker-dataset-agent = flocker.node.script:dataset_agent_main",
    "flocker-volume = flocker.volume.script:main",
    "flocker-container-agent = flocker.node.script:container_agent_main",
    "flocker-docker-plugin = flocker.dockerplugin.script:main",
    "flocker-node-era = flocker.node._era:main",
    "flocker = flocker.cli.script:main",
    "flocker-deploy = flocker.deploy.script:main",
]

setup(
    name="flocker",
    version="2.0.0.dev0",
    description="Docker containers together with their data, across a cluster",
    python_requires=">=3.11",
    packages=find_packages(include=["flocker", "flocker.*"]),
    package_data={"flocker": ["**/*.json", "**/*.yml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": DEV_REQUIRES},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
