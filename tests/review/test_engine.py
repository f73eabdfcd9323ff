"""Where the store's database is and what happens when it cannot be opened."""

from __future__ import annotations

import socket
import threading

import pytest

from napari_pathreview.errors import ReviewStoreError
from napari_pathreview.review import ReviewStore, engine
from napari_pathreview.review.engine import resolve_url


def test_default_is_reviews_sqlite_in_the_home_folder(isolated_home, monkeypatch):
    monkeypatch.delenv("PATHREVIEW_DB_URL", raising=False)
    url = resolve_url(None)
    assert (url.get_backend_name(), url.database) == (
        "sqlite",
        str(isolated_home / "reviews.sqlite"),
    )


def test_environment_url_is_used_when_no_argument_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("PATHREVIEW_DB_URL", f"sqlite:///{tmp_path / 'team.sqlite'}")
    assert resolve_url(None).database == str(tmp_path / "team.sqlite")
    assert resolve_url(tmp_path / "mine.sqlite").database == str(tmp_path / "mine.sqlite")


def test_a_plain_path_means_an_sqlite_file(tmp_path):
    with ReviewStore(tmp_path / "sub" / "r.sqlite") as store:
        assert store.backend == "sqlite"
    assert (tmp_path / "sub" / "r.sqlite").is_file()


def test_postgresql_url_without_driver_uses_psycopg_3():
    assert resolve_url("postgresql://team@db.example/reviews").drivername == "postgresql+psycopg"


def test_unreachable_server_fails_clearly_without_showing_the_password():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ReviewStoreError, match="could not open the review database") as raised:
        ReviewStore(f"postgresql://ann:s3cret@127.0.0.1:{port}/reviews", retries=0)
    assert "s3cret" not in str(raised.value) and "***" in str(raised.value)


def call_in_thread(call) -> BaseException | None:
    """Run ``call`` in a thread; the error it raised (None if none). Fails the test if it has
    not returned within a minute."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the call hung"
    return outcome[0]


def open_in_thread(url: str) -> BaseException | None:
    """Open a store in a thread; the error it raised (see ``call_in_thread``)."""
    return call_in_thread(lambda: ReviewStore(url, retries=0))


def test_a_server_that_never_answers_fails_clearly_instead_of_hanging(silent_server, monkeypatch):
    monkeypatch.setattr(engine, "PG_CONNECT_TIMEOUT_S", 1)  # the default is 10 s
    error = open_in_thread(f"postgresql://ann:s3cret@127.0.0.1:{silent_server}/reviews")
    assert isinstance(error, ReviewStoreError)
    assert "timeout" in str(error) and f"127.0.0.1:{silent_server}/reviews" in str(error)
    assert "s3cret" not in str(error)


def test_the_urls_own_connect_timeout_is_kept(silent_server, monkeypatch):
    monkeypatch.setattr(engine, "PG_CONNECT_TIMEOUT_S", 3600)
    error = open_in_thread(f"postgresql://ann@127.0.0.1:{silent_server}/reviews?connect_timeout=1")
    assert isinstance(error, ReviewStoreError) and "timeout" in str(error)


@pytest.mark.postgres
def test_a_server_that_stops_answering_mid_session_is_cut_off_and_the_store_recovers(
    stalling_pg_url, make_image, monkeypatch
):
    url, proxy = stalling_pg_url
    monkeypatch.setattr(engine, "PG_ANSWER_TIMEOUT_S", 1.5)  # the default is 30 s
    store = ReviewStore(url, retries=0)
    first = store.add_image(make_image(), "histology")  # connected and answering

    proxy.stall()
    error = call_in_thread(lambda: store.add_image(make_image(), "histology"))
    assert isinstance(error, ReviewStoreError), error
    assert "did not answer for 1.5 s" in str(error) and "127.0.0.1" in str(error)

    proxy.resume()  # the pool dropped the cut-off connection; a new one works
    second = store.add_image(make_image(), "histology")
    assert first != second and store.image(first) is not None


def test_a_file_that_is_not_a_database_fails_clearly(tmp_path):
    bad = tmp_path / "reviews.sqlite"
    bad.write_bytes(b"not sqlite " * 500)
    with pytest.raises(ReviewStoreError, match="file is not a database"):
        ReviewStore(bad)


def test_in_memory_sqlite_is_refused():
    with pytest.raises(ReviewStoreError, match="in-memory"):
        ReviewStore("sqlite://")


def test_threads_sharing_one_store_lose_nothing(db_url, make_image):
    """Widgets write from worker threads; the pool hands each thread its own connection."""
    store = ReviewStore(db_url)
    sha = store.add_image(make_image(), "histology")
    failures: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for _ in range(25):
                store.add_review(sha, name, "benign", True)
        except BaseException as error:  # reported below, the test fails on it
            failures.append(error)

    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert store.counts()["reviews"] == 100
    store.close()
