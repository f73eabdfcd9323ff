"""Child processes for the review store's safety tests (run as ``python _writer.py MODE ...``).

Modes:
    reviews URL IMAGE REVIEWER N               open (migrating a fresh database), print "ready",
                                               wait for a line on stdin, add the image
                                               (idempotent), a prediction and N reviews of it
    forever URL SHA                            add prediction+review pairs, printing the count after
                                               each commit, until killed
    rewrite PATH BURSTS                        BURSTS times: 10 times rewrite every review's
                                               notes to "pass N" in one transaction, checkpointed
                                               into the file, then pause 0.3 s; print the last N
    lock-sqlite PATH                           hold an EXCLUSIVE lock until a line arrives on stdin
    lock-postgres URL                          hold ACCESS EXCLUSIVE on ``reviews`` likewise
"""

from __future__ import annotations

import sys


def _reviews(url: str, image: str, reviewer: str, count: str) -> None:
    from napari_pathreview.review import ReviewStore

    store = ReviewStore(url, busy_timeout_s=30.0, retries=5)
    print("ready", flush=True)
    sys.stdin.readline()
    sha = store.add_image(image, "histology")
    prediction_id = store.add_prediction(sha, "demo", "1", {"benign": 0.3, "malignant": 0.7}, {})
    for i in range(int(count)):
        store.add_review(
            sha,
            reviewer,
            "malignant" if i % 3 else "benign",
            bool(i % 3),
            confidence=0.5,
            notes=f"{reviewer} #{i}",
            prediction_id=prediction_id,
        )
    print("done", flush=True)


NOTES = "x" * 4000  # long rows, so a kill is likely to land mid-write


def _forever(url: str, sha: str) -> None:
    from napari_pathreview.review import ReviewStore

    store = ReviewStore(url)
    roi = {"type": "Polygon", "coordinates": [[[0, 0], [0, 9], [9, 9], [9, 0], [0, 0]]]}
    written = 0
    while True:
        store.add_prediction_and_review(
            sha,
            "demo",
            "1",
            {"benign": 0.4, "malignant": 0.6},
            {"n": written},
            "killed",
            "benign",
            False,
            0.9,
            NOTES,
            roi,
        )
        written += 1
        print(written, flush=True)


def _rewrite(path: str, bursts: str) -> None:
    import sqlite3
    import time

    conn = sqlite3.connect(path, isolation_level=None)
    rewritten = 0
    for _ in range(int(bursts)):
        for _ in range(10):
            rewritten += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE reviews SET notes = ?", (f"pass {rewritten}",))
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages go into the file itself
        time.sleep(0.3)
    conn.close()
    print(rewritten, flush=True)


def _lock_sqlite(path: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()


def _lock_postgres(url: str) -> None:
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, as under pytest
    from postgres_server import admin

    with admin(url) as conn, conn.transaction():
        conn.execute("LOCK TABLE reviews IN ACCESS EXCLUSIVE MODE")
        print("locked", flush=True)
        sys.stdin.readline()


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    {
        "reviews": _reviews,
        "forever": _forever,
        "rewrite": _rewrite,
        "lock-sqlite": _lock_sqlite,
        "lock-postgres": _lock_postgres,
    }[mode](*arguments)
