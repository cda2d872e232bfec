import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# $OPENMEDLAB_TEST_DATA: the data folder when the checkout is not beside ../shared (a fresh clone)
SHARED_DATA = Path(os.environ.get("OPENMEDLAB_TEST_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
