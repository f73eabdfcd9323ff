"""Review-store write throughput: what one-transaction-per-review safety costs.

Reference (measured in the same run): bare ``sqlite3`` inserts, one committed transaction per
row, WAL + synchronous=NORMAL — the floor any safe per-review write can reach. Compared:
``ReviewStore.add_review`` on SQLite (validation, image/prediction checks, BEGIN IMMEDIATE)
and, when a PostgreSQL URL is given (``--pg-url`` or ``$PATHREVIEW_TEST_PG_URL``), on PostgreSQL.

    python benchmarks/review_store.py --quick
    python benchmarks/review_store.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path


def _reference(path: Path, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, reviewer TEXT, label TEXT, notes TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO r (reviewer, label, notes) VALUES (?, ?, ?)", ("a", "b", str(i)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def _store(url: str, image: Path, n: int) -> float:
    from napari_pathreview.review import ReviewStore

    with ReviewStore(url) as store:
        sha = store.add_image(image, "histology")
        pid = store.add_prediction(sha, "bench", "1", {"benign": 0.3, "malignant": 0.7}, {})
        roi = {"type": "Point", "coordinates": [1, 2]}
        start = time.perf_counter()
        for i in range(n):
            store.add_review(sha, "bench", "malignant", True, 0.5, f"#{i}", roi, prediction_id=pid)
        return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 writes instead of 2,000")
    parser.add_argument("--pg-url", default=os.environ.get("PATHREVIEW_TEST_PG_URL"))
    args = parser.parse_args(argv)
    n = 200 if args.quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = folder / "image.png"
        image.write_bytes(os.urandom(4096))
        reference = _reference(folder / "reference.sqlite", n)
        rows = [("sqlite3 bare insert (reference)", reference)]
        rows.append(("ReviewStore.add_review, SQLite", _store(str(folder / "r.sqlite"), image, n)))
        if args.pg_url:
            rows.append(("ReviewStore.add_review, PostgreSQL", _store(args.pg_url, image, n)))
    print(f"{n} single-review transactions each")
    print(f"{'writer':<38} {'reviews/s':>10} {'vs reference':>13}")
    for name, rate in rows:
        print(f"{name:<38} {rate:>10.0f} {rate / reference:>12.3g}x")


if __name__ == "__main__":
    main()
