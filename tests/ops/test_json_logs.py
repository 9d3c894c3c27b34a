"""The JSON formatter: one object per line, masked before encoding."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import logging.config

from bridge.logs import MASK, logging_config, register_secret


def test_a_secret_that_json_escapes_is_still_masked():
    stream = io.StringIO()
    config = logging_config("info", ["pin"], "json")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    secret = 'qu"ote\\back\tslash-wörd'

    def request() -> None:
        register_secret(secret)
        logging.getLogger("bridge.test").warning("upstream said %r; pin=%s", secret, "4711x")
        try:
            raise ValueError(f"bad {secret}")
        except ValueError:
            logging.getLogger("bridge.test").exception("failed")

    contextvars.copy_context().run(request)
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["level"] for r in records] == ["warning", "error"]
    assert records[0]["logger"] == "bridge.test" and records[0]["request_id"] == "-"
    assert MASK in records[0]["message"] and "4711x" not in records[0]["message"]
    assert "ValueError" in records[1]["exception"]
    for record in records:
        for value in record.values():
            assert "slash-w" not in str(value) and "qu\"ote" not in str(value)
    logging.config.dictConfig(logging_config("warning"))  # back to text for other tests
