import pytest
from kit_project import APP, INI  # type: ignore[import-not-found]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory holding the small app and the kit's ini options."""
    monkeypatch.setenv("TEST_DATABASE_URL", "sqlite://")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # The inner run is no xdist worker, whatever worker runs this test.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(kitapp=APP)
    pytester.makeini(INI)
    return pytester
