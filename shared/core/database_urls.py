"""PostgreSQL URLs as users type them: which values are URLs, checking the scheme, hiding the password.

``--db`` and ``--store`` take a file path or a URL. A value that looks like a URL
(``scheme://...``) is never taken as a path: it is a PostgreSQL URL or a one-line error.

Example:
    >>> postgres_url("postgres://mina:secret@db.example:5432/shop", "--db")
    'postgresql://mina:secret@db.example:5432/shop'
    >>> redact("postgresql://mina:secret@db.example:5432/shop")
    'postgresql://mina:***@db.example:5432/shop'
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.core.errors import RoadmapError

# libpq reads both; "postgres://" is what many hosting services print.
POSTGRES_SCHEMES = ("postgresql", "postgres")
EXAMPLE_URL = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def url_scheme(value: str) -> str | None:
    """The scheme of a value that looks like a URL (``"mysql"`` for ``mysql://...``), else ``None``.

    Example:
        >>> url_scheme("mysql://x"), url_scheme("C:\\\\chats\\\\memory.sqlite"), url_scheme("chats/m.sqlite")
        ('mysql', None, None)
    """
    found = _SCHEME.match(value.strip())
    return found.group(1).lower() if found else None


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and listings."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def postgres_url(value: str, option: str) -> str:
    """Check that ``value`` is a PostgreSQL URL and return it with the ``postgresql://`` scheme.

    Args:
        value: What the user gave.
        option: The option or variable it came from, for the message (``--db``).

    Returns:
        The URL, ``postgres://`` spelled ``postgresql://``.

    Raises:
        RoadmapError: Another scheme (``mysql://``, ``http://``, ``postgres+foo://``), or no host part.

    Example:
        >>> postgres_url("mysql://localhost/chats", "--db")
        Traceback (most recent call last):
        ...
        shared.core.errors.RoadmapError: --db mysql://localhost/chats: the scheme 'mysql' is not supported; ...
    """
    value = value.strip()
    scheme = url_scheme(value)
    if scheme not in POSTGRES_SCHEMES:
        raise RoadmapError(f"{option} {redact(value)}: the scheme {scheme!r} is not supported; use a file path "
                           f"or a PostgreSQL URL, e.g. {EXAMPLE_URL}")
    rest = value.split("://", 1)[1]
    if not rest or rest.startswith("/"):
        raise RoadmapError(f"{option} {redact(value)}: the URL names no server; e.g. {EXAMPLE_URL}")
    return f"postgresql://{rest}"


def connection_problem(exc: Exception, url: str, what: str, option: str) -> RoadmapError:
    """A failed connection as one line that says what to do.

    Args:
        exc: The driver's error.
        url: The URL it tried (shown without its password).
        what: What the database holds, e.g. ``"the memory database"``.
        option: Where the URL came from, e.g. ``"--db or ROADMAP_MEMORY_DB"``.
    """
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    return RoadmapError(f"cannot connect to {what} at {redact(url)} ({reason}); start the server or fix the URL "
                        f"in {option}")
