"""The in-memory backend passes the IVolumeBackend contract."""

from ..testtools import MemoryHarness, make_volume_backend_tests


class TestMemoryVolumeBackend(make_volume_backend_tests(lambda request: MemoryHarness())):
    """MemoryVolumeBackend against the contract."""
