"""A PostgreSQL review database the user may only read (a hot standby, a database or role with
``default_transaction_read_only``, a role granted SELECT only) can still be read; a save is
refused with a message naming the database and what to do, not PostgreSQL's bare words."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.review import LATEST_VERSION, ReviewStore, migrations
from napari_pathreview.review.engine import open_engines
from postgres_server import admin

pytestmark = pytest.mark.postgres

# How a team makes its review database read-only for a user, as PostgreSQL reports it:
READ_ONLY_ROLE = "ALTER ROLE {role} SET default_transaction_read_only = on"  # 25006, as a standby
SELECT_ONLY_ROLE = "SELECT 1"  # only the SELECT granted below: 42501, permission denied
# A reviewer's role: may add and change rows, but does not own the tables (42501 on ALTER TABLE)
WRITER_ROLE = "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
OLD_VERSION = 1  # the first release's schema: every later step must be applied


@pytest.fixture
def reader_url(pg_url: str) -> Iterator[Callable[[str], str]]:
    """``make(setup, version)``: the URL of ``pg_url``'s review database (at schema
    ``version``, the latest by default) as a new role that may read its tables, after ``setup``
    (SQL, ``{role}`` and ``{schema}`` filled in) restricted or extended that."""
    from psycopg import sql
    from sqlalchemy.engine import make_url

    roles: list[str] = []

    def make(setup: str, version: int = LATEST_VERSION) -> str:
        engines = open_engines(pg_url, busy_timeout_s=5.0)  # the tables, at ``version``
        migrations.upgrade(engines.read, engines.write, target=version)
        engines.read.dispose()
        role = f"reader_{uuid.uuid4().hex[:12]}"
        roles.append(role)
        name = sql.Identifier(role)
        with admin(pg_url) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), name)
            )
            conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                    sql.Identifier(schema), name
                )
            )
            conn.execute(sql.SQL(setup).format(role=name, schema=sql.Identifier(schema)))
        return make_url(pg_url).set(username=role).render_as_string(hide_password=False)

    yield make
    with admin(pg_url) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _add_one_review(url: str, image: Path, notes: str) -> None:
    with ReviewStore(url) as store:
        store.add_review(store.add_image(image, "histology"), "dr_a", "benign", None, notes=notes)


@pytest.mark.parametrize("setup", [READ_ONLY_ROLE, SELECT_ONLY_ROLE], ids=["read-only", "select"])
def test_a_read_only_postgres_role_can_list_the_reviews(
    pg_url: str, reader_url: Callable[[str], str], make_image: Callable[[], Path], setup: str
) -> None:
    url = reader_url(setup)
    _add_one_review(pg_url, make_image(), "seen by all")
    with ReviewStore(url, create=False) as store:
        assert [r.notes for r in store.reviews()] == ["seen by all"]
        assert store.counts()["reviews"] == 1


def test_saving_through_a_read_only_postgres_transaction_names_the_database_and_what_to_do(
    reader_url: Callable[[str], str], make_image: Callable[[], Path]
) -> None:
    url = reader_url(READ_ONLY_ROLE)
    with ReviewStore(url) as store:
        with pytest.raises(ReviewStoreError) as raised:
            store.add_image(make_image(), "histology")
        where = store.url
    message = str(raised.value)
    assert f"could not add the image: the review database {where} cannot be written" in message
    assert "hot standby" in message and "primary server" in message
    assert "Nothing was written" in message


def test_saving_as_a_role_without_write_privileges_names_the_database_and_what_to_do(
    reader_url: Callable[[str], str], make_image: Callable[[], Path]
) -> None:
    url = reader_url(SELECT_ONLY_ROLE)
    with ReviewStore(url) as store:
        with pytest.raises(ReviewStoreError) as raised:
            store.add_image(make_image(), "histology")
        where = store.url
    message = str(raised.value)
    assert f"the review database {where} cannot be written (your database role" in message
    assert "a role that may write" in message and "Nothing was written" in message


@pytest.mark.parametrize(
    "setup",
    [READ_ONLY_ROLE, SELECT_ONLY_ROLE, WRITER_ROLE],
    ids=["read-only", "select", "writer"],
)
def test_an_older_postgres_database_opened_by_a_role_that_cannot_upgrade_says_who_must(
    pg_url: str, reader_url: Callable[[str, int], str], setup: str
) -> None:
    url = reader_url(setup, OLD_VERSION)
    with pytest.raises(ReviewStoreError) as raised:
        ReviewStore(url, create=False)
    message = str(raised.value)
    where = make_url(url).render_as_string(hide_password=True)
    assert f"The review database {where} is at schema version {OLD_VERSION};" in message
    assert f"needs schema version {LATEST_VERSION}" in message
    assert "cannot upgrade it" in message and "Nothing was changed" in message
    assert "the role that owns its tables (postgres)" in message
    assert "open it once with this release" in message
    with ReviewStore(pg_url) as owner:  # nothing was half-applied: the owner's upgrade runs
        assert owner.schema_version == LATEST_VERSION


def test_an_older_postgres_database_opens_for_a_read_only_role_once_its_owner_upgraded_it(
    pg_url: str, reader_url: Callable[[str, int], str]
) -> None:
    url = reader_url(SELECT_ONLY_ROLE, OLD_VERSION)
    ReviewStore(pg_url).close()  # the owner opens it once with this release
    with ReviewStore(url, create=False) as store:
        assert store.schema_version == LATEST_VERSION
        assert store.reviews() == []
