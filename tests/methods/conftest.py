"""Every method a test built is closed afterwards (AEL's partner stream owns a thread)."""

import pytest

from .helpers import OPEN_METHODS


@pytest.fixture(autouse=True)
def _close_methods():
    yield
    while OPEN_METHODS:
        OPEN_METHODS.pop().close()
