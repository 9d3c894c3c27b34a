from pathlib import Path

import pytest

from bridge.config import Section


def read(data, fn):
    section = Section(data, "server", [], Path("/tmp"))
    value = fn(section)
    section.done()
    return value, section.problems


def test_every_problem_is_reported_with_its_key_path():
    section = Section({"port": "80", "workers": 0, "typo": 1, "path": 5}, "server")
    section.int("port", 8080)
    section.int("workers", 1, min=1)
    section.str("path", "/provision")
    section.str("host")
    section.done()
    assert section.problems == [
        "Config value 'server.port': expected an integer, received '80'",
        "Config value 'server.workers': must be at least 1, received 0",
        "Config value 'server.path': expected a string, received 5",
        "Config value 'server.host': is required",
        "Config value 'server.typo': unknown key (is it misspelt?)",
    ]


def test_bool_is_not_an_int_and_int_is_not_a_bool():
    _, problems = read({"port": True}, lambda s: s.int("port"))
    assert problems == ["Config value 'server.port': expected an integer, received True"]
    _, problems = read({"on": 1}, lambda s: s.bool("on"))
    assert problems == ["Config value 'server.on': expected true or false, received 1"]


def test_choices():
    _, problems = read({"plus": "raw"}, lambda s: s.str("plus", choices=("space", "literal")))
    assert problems == ["Config value 'server.plus': expected one of 'space', 'literal', "
                        "received 'raw'"]


def test_nested_tables_and_arrays_carry_their_path():
    root = Section({"mapping": {"codecs": [{"a": 1}, "x"]}})
    codecs = root.table("mapping").tables("codecs")
    assert len(codecs) == 1
    codecs[0].done()
    assert root.problems == [
        "Config value 'mapping.codecs[1]': expected a table, received 'x'",
        "Config value 'mapping.codecs[0].a': unknown key (is it misspelt?)",
    ]


def test_secret_inline_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_TEST_SECRET", "from-env")
    (tmp_path / "s.txt").write_text("from-file\n")
    cfg = {"a": "inline", "b_env": "BRIDGE_TEST_SECRET", "c_file": "s.txt"}
    section = Section(cfg, "x", [], tmp_path)
    assert section.secret("a") == "inline"
    assert section.secret("b") == "from-env"
    assert section.secret("c") == "from-file"
    assert section.secret("d", required=False) is None
    section.done()
    assert section.problems == []


def test_secret_problems(tmp_path, monkeypatch):
    monkeypatch.delenv("BRIDGE_NOPE", raising=False)
    section = Section({"a": "x", "a_env": "Y", "b_env": "BRIDGE_NOPE", "c_file": "missing"},
                      "x", [], tmp_path)
    section.secret("a")
    section.secret("b")
    section.secret("c")
    section.secret("d")
    section.done()
    assert section.problems[0] == "Config value 'x.a': give only one of a, a_env"
    assert section.problems[1] == ("Config value 'x.b_env': environment variable "
                                   "'BRIDGE_NOPE' is not set")
    assert section.problems[2].startswith("Config value 'x.c_file': cannot read ")
    assert section.problems[3] == "Config value 'x.d': is required (or d_env / d_file)"
    assert len(section.problems) == 4


@pytest.mark.parametrize("value", [-1, 0])
def test_float_ranges(value):
    _, problems = read({"deadline": value}, lambda s: s.float("deadline", 10.0, min=0.1))
    expected = f"Config value 'server.deadline': must be at least 0.1, received {float(value)}"
    assert problems == [expected]


def test_scalars_reads_free_form_values_and_reports_the_rest():
    section = Section({"name": "x", "n": 3, "on": True, "bad": [1], "skip": {}}, "u")
    assert section.scalars(skip=("skip",)) == {"name": "x", "n": 3, "on": True}
    assert section.problems == ["Config value 'u.bad': expected text, a number or true/false, "
                                "received [1]"]
