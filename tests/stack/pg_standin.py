"""A STAND-IN for PostgreSQL in the test stack - not PostgreSQL.

The LiteLLM stand-in keeps its keys in memory, so the test stack's database only has to be a
service that starts, listens on 5432 and reports healthy, as PostgreSQL does for depends_on.
``--check`` is its healthcheck (pg_isready's role).
"""

import socket
import sys

if len(sys.argv) > 1 and sys.argv[1] == "--check":
    with socket.create_connection(("127.0.0.1", 5432), timeout=2):
        sys.exit(0)

server = socket.create_server(("0.0.0.0", 5432))
print("postgres stand-in listening on 5432", flush=True)
while True:
    conn, _ = server.accept()
    conn.close()
