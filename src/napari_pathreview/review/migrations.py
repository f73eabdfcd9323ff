"""Numbered forward migrations of the review database, recorded in ``schema_version``.

Each step turns version ``n - 1`` into version ``n`` and is recorded in the same transaction
that applied it (SQLite and PostgreSQL both have transactional DDL), so a crash mid-upgrade
leaves the database at the old version, never half-way. Two processes opening a fresh
database at once serialise on the write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL
advisory lock) and the second one finds the work done.

Steps never change once released; a new column or index is a new step. Opening a database
whose version is newer than :data:`LATEST_VERSION` is refused: this code would not know
what the newer columns mean. An older database that cannot be written (a read-only share) is
refused too, saying so: this code's queries need the missing steps, which only a writer can apply.
On PostgreSQL that is the role that owns the tables (a step adds columns and indexes); a read-only
role or server is told the versions and who must open the database once to upgrade it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.review import schema
from napari_pathreview.review.engine import postgres_refusal

# Any fixed 64-bit number works; it only has to be the same in every process.
_PG_MIGRATION_LOCK_KEY = 0x70617468726576  # "pathrev"


@dataclass(frozen=True)
class Migration:
    """One forward step: ``apply`` turns version ``version - 1`` into ``version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_base(conn: Connection) -> None:
    """The first released schema: images, predictions and reviews, no confidence or patient."""
    v1 = MetaData()
    Table(
        "images",
        v1,
        Column("sha256", String(schema.SHA256_LENGTH), primary_key=True),
        Column("path", Text, nullable=False),
        Column("modality", String(32), nullable=False),
        Column("metadata", JSON, nullable=False),
        Column("added_at", DateTime, nullable=False),
    )
    Table(
        "predictions",
        v1,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column(
            "image_sha256",
            String(schema.SHA256_LENGTH),
            ForeignKey("images.sha256", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("model_name", String(200), nullable=False),
        Column("model_version", String(50), nullable=False),
        Column("predicted_label", String(100), nullable=False),
        Column("probabilities", JSON, nullable=False),
        Column("settings", JSON, nullable=False),
        Column("created_at", DateTime, nullable=False),
    )
    Table(
        "reviews",
        v1,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column(
            "image_sha256",
            String(schema.SHA256_LENGTH),
            ForeignKey("images.sha256", ondelete="CASCADE"),
            nullable=False,
        ),
        Column(
            "prediction_id",
            Integer,
            ForeignKey("predictions.id", ondelete="SET NULL"),
            nullable=True,
        ),
        Column("reviewer", String(200), nullable=False),
        Column("label", String(100), nullable=False),
        Column("agrees_with_model", Boolean, nullable=False),
        Column("notes", Text, nullable=False),
        Column("roi_geojson", Text, nullable=True),
        Column("created_at", DateTime, nullable=False),
    )
    v1.create_all(conn)


def _add_column(conn: Connection, table: str, column: str, type_: object) -> None:
    """``ALTER TABLE … ADD COLUMN`` from constant identifiers (Core has no construct for it)."""
    preparer = conn.dialect.identifier_preparer
    compiled_type = type_.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
    statement = (
        f"ALTER TABLE {preparer.quote(table)} ADD COLUMN {preparer.quote(column)} {compiled_type}"
    )
    conn.execute(text(statement))


def _v2_confidence_and_patient(conn: Connection) -> None:
    """Reviewer confidence in [0, 1] and the patient an image belongs to (for patient splits)."""
    _add_column(conn, "reviews", "confidence", Float())
    _add_column(conn, "images", "patient_id", String(128))


def _v3_indexes(conn: Connection) -> None:
    """Indexes for the list filters and the latest-review-per-reviewer export."""
    for index in schema.INDEXES:
        index.create(conn, checkfirst=True)


def _v4_agreement_nullable(conn: Connection) -> None:
    """``reviews.agrees_with_model`` may be NULL: a review of an image with no prediction.

    PostgreSQL drops the NOT NULL in place; SQLite cannot, so the table is rebuilt (rows,
    ids and indexes kept; nothing references ``reviews``).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE reviews ALTER COLUMN agrees_with_model DROP NOT NULL"))
        return
    review_indexes = [i for i in schema.INDEXES if i.table is schema.reviews]
    for index in review_indexes:
        conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
    conn.execute(text("ALTER TABLE reviews RENAME TO reviews_v3"))
    schema.reviews.create(conn)
    columns = ", ".join(c.name for c in schema.reviews.columns)
    conn.execute(text(f"INSERT INTO reviews ({columns}) SELECT {columns} FROM reviews_v3"))
    conn.execute(text("DROP TABLE reviews_v3"))
    for index in review_indexes:
        index.create(conn, checkfirst=True)


def _v5_roi_corner_origin(conn: Connection) -> None:
    """Stored ROIs in QuPath's pixel convention (pixel ``i`` spans [i, i + 1)), tagged so.

    Before, every reader took ``roi_geojson`` coordinates as napari's (pixel ``i`` centred on
    ``i``), so each old ROI moves by +0.5 px into the stored convention: it covers the same
    pixels it did for training, scoring and the review widget (``io.pixel_origin``).
    """
    from napari_pathreview.io.geojson import as_corner_document
    from napari_pathreview.io.pixel_origin import CENTRE

    rows = conn.execute(
        text("SELECT id, roi_geojson FROM reviews WHERE roi_geojson IS NOT NULL")
    ).all()
    for review_id, roi in rows:
        moved = as_corner_document(json.loads(roi), CENTRE)
        conn.execute(
            text("UPDATE reviews SET roi_geojson = :roi WHERE id = :id"),
            {"roi": json.dumps(moved, separators=(",", ":"), allow_nan=False), "id": review_id},
        )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "base tables: images, predictions, reviews", _v1_base),
    Migration(2, "reviews.confidence, images.patient_id", _v2_confidence_and_patient),
    Migration(3, "indexes on reviews and predictions", _v3_indexes),
    Migration(4, "reviews.agrees_with_model nullable (no prediction)", _v4_agreement_nullable),
    Migration(5, "reviews.roi_geojson in QuPath's pixel-corner convention", _v5_roi_corner_origin),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The database's schema version; 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    return int(conn.execute(select(func.max(schema.schema_version.c.version))).scalar() or 0)


def _refuse_newer(version: int, where: str) -> None:
    if version > LATEST_VERSION:
        raise ReviewStoreError(
            f"The review database {where} is at schema version {version}, newer than this "
            f"napari-pathreview understands (version {LATEST_VERSION}). It was written by a newer "
            "release: upgrade napari-pathreview (pip install -U napari-pathreview) to open it."
        )


def _refuse_unwritable(version: int, target: int, where: str, unwritable: str | None) -> None:
    if unwritable is not None and version < target:
        raise ReviewStoreError(
            f"The review database {where} is at schema version {version}, older than this "
            f"release's {target}, and cannot be upgraded here: {unwritable}. Have it opened once "
            "with this release where it can be written (by whoever keeps it), or copy it to a "
            "folder you can write and open the copy."
        )


def upgrade(
    read_engine: Engine,
    write_engine: Engine,
    target: int = LATEST_VERSION,
    where: str = "",
    unwritable: str | None = None,
) -> int:
    """Bring the database to ``target``, applying each missing step in one transaction.

    Args:
        read_engine: Used for the cheap check that usually finds nothing to do.
        write_engine: Opens write transactions (``BEGIN IMMEDIATE`` on SQLite).
        target: Stop at this version (tests build old databases with it).
        where: The database, as shown in error messages.
        unwritable: Why the database cannot be written (opened read-only), else None.

    Returns:
        The version the database is at afterwards.

    Raises:
        ReviewStoreError: The database is newer than this code, or older and ``unwritable``
            (or, on PostgreSQL, the role or server would not let the steps be applied).
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ReviewStoreError(f"unknown schema version {target}; latest is {LATEST_VERSION}")
    with read_engine.connect() as conn:
        version = current_version(conn)
    _refuse_newer(version, where)
    if version >= target:
        return version
    _refuse_unwritable(version, target, where, unwritable)
    try:
        return _apply(write_engine, target, where)
    except DBAPIError as error:
        refusal = postgres_refusal(error)
        if refusal is None:
            raise
        owner = _tables_owner(read_engine)
        message = _postgres_upgrade_refused(version, target, where, refusal[0], owner, error)
        raise ReviewStoreError(message) from error


def _apply(write_engine: Engine, target: int, where: str) -> int:
    """Apply the missing steps up to ``target`` in one transaction; the version afterwards."""
    with write_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK_KEY)))
        version = current_version(conn)
        _refuse_newer(version, where)
        schema.schema_version.create(conn, checkfirst=True)
        for migration in MIGRATIONS:
            if version < migration.version <= target:
                migration.apply(conn)
                conn.execute(
                    insert(schema.schema_version).values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=datetime.now(timezone.utc).replace(tzinfo=None),
                    )
                )
                version = migration.version
    return version


def _tables_owner(read_engine: Engine) -> str | None:
    """The PostgreSQL role that owns the review tables (the one that may upgrade them)."""
    query = text(
        "SELECT tableowner FROM pg_tables "
        "WHERE schemaname = current_schema() AND tablename = :table"
    )
    with read_engine.connect() as conn:
        return conn.execute(query, {"table": schema.reviews.name}).scalar()


def _postgres_upgrade_refused(
    version: int, target: int, where: str, why: str, owner: str | None, error: DBAPIError
) -> str:
    """What to tell a PostgreSQL user whose role or server cannot bring the schema up to date:
    the versions, the database, and who must open it once (the steps add columns and indexes,
    which PostgreSQL allows only the tables' owner, or a superuser)."""
    state = "holds no review tables yet" if version == 0 else f"is at schema version {version}"
    who = (
        "a role that may create tables in it"
        if owner is None
        else f"the role that owns its tables ({owner}), or a superuser,"
    )
    return (
        f"The review database {where} {state}; this napari-pathreview needs schema version "
        f"{target}, and this connection cannot upgrade it ({why}). Nothing was changed. Have "
        f"{who} open it once with this release, on the primary server (for example "
        "`pathreview review stats --db URL` as that role); after that it opens for every role "
        f"that may read it. PostgreSQL said: {str(error.orig).strip()}"
    )
