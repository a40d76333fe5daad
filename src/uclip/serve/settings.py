"""Server defaults, in a module without dependencies so the CLI can show them without importing
the web stack."""

from __future__ import annotations

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""``Host`` names answered by default: a server on loopback is reached by these only."""
DEFAULT_LIMIT_CONCURRENCY = 256
"""Open connections (and requests) above which uvicorn answers 503."""
DEFAULT_KEEP_ALIVE_S = 5.0
"""An idle keep-alive connection is closed after this many seconds."""
DEFAULT_HEADER_TIMEOUT_S = 10.0
"""A connection that has not sent a request's complete headers by then is closed (slowloris)."""
