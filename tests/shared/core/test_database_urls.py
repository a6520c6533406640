"""Which values are URLs, PostgreSQL's two schemes, and passwords kept out of messages."""

import pytest

from shared.core.database_urls import connection_problem, postgres_url, redact, url_scheme
from shared.core.errors import RoadmapError


@pytest.mark.parametrize("value, scheme", [
    ("postgresql://u@h/db", "postgresql"), ("POSTGRES://u@h/db", "postgres"), ("postgres+foo://h/db", "postgres+foo"),
    ("chats/memory.sqlite", None), ("C:\\chats\\memory.sqlite", None), ("memory.sqlite", None), ("./a:b", None),
])
def test_url_scheme(value, scheme):
    assert url_scheme(value) == scheme


def test_postgres_alias_and_other_schemes():
    assert postgres_url(" postgres://u:p@h:5432/db ", "--db") == "postgresql://u:p@h:5432/db"
    for bad in ("mysql://u:secret@h/db", "http://h/db", "postgres+foo://h/db"):
        with pytest.raises(RoadmapError, match="is not supported; use a file path or a PostgreSQL URL") as raised:
            postgres_url(bad, "--db")
        assert "secret" not in str(raised.value)
    with pytest.raises(RoadmapError, match="names no server"):
        postgres_url("postgresql://", "--store")


def test_redact_hides_only_the_password():
    assert redact("postgresql://mina:s3cr@t@db:5432/x") == "postgresql://mina:***@db:5432/x"
    assert redact("postgresql://mina@db/x") == "postgresql://mina@db/x"


def test_connection_problem_is_one_line_without_the_password():
    problem = connection_problem(OSError("connection refused\n\tIs the server running?"),
                                 "postgresql://mina:hunter2@db/x", "the memory database", "--db")
    assert str(problem) == ("cannot connect to the memory database at postgresql://mina:***@db/x (connection refused "
                            "Is the server running?); start the server or fix the URL in --db")
