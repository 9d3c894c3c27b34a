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
