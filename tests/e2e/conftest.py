from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import chromium


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from chromium()
