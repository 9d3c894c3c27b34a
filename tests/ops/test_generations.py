"""The reload inside one process: requests switch at once, old backends close after theirs."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.reload import Reloader
from bridge.settings import load
from tests.ops.conftest import DEMO_USER, demo_copy

OLD, NEW = b"<voicemail_check_extension>*97<", b"<voicemail_check_extension>*98<"


def test_old_backends_close_only_after_their_requests(tmp_path: Path):
    config = demo_copy(tmp_path)
    app = create_app(load(config), reload_from=config)
    reloader: Reloader = app.state.reloader
    with TestClient(app) as client:
        old = reloader.current
        in_flight = old.gateway.build().serving()  # a request the old runtime still serves
        in_flight.__enter__()
        config.write_text(config.read_text().replace('"*97"', '"*98"'))
        assert client.portal.call(reloader.reload) is True
        assert reloader.current is not old
        assert NEW in client.get("/provision", params=DEMO_USER).content
        time.sleep(0.3)
        assert not old.closed  # still in flight: the old backends stay open
        client.portal.call(lambda: in_flight.__exit__(None, None, None))
        deadline = time.monotonic() + 5
        while not old.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert old.closed and not reloader.current.closed


def test_an_invalid_file_keeps_the_configuration(tmp_path: Path):
    config = demo_copy(tmp_path)
    app = create_app(load(config), reload_from=config)
    reloader: Reloader = app.state.reloader
    good = config.read_text()
    with TestClient(app) as client:
        first = reloader.current
        config.write_text(good.replace('"*97"', '"*98"').replace("[auth]", "[auth]\nbogus = 1"))
        assert client.portal.call(reloader.reload) is False
        assert reloader.current is first and not first.closed
        response = client.get("/provision", params=DEMO_USER)
        assert response.status_code == 200 and OLD in response.content
