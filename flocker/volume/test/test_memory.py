"""The in-memory backend passes the IVolumeBackend contract."""

from typing import Any

from ..testtools import MemoryHarness, make_volume_backend_tests

_Contract: Any = make_volume_backend_tests(lambda request: MemoryHarness(), lists_at_once=True)


class TestMemoryVolumeBackend(_Contract):  # type: ignore[misc]  # made at runtime
    """MemoryVolumeBackend against the contract."""
