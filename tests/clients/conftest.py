"""Connection settings of the servers scripts/test-clients.sh starts."""

import os

import pytest


@pytest.fixture
def open_dsn():
    """A server without users: any user name, no password, may write."""
    return "host={} port={} user=tester dbname=valori".format(
        os.environ["VALORI_PG_HOST"], os.environ["VALORI_PG_PORT"]
    )


@pytest.fixture
def auth_port():
    """A server with users alice:s3cret (write) and bob:r3ad (read)."""
    return int(os.environ["VALORI_PG_AUTH_PORT"])
