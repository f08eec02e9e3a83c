"""The work queue (work_queue.py): Huey built from QUEUE_URL."""

import pytest
from support.processes import free_port

import work_queue
from errors import ConfigError


def test_a_postgresql_queue_that_refuses_the_connection_is_one_line():
    """A PostgreSQL QUEUE_URL whose server does not answer is one line naming QUEUE_URL, without the password."""
    with pytest.raises(ConfigError) as raised:
        work_queue.create_huey(f"postgresql+psycopg://app:pa55word@127.0.0.1:{free_port()}/app")
    message = str(raised.value)
    assert message.startswith("QUEUE_URL: cannot connect to PostgreSQL")
    assert "\n" not in message
    assert "pa55word" not in message
