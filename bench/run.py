"""The benchmark suite: one command, every scenario, figures as ratios to a bare route.

    .venv/bin/python -m bench.run                  # full run (3 rounds), writes bench/results/
    .venv/bin/python -m bench.run --smoke          # a few seconds per scenario, for CI
    .venv/bin/python -m bench.run --only a,b       # some scenarios

Besides the synthetic scenarios (b: bind only, c: search-then-bind + HTTP accounts),
two are what operators run: "ol" loads deploy/examples/openldap.toml as shipped and
"ad" an Active-Directory-shaped table (search-then-bind, attributes, one required
group), both over LDAPS with the default pool, only the addresses pointed at the
private slapd. LDAP operations per request (binds, searches, anonymous rebinds)
come from slapd's cn=Monitor.

"storm" is the restart storm of issue 12 (bench/storm.py): 5,000 distinct phones
(500 in --smoke) arrive over 2.5 s, one connection each, at the shipped OpenLDAP
example with the directory 20 ms away; it is reported in its own table, one
storm per round, with the issue's pass/fail line. Alone: `--only storm`, or
`python -m bench.storm`.

Everything runs on loopback on this machine: a private slapd with 1,000 users,
an HTTP account backend, a delay proxy, wrk, and the gateway under uvicorn with
2 workers. Each scenario starts its own gateway, warms up, then measures with
wrk (many distinct users) while reading the CPU time of the gateway's process
tree from /proc. The bare Starlette route is measured in every round, with the
same server settings, and every figure is printed as a ratio to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway import free_port  # noqa: E402
from tests.ldap.slapd import (  # noqa: E402
    GROUPS_DN,
    SERVICE_PASSWORD,
    Slapd,
    bind_count,
    operation_count,
)
from tests.sql import servers as sql_servers  # noqa: E402

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes -----------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    try:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(c) for c in text]
        return found
    except OSError:
        return []


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants."""
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        stack += _children(p)
    return total


def rss_mb(pid: int) -> float:
    """Largest resident set among the worker processes (MB)."""
    sizes = []
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
    return max(sizes, default=0.0)


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None,
            ready_url: str | None = None, timeout: float = 30) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                cwd=ROOT)
    try:
        if ready_url:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{args[:4]} exited:\n{log.read_text()[-3000:]}")
                try:
                    httpx.get(ready_url, timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{args[:4]} did not start") from None
                    time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- wrk -----------------------------------------------------------------------------------

@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(url: str, seconds: float, connections: int, env: dict[str, str],
        threads: int = 2) -> Load:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
         "-s", str(ROOT / "bench" / "users.lua"), url],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=seconds + 60,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    data = json.loads(line[6:])
    return Load(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000,
                data["p99_us"] / 1000, data["socket_errors"], data["non_2xx"])


# -- scenarios ------------------------------------------------------------------------------

@dataclass
class Env:
    workdir: Path
    slapd: Slapd
    backend_port: int
    proxy_port: int
    dead_port: int
    monitor: Any = None  # an admin connection to slapd's cn=Monitor
    helpers: dict[str, int] = field(default_factory=dict)  # name -> pid, for CPU figures
    pg_url: str = ""  # a scratch PostgreSQL database with 1,000 subscribers (scenario h)


@dataclass
class Scenario:
    key: str
    title: str
    config: Callable[[Env], str]
    users: int = 1000
    fixed: tuple[str, str] | None = None
    connections: int = 64
    expect: int = 200
    counts: Callable[[Env], dict[str, int]] = field(default=lambda env: {})
    think_ms: int = 0  # per-connection pause between requests: load below saturation
    environ: dict[str, str] = field(default_factory=dict)  # for the gateway process


@dataclass
class Result:
    scenario: str
    round: int
    load: Load
    cpu_us_per_request: float
    bare_rps: float
    upstream_per_request: dict[str, float]
    rss_mb: float
    loop_lag_ms: float | None
    helper_cpu_us: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.load.rps / self.bare_rps if self.bare_rps else 0.0


SERVER_COMMON = """
[server]
workers = 2
access_log = false
log_level = "warning"
"""

NO_SHEDDING = "max_queue_time = 0\n"  # [server]: every request queued, however long


def demo_config(env: Env) -> str:
    demo = ROOT / "bridge" / "demo"
    text = (demo / "config.toml").read_text()
    text = text.replace('path = "users.toml"', f'path = "{demo / "users.toml"}"')
    text = text.replace('path = "accounts.sqlite"', f'path = "{demo / "accounts.sqlite"}"')
    return SERVER_COMMON + text


def ldap_auth(uri: str, search: bool, pool: int = 16) -> str:
    """The [auth] table: direct bind (b) or search-then-bind with attributes (c-f)."""
    find = ('user_dn = "uid={username},ou=people,dc=example,dc=org"' if not search else """
[auth.user_search]
base = "ou=people,dc=example,dc=org"
scope = "one"
filter = "(uid={username})"

[auth.attributes]
displayName = "displayName"
extension = "telephoneNumber"
""")
    return f"""
[auth]
type = "ldap"
client = "asyncio"
uri = "{uri}"
tls = "none"
pool_size = {pool}
bind_dn = "cn=gateway,ou=services,dc=example,dc=org"
bind_password = "gateway-secret"
{find}
"""


MAPPING = """
[mapping.account]
name = "{identity.username}"
username = "{account.sip_user}"
password = "{account.sip_password}"
SIP_domain = "{account.domain}"
SIP_transport_type = "tls"
register_on_startup = true

[[mapping.account.codecs]]
codec_id = 35
priority = 1
enabled = true

[[mapping.account.codecs]]
codec_id = 0
priority = 2
enabled = true
"""

STATIC_SOURCE = """
[source]
type = "static"
[[source.accounts]]
domain = "pbx.example.org"
""" + MAPPING.replace("{account.sip_user}", "{identity.username}").replace(
    "{account.sip_password}", "{login.password}")


def http_source(port: int) -> str:
    return f"""
[source]
type = "http"
url = "http://127.0.0.1:{port}/accounts/{{identity.username}}"
accounts_path = "accounts"
""" + MAPPING


def scenario_b(env: Env) -> str:
    return SERVER_COMMON + ldap_auth(env.slapd.uri, search=False) + STATIC_SOURCE


def scenario_c(env: Env, uri: str | None = None, backend: int | None = None,
               pool: int = 16, extra: str = "") -> str:
    return (SERVER_COMMON + extra + ldap_auth(uri or env.slapd.uri, search=True, pool=pool)
            + http_source(backend or env.backend_port))


def scenario_h(env: Env) -> str:
    """SQL authentication and accounts from PostgreSQL (Kamailio's subscriber table)."""
    table = f'type = "sql"\npreset = "kamailio"\nurl = "{env.pg_url}"\npool_size = 8\n'
    return SERVER_COMMON + f"\n[auth]\n{table}\n[source]\n{table}" + MAPPING


def sql_database() -> sql_servers.Scratch:
    """A scratch database on the machine's PostgreSQL with user<i> / pass<i>, i = 1..1000."""
    reason = sql_servers.pg_missing()
    if reason:
        raise RuntimeError(f"scenario h needs PostgreSQL: {reason}")
    db = sql_servers.scratch("postgresql")
    db.run("""
CREATE TABLE subscriber (
    id SERIAL PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain));
CREATE INDEX subscriber_username_idx ON subscriber (username);
INSERT INTO subscriber (username, domain, password)
    SELECT 'user' || i, 'pbx.example.org', 'pass' || i FROM generate_series(1, 1000) AS i;
ANALYZE subscriber;
""")
    return db


def upstream_counts(env: Env) -> dict[str, int]:
    stats = httpx.get(f"http://127.0.0.1:{env.backend_port}/_stats", timeout=5).json()
    return {"ldap_ops": operation_count(env.monitor), "ldap_binds": bind_count(env.monitor),
            "http": stats["accounts"]}


def ldap_counts(env: Env) -> dict[str, int]:
    """LDAP operations of every kind (binds, searches, rebinds) and binds, from cn=Monitor."""
    return {"ldap_ops": operation_count(env.monitor), "ldap_binds": bind_count(env.monitor)}


def _server_table(text: str) -> str:
    """The bench's [server] settings merged into a shipped file's own [server] table."""
    settings = SERVER_COMMON.replace("\n[server]\n", "")
    if "\n[server]\n" in text:
        return text.replace("\n[server]\n", "\n[server]\n" + settings, 1)
    return SERVER_COMMON + text


def shipped_openldap(env: Env) -> str:
    """deploy/examples/openldap.toml as shipped, pointed at the private slapd (LDAPS).

    Only addresses change: the URIs, and the CA that signed the private server's
    certificate. Pool, timeouts, TLS, groups (nested member/uniqueMember) and the
    source stay the file's; the service password comes from LDAP_BIND_PASSWORD.
    """
    text = (ROOT / "deploy" / "examples" / "openldap.toml").read_text()
    old = 'uri = ["ldaps://ldap1.example.org", "ldaps://ldap2.example.org:636"]'
    assert old in text, "openldap.toml: the uri line moved; update the bench"
    text = text.replace(old, f'uri = ["{env.slapd.ldaps_uri}"]\nca_file = "{env.slapd.ca_file}"')
    return _server_table(text)


def shipped_openldap_uncached(env: Env) -> str:
    """(ol) with every login asking for its groups, as before the group cache (issue 16)."""
    text = shipped_openldap(env)
    assert "\n[auth.groups]\n" in text
    return text.replace("\n[auth.groups]\n", "\n[auth.groups]\ncache_ttl = 0\n", 1)


def active_directory_like(env: Env) -> str:
    """deploy/examples/active-directory.toml's shape on OpenLDAP: search-then-bind over LDAPS,
    attributes, a canonical name and one required group found by one search per login (AD's
    in_chain is one search; here member, not nested), accounts from the identity."""
    return SERVER_COMMON + f"""
[limits]
lockout_window = 900.0

[auth]
type = "ldap"
uri = ["{env.slapd.ldaps_uri}"]
ca_file = "{env.slapd.ca_file}"
bind_dn = "{env.slapd.service_dn}"
bind_password_env = "LDAP_BIND_PASSWORD"
username_attribute = "uid"

[auth.user_search]
base = "{env.slapd.base_dn}"
scope = "sub"
filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"

[auth.attributes]
displayName = "displayName"
extension = "telephoneNumber"
mail = "mail"

[auth.groups]
required = ["cn=voip,{GROUPS_DN}"]
membership = "member"
base = "{env.slapd.base_dn}"
scope = "sub"
nested = false

[source]
type = "ldap"
from = "identity"
require = ["extension"]

[mapping.account]
name = "{{identity.displayName}}"
username = "{{account.extension}}"
password = "{{login.password}}"
SIP_domain = "pbx.example.org"
SIP_callerId = {{ value = "{{identity.displayName}}", default = "" }}
SIP_transport_type = "tls"
"""


def ad_without_tls(env: Env) -> str:
    """(ad) over plain LDAP: what TLS costs (the account for a missed target, not a setup)."""
    return active_directory_like(env).replace(
        f'uri = ["{env.slapd.ldaps_uri}"]', f'uri = ["{env.slapd.uri}"]\ntls = "none"', 1)


def ad_without_rebind(env: Env) -> str:
    """(ad) with reset_after_bind = false: what the anonymous rebinds cost."""
    return active_directory_like(env).replace(
        'username_attribute = "uid"', 'username_attribute = "uid"\nreset_after_bind = false', 1)


SERVICE_ENV = {"LDAP_BIND_PASSWORD": SERVICE_PASSWORD}


SCENARIOS: dict[str, Scenario] = {
    "a": Scenario("a", "embedded default (file users with scrypt, SQLite)", demo_config,
                  fixed=("alice", "wonderland")),
    "b": Scenario("b", "LDAP direct bind + render", scenario_b, counts=upstream_counts),
    "ol": Scenario("ol", "deploy/examples/openldap.toml as shipped (search-then-bind, "
                   "attributes, nested required group; LDAPS, default pool)", shipped_openldap,
                   counts=ldap_counts, environ=SERVICE_ENV),
    "ol-0": Scenario("ol-0", "(ol) with cache_ttl = 0: group lookups on every login, as "
                     "before", shipped_openldap_uncached, counts=ldap_counts, environ=SERVICE_ENV),
    "ad": Scenario("ad", "AD-like: search-then-bind, attributes, a required group "
                   "(LDAPS, default pool)", active_directory_like, counts=ldap_counts,
                   environ=SERVICE_ENV),
    "ad-plain": Scenario("ad-plain", "(ad) over plain LDAP (what TLS costs)", ad_without_tls,
                         counts=ldap_counts, environ=SERVICE_ENV),
    "ad-norebind": Scenario("ad-norebind", "(ad) with reset_after_bind = false (what the "
                            "anonymous rebinds cost)", ad_without_rebind, counts=ldap_counts,
                            environ=SERVICE_ENV),
    "b-paced": Scenario("b-paced", "(b) at 64 connections paced below saturation "
                        "(20 ms think time)", scenario_b, counts=upstream_counts, think_ms=20),
    "c": Scenario("c", "LDAP search-then-bind + HTTP accounts + render", scenario_c,
                  counts=upstream_counts),
    "d": Scenario("d", "(c) + positive cache, 100 users repeating",
                  lambda env: scenario_c(env, extra="\n[cache]\nenabled = true\nttl = 300\n"),
                  users=100, counts=upstream_counts),
    # capacity at 1,000 connections: the listener's shedding (max_queue_time) is off here,
    # else part of the load is answered 503 at once; the storm shows the shedding
    "c-1000": Scenario("c-1000", "(c) at 1,000 connections, max_queue_time = 0: the CPU "
                       "limit (e) is held to",
                       lambda env: scenario_c(env, extra=NO_SHEDDING),
                       connections=1000, counts=upstream_counts),
    "e": Scenario("e", "(c) with the directory 50 ms away, 1,000 connections, "
                  "max_queue_time = 0",
                  lambda env: scenario_c(env, uri=f"ldap://127.0.0.1:{env.proxy_port}",
                                         pool=int(os.environ.get("BENCH_E_POOL", "128")),
                                         extra=NO_SHEDDING),
                  connections=1000, counts=upstream_counts),
    "f": Scenario("f", "(c) with the directory down: 503 from the gateway's breaker",
                  lambda env: scenario_c(env, uri=f"ldap://127.0.0.1:{env.dead_port}"),
                  expect=503, counts=upstream_counts),
    "g": Scenario("g", "(c) with the account backend down: 503 from the gateway's breaker",
                  lambda env: scenario_c(env, backend=env.dead_port),
                  expect=503, counts=upstream_counts),
    "h": Scenario("h", "SQL auth + accounts from PostgreSQL (kamailio preset, plaintext)",
                  scenario_h),
}


STORM = "storm"  # not a wrk scenario: bench/storm.py, one storm per round
STORM_TITLE = ("restart storm (issue 12): distinct phones arriving within seconds, one "
               "connection each, at (ol) with the directory 20 ms away")


def storm_env(env: Env, phones: int, stack: contextlib.ExitStack) -> Env:
    """An Env whose slapd holds the storm's users (a second slapd when the bench's is small)."""
    from bench.storm import WARM_USERS

    if env.slapd.bulk_users >= phones + WARM_USERS:
        return env
    slapd = stack.enter_context(Slapd(env.workdir / "slapd-storm",
                                      bulk_users=phones + WARM_USERS))
    return Env(env.workdir, slapd, env.backend_port, env.proxy_port, env.dead_port)


def measure_bare(env: Env, seconds: float, connections: int) -> float:
    port = free_port()
    with process([PYTHON, "-m", "uvicorn", "bench.bare:app", "--port", str(port),
                  "--workers", "2", "--no-access-log", "--log-level", "warning"],
                 env.workdir / "bare.log", ready_url=f"http://127.0.0.1:{port}/provision"):
        url = f"http://127.0.0.1:{port}/provision"
        wrk(url, 1, connections, {"BENCH_USERS": "0"})
        return wrk(url, seconds, connections, {"BENCH_USERS": "0"}).rps


def loop_lag(base: str) -> float | None:
    """The largest event-loop lag any worker reported (ms), from /metrics."""
    worst = None
    for _ in range(8):  # each scrape reaches one worker
        with contextlib.suppress(httpx.HTTPError):
            for line in httpx.get(base + "/metrics", timeout=2).text.splitlines():
                if line.startswith("bridge_event_loop_lag_max_seconds "):
                    value = float(line.split()[1]) * 1000
                    worst = value if worst is None else max(worst, value)
    return worst


def run_scenario(s: Scenario, env: Env, seconds: float, rnd: int, bare_rps: float) -> Result:
    config = env.workdir / f"scenario-{s.key}.toml"
    config.write_text(s.config(env))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lua_env = {"BENCH_USERS": str(s.users)}
    if s.fixed:
        lua_env |= {"BENCH_USER": s.fixed[0], "BENCH_PASSWORD": s.fixed[1]}
    if s.think_ms:
        lua_env["BENCH_DELAY_MS"] = str(s.think_ms)
    with process([PYTHON, "-m", "bridge.cli", "serve", "--config", str(config),
                  "--port", str(port)], env.workdir / f"gateway-{s.key}.log",
                 env=s.environ, ready_url=base + "/metrics") as proc:
        wrk(base + "/provision", min(2.0, seconds), s.connections, lua_env)  # warm-up
        before_counts = s.counts(env)
        cpu0 = tree_cpu(proc.pid)
        helpers0 = {name: tree_cpu(pid) for name, pid in env.helpers.items()}
        load = wrk(base + "/provision", seconds, s.connections, lua_env)
        cpu = tree_cpu(proc.pid) - cpu0
        helpers = {name: tree_cpu(pid) - helpers0[name] for name, pid in env.helpers.items()}
        after_counts = s.counts(env)
        rss = rss_mb(proc.pid)
        lag = loop_lag(base)
    n = max(1, load.requests)
    expected_fail = load.non_2xx if s.expect == 200 else n - load.non_2xx
    if expected_fail or load.socket_errors:
        print(f"  ! scenario {s.key}: {load.non_2xx} non-2xx, {load.socket_errors} socket errors"
              f" (expected status {s.expect})", file=sys.stderr)
    upstream = {k: (after_counts[k] - before_counts.get(k, 0)) / n for k in after_counts}
    return Result(s.key, rnd, load, cpu / n * 1e6, bare_rps, upstream, rss, lag,
                  {name: value / n * 1e6 for name, value in helpers.items()})


# -- report ---------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def render_cost() -> tuple[float, float]:
    """µs to map + render + validate one configuration: the demo's, and one with 20 codecs."""
    import timeit

    from bridge.models import Account, Credentials, Identity
    from bridge.settings import load_demo
    from bridge.zoiper.document import render_config

    identity = Identity("alice", {"displayName": "Alice Liddell"})
    account = Account({"sip_user": "1001", "sip_password": "Sip-Secret-1001",
                       "domain": "sip.example.com", "transport": "tls", "caller_id": "Alice"})
    login = Credentials("alice", "wonderland")
    figures = []
    for codecs in (None, 20):
        own = load_demo().default.own
        assert own is not None
        mapping = own.mapping
        if codecs:
            template = mapping.account.lists["codecs"][0]
            mapping.account.lists["codecs"] = [template] * codecs

        def once(mapping: Any = mapping) -> bytes:
            return render_config(mapping.build(identity, [account], login))

        runs = timeit.repeat(once, number=2000, repeat=5)
        figures.append(statistics.median(runs) / 2000 * 1e6)
    return figures[0], figures[1]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def report(results: list[Result], bare: list[float], loads: list[str] | None = None,
           storms: list[Any] | None = None, smoke: bool = False) -> str:
    demo_us, codecs_us = render_cost()
    lines = [
        f"Machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "Load average (1 / 5 / 15 min) before each round and at the end: "
        + " · ".join(loads or [load_average()]),
        f"Map + render + validate one configuration (in process, median of 5): demo "
        f"{demo_us:.1f} µs, with 20 codecs {codecs_us:.1f} µs",
        f"Bare route: {statistics.median(bare):,.0f} req/s (median of {len(bare)}: "
        + " / ".join(f"{b:,.0f}" for b in bare) + ")",
        "",
        "| scenario | req/s | ratio to bare | p50 ms | p99 ms | non-2xx % | gateway CPU µs/req "
        "| upstream calls/req | slapd / backend CPU µs/req | worker RSS MB | loop lag max ms "
        "| per round req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for key in dict.fromkeys(r.scenario for r in results):
        rs = [r for r in results if r.scenario == key]
        med = statistics.median
        upstream = ", ".join(f"{k} {med([r.upstream_per_request.get(k, 0) for r in rs]):.3f}"
                             for k in rs[0].upstream_per_request) or "-"
        lags = [r.loop_lag_ms for r in rs if r.loop_lag_ms is not None]
        lines.append(
            f"| {key}: {SCENARIOS[key].title} | {med([r.load.rps for r in rs]):,.0f} "
            f"| {med([r.ratio for r in rs]):.3f} | {med([r.load.p50_ms for r in rs]):.2f} "
            f"| {med([r.load.p99_ms for r in rs]):.2f} "
            f"| {med([100 * r.load.non_2xx / max(1, r.load.requests) for r in rs]):.1f} "
            f"| {med([r.cpu_us_per_request for r in rs]):,.0f} | {upstream} "
            f"| {med([r.helper_cpu_us.get('slapd', 0) for r in rs]):,.0f} / "
            f"{med([r.helper_cpu_us.get('backend', 0) for r in rs]):,.0f} "
            f"| {max(r.rss_mb for r in rs):.0f} "
            f"| {f'{max(lags):.1f}' if lags else '-'} "
            f"| {' / '.join(f'{r.load.rps:,.0f}' for r in rs)} |"
        )
    if storms:
        from bench.storm import table

        if not results:  # --only storm: no wrk table
            del lines[-3:]
        lines += ["", f"{STORM}: {STORM_TITLE}; client timeout {storms[0].timeout:g} s, one "
                  "storm per round" + (" (smoke: no speed check)" if smoke else ""), "",
                  table(storms, speed=not smoke)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="1 round of 2 s per scenario")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, help="measurement per scenario (default 10; smoke 2)")
    p.add_argument("--only", help="comma-separated scenario keys")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    p.add_argument("--storm-phones", type=int, help="phones in the storm (default 5,000; "
                   "smoke 500)")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds = 1
    args.seconds = args.seconds or (2 if args.smoke else 10)
    args.storm_phones = args.storm_phones or (500 if args.smoke else 5000)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    keys = args.only.split(",") if args.only else [*SCENARIOS, STORM]
    unknown = [k for k in keys if k not in SCENARIOS and k != STORM]
    if unknown:
        p.error(f"unknown scenarios: {', '.join(unknown)}")
    workdir = Path(tempfile.mkdtemp(prefix="zb-bench-"))
    storms: list[Any] = []
    storm_base: Env | None = None
    results: list[Result] = []
    bare: list[float] = []
    loads: list[str] = []
    with contextlib.ExitStack() as stack:
        slapd = stack.enter_context(Slapd(workdir / "slapd", bulk_users=1000,
                                          with_monitor=True))
        env = Env(workdir, slapd, free_port(), free_port(), free_port(), slapd.monitor())
        if "h" in keys:
            db = sql_database()
            stack.callback(db.drop)
            env.pg_url = db.url
        with process([PYTHON, "-m", "uvicorn", "bench.backend:app", "--port",
                      str(env.backend_port), "--no-access-log", "--log-level", "warning"],
                     workdir / "backend.log",
                     ready_url=f"http://127.0.0.1:{env.backend_port}/_stats") as backend, \
             process([PYTHON, "-m", "bench.delayproxy", str(env.proxy_port), str(slapd.port),
                      "0.05"], workdir / "proxy.log") as proxy:
            env.helpers = {"slapd": slapd.pid or 0, "backend": backend.pid, "proxy": proxy.pid}
            for rnd in range(1, args.rounds + 1):
                loads.append(load_average())
                bare_rps = measure_bare(env, args.seconds, 64)
                bare.append(bare_rps)
                print(f"round {rnd}: bare route {bare_rps:,.0f} req/s", flush=True)
                for key in keys:
                    if key == STORM:
                        from bench.storm import run_storms

                        ramp = 1.0 if args.smoke else 2.5
                        storm_base = storm_base or storm_env(env, args.storm_phones, stack)
                        found = run_storms(storm_base, args.storm_phones, 1, ramp=ramp)
                        for problem in found[0].problems(speed=not args.smoke):
                            print(f"  ! scenario {STORM}: {problem}", file=sys.stderr)
                        storms += found
                        continue
                    r = run_scenario(SCENARIOS[key], env, args.seconds, rnd, bare_rps)
                    results.append(r)
                    print(f"  {key}: {r.load.rps:,.0f} req/s (ratio {r.ratio:.3f}), "
                          f"p99 {r.load.p99_ms:.1f} ms, {r.cpu_us_per_request:,.0f} µs CPU/req, "
                          f"upstream {r.upstream_per_request}; other CPU µs/req "
                          + ", ".join(f"{k} {v:,.0f}" for k, v in r.helper_cpu_us.items()),
                          flush=True)
    loads.append(load_average())
    text = report(results, bare, loads, storms, args.smoke)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"{stamp}{'-smoke' if args.smoke else ''}.md").write_text(text + "\n")
    if args.keep:
        print(f"work folder kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
