import logging

from bridge.app import FailureLog
from bridge.errors import AuthenticationFailed, UpstreamUnavailable


def test_repeated_outages_are_logged_once_per_interval(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("bridge.app.time.monotonic", lambda: clock[0])
    log = FailureLog(interval=10)
    with caplog.at_level(logging.INFO, logger="bridge.app"):
        for _ in range(50):
            log(UpstreamUnavailable("ldap://dir1: connection refused"))
        log(UpstreamUnavailable("billing: HTTP 500"))
        clock[0] += 11
        log(UpstreamUnavailable("ldap://dir1: connection refused"))
        for _ in range(3):
            log(AuthenticationFailed("user 'x': invalid credentials"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "UpstreamUnavailable: ldap://dir1: connection refused",
        "UpstreamUnavailable: billing: HTTP 500",
        "UpstreamUnavailable: ldap://dir1: connection refused "
        "(and 49 more like it since the last report)",
    ]
    assert sum(r.levelno == logging.INFO for r in caplog.records) == 3  # 4xx: every one


def test_unexpected_errors_always_logged_with_traceback(caplog):
    log = FailureLog()
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        log(exc)
        log(exc)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and errors[0].exc_info is not None
