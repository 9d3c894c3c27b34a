"""The users-file authenticator: right and wrong passwords, and no timing oracle for usernames."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from bridge.auth.file import Decoys, FileAuthenticator, FileUser
from bridge.models import Credentials
from bridge.passwords import hash_password, parameters
from tests.upstreams import make_authenticator, section


def users_file(folder: Path, users: dict[str, tuple[str, int]], name: str = "users.toml") -> Path:
    """users: name -> (password, scrypt ln)."""
    path = folder / name
    path.write_text("".join(f'[users.{user}]\npassword = "{hash_password(pw, ln)}"\n'
                            f'groups = ["staff"]\ndisplayName = "{user.title()}"\n'
                            for user, (pw, ln) in users.items()))
    return path


def load(path: Path) -> FileAuthenticator:
    auth = make_authenticator(f'type = "file"\npath = "{path}"\n')
    assert isinstance(auth, FileAuthenticator)
    return auth


async def test_right_password_wrong_password_unknown_user(tmp_path):
    auth = load(users_file(tmp_path, {"alice": ("wonderland", 10), "hatter": ("tea", 10)}))
    identity = await auth.authenticate(Credentials("alice", "wonderland"))
    assert identity is not None
    assert identity.username == "alice" and identity.groups == {"staff"}
    assert identity.attributes["displayName"] == "Alice"
    assert await auth.authenticate(Credentials("alice", "tea")) is None
    assert await auth.authenticate(Credentials("nobody", "wonderland")) is None
    assert await auth.authenticate(Credentials("Alice", "wonderland")) is None


async def median_seconds(auth: FileAuthenticator, logins: list[Credentials]) -> list[float]:
    samples = []
    for login in logins:
        start = time.perf_counter()
        assert await auth.authenticate(login) is None
        samples.append(time.perf_counter() - start)
    return samples


async def interleaved_medians(auth: FileAuthenticator, a: list[Credentials],
                              b: list[Credentials], rounds: int) -> tuple[float, float]:
    """Alternate the two kinds so that load from other processes hits both alike."""
    await median_seconds(auth, a[:3] + b[:3])  # warm-up: threads, allocator
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(rounds):
        times_a += await median_seconds(auth, [a[i % len(a)]])
        times_b += await median_seconds(auth, [b[i % len(b)]])
    return statistics.median(times_a), statistics.median(times_b)


async def test_unknown_user_costs_what_a_wrong_password_costs_with_a_cheap_file(tmp_path):
    # ln=10 is 32 times cheaper than the default cost (ln=15) a built-in dummy would use.
    known = {f"user{i}": (f"pw-{i}", 10) for i in range(6)}
    auth = load(users_file(tmp_path, known))
    wrong = [Credentials(name, "not-the-password") for name in known]
    unknown = [Credentials(f"ghost{i}", "not-the-password") for i in range(6)]
    unknown_s, wrong_s = await interleaved_medians(auth, unknown, wrong, 200)
    assert 0.8 <= unknown_s / wrong_s <= 1.25, (unknown_s, wrong_s)


async def test_the_timing_comparison_can_tell_costs_apart(tmp_path):
    """The check above would catch a decoy of another cost: ln=12 against ln=10 is 4x."""
    auth = load(users_file(tmp_path, {"cheap": ("a", 10), "dear": ("b", 12)}))
    cheap = [Credentials("cheap", "wrong")]
    dear = [Credentials("dear", "wrong")]
    dear_s, cheap_s = await interleaved_medians(auth, dear, cheap, 40)
    assert dear_s / cheap_s > 1.25, (dear_s, cheap_s)


def test_decoys_follow_the_files_mix_of_costs():
    hashes = [hash_password("x", 10) for _ in range(30)] + [hash_password("y", 11)
                                                             for _ in range(10)]
    decoys = Decoys(hashes)
    assert len(decoys) == 2
    costs = [parameters(decoys.pick(f"ghost-{i}")) for i in range(4000)]
    assert set(costs) == {(10, 8, 1, 32), (11, 8, 1, 32)}
    share = costs.count((11, 8, 1, 32)) / len(costs)
    assert 0.2 <= share <= 0.3, share   # a quarter of the users have ln=11


def test_an_unknown_name_always_gets_the_same_decoy_in_every_worker():
    hashes = [hash_password("x", 10), hash_password("y", 11), hash_password("z", 12)]
    a, b = Decoys(hashes), Decoys(list(reversed(hashes)))   # two workers, two loads
    names = [f"ghost-{i}" for i in range(200)]
    assert [parameters(a.pick(n)) for n in names] == [parameters(b.pick(n)) for n in names]
    assert all(a.pick(n) == a.pick(n) for n in names)
    # another file (other salts) is another key: the choice cannot be precomputed
    other = Decoys([hash_password("x", 10), hash_password("y", 11), hash_password("z", 12)])
    assert [parameters(other.pick(n)) for n in names] != [parameters(a.pick(n)) for n in names]


def test_an_empty_file_checks_unknown_users_at_the_default_cost():
    assert parameters(Decoys([]).pick("anyone")) == (15, 8, 1, 32)


async def test_a_user_with_an_unusable_hash_is_refused_like_an_unknown_one():
    # Built by hand (the loader refuses such hashes): a key that is not base64 used to
    # raise from deep inside the check instead of answering "wrong password".
    auth = FileAuthenticator({"alice": FileUser("$scrypt$ln=10,r=8,p=1$A$B", frozenset(), {}),
                              "hatter": FileUser(hash_password("tea", 10), frozenset(), {})})
    assert await auth.authenticate(Credentials("alice", "pw")) is None
    assert parameters(auth.decoys.pick("alice")) == (10, 8, 1, 32)


def test_a_hash_whose_salt_or_key_is_not_base64_is_a_configuration_error(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text('[users.alice]\npassword = "$scrypt$ln=10,r=8,p=1$A$B"\n')
    cfg = section(f'type = "file"\npath = "{path}"\n', "auth")
    FileAuthenticator.from_config(cfg)
    assert any("users.alice.password" in p and "base64" in p for p in cfg.problems), \
        cfg.problems


def test_loading_builds_one_decoy_per_parameter_set(tmp_path):
    auth = load(users_file(tmp_path, {"a": ("1", 10), "b": ("2", 10), "c": ("3", 11)}))
    assert len(auth.decoys) == 2


def written(folder: Path, text: str, *, case_insensitive: bool = False) -> FileAuthenticator:
    """A users file with exactly `text`; AssertionError listing its problems if it has any."""
    (folder / "raw-users.toml").write_text(text)
    extra = "case_insensitive = true\n" if case_insensitive else ""
    auth = make_authenticator(f'type = "file"\npath = "{folder / "raw-users.toml"}"\n{extra}')
    assert isinstance(auth, FileAuthenticator)
    return auth


@pytest.mark.parametrize("scheme", ["bcrypt", "argon2", "sha512_crypt", "md5_crypt",
                                    "mysql41", "sha256"])
async def test_hashes_imported_from_other_systems_verify(tmp_path, scheme):
    from bridge import hashes

    stored = hashes.make(scheme, "import-me ü")
    auth = written(tmp_path, f'[users.bob]\npassword = "{stored}"\n')
    assert await auth.authenticate(Credentials("bob", "import-me ü")) is not None
    assert await auth.authenticate(Credentials("bob", "import-me")) is None
    assert await auth.authenticate(Credentials("nobody", "import-me ü")) is None


async def test_unknown_users_cost_a_decoy_of_the_files_own_scheme(tmp_path):
    from bridge import hashes

    stored = hashes.make("bcrypt", "pw", like="$2b$05$" + "a" * 53)
    auth = written(tmp_path, f'[users.bob]\npassword = "{stored}"\n')
    [decoy] = auth.decoys._hashes
    assert decoy.startswith("$2b$05$") and decoy != stored


async def test_case_insensitive_names(tmp_path):
    text = f'[users.Alice]\npassword = "{hash_password("pw", 10)}"\n'
    strict = written(tmp_path, text)
    assert await strict.authenticate(Credentials("alice", "pw")) is None
    folding = written(tmp_path, text, case_insensitive=True)
    identity = await folding.authenticate(Credentials("ALICE", "pw"))
    assert identity is not None and identity.username == "Alice"
    twice = text + f'[users.alice]\npassword = "{hash_password("pw", 10)}"\n'
    with pytest.raises(AssertionError, match="same name as 'Alice'"):
        written(tmp_path, twice, case_insensitive=True)


def test_a_password_in_no_known_format_is_refused(tmp_path):
    with pytest.raises(AssertionError, match="imported from another system"):
        written(tmp_path, '[users.bob]\npassword = "plain text"\n')
