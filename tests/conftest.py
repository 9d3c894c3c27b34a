"""Shared fixtures: real directory servers.

``slapd``       session-wide OpenLDAP (tests/ldap/slapd.py): seeded users in USERS/GROUPS.
                Do not stop it from a test; use ``private_slapd`` to test outages.
``private_slapd``  a fresh OpenLDAP for one test (about 0.2 s): stop/kill/restart/pause it freely.
``samba_ad``    session-wide Samba AD DC (tests/ad/samba.py): dict of its ad.env values.
                ZB_SAMBA_AD_DIR=/some/dir keeps the provisioned domain between runs (the first
                start takes 8-17 s, later ones < 1 s).

When a server cannot run here (package missing, not root for Samba) its tests are skipped,
except with CI=true, where that is a failure: CI must never go green having tested nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.ad import samba
from tests.ldap import slapd as slapd_mod
from tests.ldap.slapd import Slapd

# portal, tls, tls_portal, raw_server: loopback HTTP upstreams for the website/HTTP tests
pytest_plugins = ["tests.upstreams"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip for developers; fail under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: a test server that cannot run is a failure]",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    reason = slapd_mod.missing()
    if reason:
        unavailable(f"OpenLDAP fixture unavailable: {reason}")
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _own_slapd(folder: Path, with_monitor: bool = False) -> Iterator[Slapd]:
    if reason := slapd_mod.missing():
        unavailable(f"OpenLDAP fixture unavailable: {reason}")
    server = Slapd(folder, with_monitor=with_monitor)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_slapd(tmp_path: Path) -> Iterator[Slapd]:
    yield from _own_slapd(tmp_path / "slapd")


@pytest.fixture
def monitored_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd of the test's own with cn=Monitor: its counts are this test's alone."""
    yield from _own_slapd(tmp_path / "slapd", with_monitor=True)


@pytest.fixture(scope="session")
def samba_ad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    reason = samba.missing()
    if reason:
        unavailable(f"Samba AD fixture unavailable: {reason}")
    keep = os.environ.get("ZB_SAMBA_AD_DIR")
    directory = Path(keep) if keep else tmp_path_factory.mktemp("samba-ad")
    env = samba.start(directory)
    try:
        yield env
    finally:
        samba.stop(directory)
