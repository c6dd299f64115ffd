"""The test PostgreSQL server really starts and answers (the fixture the store and data tests share)."""

import subprocess

from tests.postgres_server import pg_binary


def test_a_real_server_answers_sql(postgres_database):
    port = postgres_database.rsplit(":", 1)[1].split("/")[0]
    name = postgres_database.rsplit("/", 1)[1]
    out = subprocess.run([pg_binary("psql"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", name,
                          "-Atc", "select 6 * 7, current_database()"], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == f"42|{name}"
