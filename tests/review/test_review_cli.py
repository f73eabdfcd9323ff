"""``pathreview review stats|list|export``, run in-process through the real entry point."""

from __future__ import annotations

import csv
import re
from datetime import datetime, timezone

import pytest

from napari_pathreview.cli import main
from napari_pathreview.review import ReviewStore

PROBS = {"benign": 0.3, "malignant": 0.7}


@pytest.fixture
def filled(db_url, make_image):
    """Two images reviewed by alice and bob on 2026-02-01/02; bob disagrees on the second."""
    with ReviewStore(db_url) as store:
        shas = [store.add_image(make_image(f"case{i}.png"), "histology") for i in range(2)]
        pids = [store.add_prediction(s, "demo", "1", PROBS, {}) for s in shas]
        for i, (sha, pid) in enumerate(zip(shas, pids, strict=True)):
            store.add_review(
                sha,
                "alice",
                "malignant",
                True,
                prediction_id=pid,
                created_at=datetime(2026, 2, 1, 10 + i, tzinfo=timezone.utc),
            )
        store.add_review(
            shas[0],
            "bob",
            "malignant",
            True,
            0.9,
            prediction_id=pids[0],
            created_at=datetime(2026, 2, 2, 10, tzinfo=timezone.utc),
        )
        store.add_review(
            shas[1],
            "bob",
            "benign",
            False,
            0.6,
            prediction_id=pids[1],
            created_at=datetime(2026, 2, 2, 11, tzinfo=timezone.utc),
        )
    return db_url


def test_stats_prints_counts_rate_and_kappas(filled, capsys):
    assert main(["review", "stats", "--db", filled]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^reviews\s+4$", out, re.M) and re.search(r"^predictions\s+2$", out, re.M)
    assert "disagreements with the model: 1 (rate 0.250)" in out
    assert "rater_a" in out and "cohen_kappa" in out
    assert any(line.split()[:3] == ["alice", "bob", "2"] for line in out.splitlines())


def test_list_filters_disagreements(filled, capsys):
    assert main(["review", "list", "--db", filled, "--disagreements"]) == 0
    out = capsys.readouterr().out
    assert "case1.png" in out and "benign" in out and "1 review(s)" in out
    assert "case0.png" not in out


def test_list_filters_by_reviewer_label_and_dates(filled, capsys):
    argv = [
        "review",
        "list",
        "--db",
        filled,
        "--reviewer",
        "alice",
        "--label",
        "malignant",
        "--since",
        "2026-02-01",
        "--until",
        "2026-02-01T10:30",
        "--model",
        "demo@1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 review(s)" in out and "case0.png" in out


def test_export_writes_the_manifest_with_disagreement_weight(filled, tmp_path, capsys):
    out_path = tmp_path / "manifest.csv"
    argv = [
        "review",
        "export",
        "--db",
        filled,
        "--out",
        str(out_path),
        "--disagreement-weight",
        "2.5",
    ]
    assert main(argv) == 0
    assert "4 row(s)" in capsys.readouterr().out
    with open(out_path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted(r["weight"] for r in rows) == ["1.0", "1.0", "1.0", "2.5"]


def test_default_database_is_the_home_sqlite_file(isolated_home, capsys):
    from napari_pathreview.review import ReviewStore

    ReviewStore().close()  # the widget creates it on the first save
    assert main(["review", "stats"]) == 0
    assert str(isolated_home / "reviews.sqlite") in capsys.readouterr().out


def test_missing_home_database_is_an_error_not_created(isolated_home, capsys):
    assert main(["review", "stats"]) == 2
    assert "no review database" in capsys.readouterr().err
    assert not (isolated_home / "reviews.sqlite").exists()


def test_db_url_from_environment(filled, monkeypatch, capsys):
    monkeypatch.setenv("PATHREVIEW_DB_URL", filled)
    assert main(["review", "list"]) == 0
    assert "4 review(s)" in capsys.readouterr().out


def test_bad_date_is_a_user_error(filled, capsys):
    assert main(["review", "list", "--db", filled, "--since", "last tuesday"]) == 2
    assert "not an ISO date" in capsys.readouterr().err


def test_newer_database_is_a_user_error(tmp_path, capsys):
    from sqlalchemy import insert

    from napari_pathreview.review.schema import schema_version

    db = tmp_path / "future.sqlite"
    with ReviewStore(db) as store, store._engines.write.begin() as conn:
        conn.execute(
            insert(schema_version).values(
                version=99, description="future", applied_at=datetime(2030, 1, 1)
            )
        )
    assert main(["review", "stats", "--db", str(db)]) == 2
    assert "newer than this napari-pathreview" in capsys.readouterr().err


def test_export_to_a_folder_says_it_is_a_folder_and_what_to_give(filled, tmp_path, capsys):
    folder = tmp_path / "qa"
    folder.mkdir()
    assert main(["review", "export", "--db", filled, "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--out {folder} is a folder; give a file name, e.g. {folder / 'manifest.csv'}" in err
    assert ".qa." not in err  # no hidden temporary file named
    assert list(folder.iterdir()) == []


def test_export_onto_an_existing_manifest_is_refused_naming_it_and_force(filled, tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\nlast-week.png,benign\n")
    assert main(["review", "export", "--db", filled, "--out", str(manifest)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(manifest) in err and "--force" in err
    assert "overwrite=True" not in err
    assert manifest.read_text() == "path,label\nlast-week.png,benign\n"


def test_export_with_force_replaces_an_existing_manifest(filled, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\nlast-week.png,benign\n")
    assert main(["review", "export", "--db", filled, "--out", str(manifest), "--force"]) == 0
    fresh = tmp_path / "fresh.csv"
    assert main(["review", "export", "--db", filled, "--out", str(fresh)]) == 0
    assert manifest.read_text() == fresh.read_text()
