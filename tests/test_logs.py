import logging

from bridge.logs import MASK, RedactingFormatter, redact, register_secret


def test_every_encoded_form_of_the_password_is_masked():
    import contextvars

    def check():
        register_secret("Müller2024")
        text = "a Müller2024 b M%C3%BCller2024 c"
        assert redact(text) == f"a {MASK} b {MASK} c"
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", ("pw=Müller2024",),
                                   None)
        assert "Müller" not in RedactingFormatter("%(message)s").format(record)

    contextvars.copy_context().run(check)


def test_short_secrets_are_not_masked_everywhere():
    import contextvars

    def check():
        register_secret("abc")
        assert redact("abcdef") == "abcdef"

    contextvars.copy_context().run(check)


# -- credential parameters by pattern, and derived forms ----------------------------------

import base64  # noqa: E402
import contextvars  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import logging.config  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from bridge.logs import logging_config, set_credential_params  # noqa: E402


@pytest.fixture
def pin_param() -> Iterator[None]:
    set_credential_params(["pin"])
    yield
    set_credential_params([])


@pytest.mark.parametrize("line, masked", [
    ("GET /provision?user=a&pin=4711-x&v=1", "GET /provision?user=a&pin=********&v=1"),
    ("next=%2Fp%3Fuser%3Da%26PIN%3D4711-x%26v%3D1",
     "next=%2Fp%3Fuser%3Da%26PIN%3D********%26v%3D1"),
    ("twice=%253Fpin%253D4711-x%2526v", "twice=%253Fpin%253D********%2526v"),
    ("name encoded p%69n=4711-x&v", "name encoded p%69n=********&v"),
    ('json {"pin": "47\\"11", "v": 1}', 'json {"pin": ********, "v": 1}'),
    ("repr {'pin': b'4711', 'v': 1}", "repr {'pin': ********, 'v': 1}"),
    ("uvicorn: 1.2.3.4:5 - \"WebSocket /provision?password=Geheim&pin=1\" 403",
     "uvicorn: 1.2.3.4:5 - \"WebSocket /provision?password=********&pin=********\" 403"),
    ("pinned=yes, pin= ", "pinned=yes, pin= "),
    ("nothing here 100% plain", "nothing here 100% plain"),
])
def test_configured_parameters_are_masked_in_every_encoding(pin_param, line, masked):
    assert redact(line) == masked


def test_parameter_names_come_from_the_logging_configuration():
    stream = io.StringIO()
    config = logging_config("debug", ["kennwort"])
    config["handlers"]["default"]["stream"] = stream
    try:
        logging.config.dictConfig(config)
        logging.getLogger("uvicorn.error").debug("GET /p?kennwort=Sesam-123 and %s",
                                                 "password=Sesam-456")
        logging.getLogger("uvicorn.asgi").critical("scope query_string=b'kennwort=Sesam-789'")
    finally:
        set_credential_params([])
        logging.config.dictConfig(logging_config("warning"))
    assert "kennwort=********" in stream.getvalue()
    assert "Sesam" not in stream.getvalue()


def test_uvicorn_is_never_set_below_debug():
    assert logging_config("trace")["loggers"]["uvicorn"]["level"] == "DEBUG"


def test_derived_forms_of_a_registered_secret_are_masked():
    secret = "Müller-2024"
    raw = secret.encode()

    def check() -> None:
        register_secret(secret)
        md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        forms = [raw.hex(), raw.hex().upper(), md5, md5.upper(), "M%c3%bcller-2024",
                 "M%C3%BCller-2024"]
        for user in ("al", "ali", "alic"):  # the three alignments of base64
            forms.append(base64.b64encode(f"{user}:".encode() + raw).decode())
            forms.append(base64.urlsafe_b64encode(f"{user}:".encode() + raw).decode())
        for form in forms:
            line = redact(f"header {form} end")
            assert line.startswith("header ") and MASK in line, form
            # what is left of a base64 form: the user's part and an edge character or two
            left = line.removeprefix("header ").removesuffix(" end").replace(MASK, "")
            assert len(left) <= 12, (form, line)

    contextvars.copy_context().run(check)
