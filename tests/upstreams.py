"""Real HTTP upstreams on loopback for the website / HTTP backends' tests.

`Server` runs a Starlette app under uvicorn in a thread (plain or TLS, with or
without a required client certificate). `portal_app` is a small provider:
a JSON login, a form login (WHMCS-like), an HTTP Basic login, an OAuth2 token
endpoint and account APIs whose misbehaviour is chosen by the user name. Every
request it gets is recorded raw (method, raw path, query string, headers,
body), so tests assert what the upstream actually RECEIVED.

`RawServer` is below HTTP: a TCP listener that answers garbage, closes the
connection, cuts a body short or never answers, chosen per request
(`misbehave` picks it from the `user=` query parameter). `leaks` finds a
secret in a text in any encoding it could have been logged in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import ssl
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, unquote

import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from bridge.auth import Authenticator, build_authenticator
from bridge.config import Section
from bridge.plugins import Backend
from bridge.sources import AccountSource, build_source
from tests.gateway import free_port

# name -> password; the scenario users all log in fine, their ACCOUNTS misbehave.
INJECTION = "a/../b?x=1&y#z"
USERS = {
    "alice": "wonderland-1",
    "bob": "builder-22",
    "crash": "secret-pw", "sleepy": "secret-pw", "drip": "secret-pw", "garbage": "secret-pw",
    "nobody": "secret-pw", "ghost": "secret-pw", "huge": "secret-pw", "huge-chunked": "secret-pw",
    "xml": "secret-pw", "xml-empty": "secret-pw", "doctype": "secret-pw",
    INJECTION: "secret-pw",
    "..": "secret-pw",
}
CUSTOMERS = {name: 1000 + i for i, name in enumerate(USERS)}
STATIC_TOKEN = "static-token-5f2a"
API_KEY = "api-key-77c1"
SERVICE_BASIC = ("svc", "svc-pass-31")
OAUTH_CLIENT = ("bridge-client", "client-secret-9d")


def accounts_of(user: str) -> list[dict[str, Any]]:
    if user == "alice":
        return [
            {"sip": {"username": "1001", "password": "Sip-Secret-1001"},
             "domain": "sip.example.com", "label": "Alice office", "port": 5061, "extra": None},
            {"sip": {"username": "1002", "password": "Sip-Secret-1002"},
             "domain": "sip.example.com", "label": "Alice home", "port": 5061, "extra": None},
        ]
    if user in USERS and user not in ("nobody",):
        n = 2000 + CUSTOMERS[user]
        return [{"sip": {"username": str(n), "password": f"Sip-Secret-{n}"},
                 "domain": "sip.example.com", "label": user, "port": 5061}]
    return []


@dataclass
class Seen:
    method: str
    raw_path: bytes
    query: bytes
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query.decode(), keep_blank_values=True)


@dataclass
class PortalState:
    seen: list[Seen] = field(default_factory=list)
    tokens_issued: int = 0
    token_lifetime: int = 3600
    base_url: str = ""

    def paths(self) -> list[bytes]:
        return [s.raw_path for s in self.seen]


class Recorder:
    """ASGI middleware: keep every request exactly as it arrived."""

    def __init__(self, app: Any, state: PortalState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.state.seen.append(Seen(scope["method"], scope["raw_path"], scope["query_string"],
                                    headers, body))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def form_of(request: Request) -> dict[str, str]:
    """Form fields, decoded once (without python-multipart)."""
    fields = parse_qs((await request.body()).decode(), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _login_ok(user: Any, password: Any) -> bool:
    return isinstance(user, str) and USERS.get(user) == password


def _session(user: str) -> dict[str, Any]:
    return {"login": user, "name": f"{user.title()} Liddell", "customer_id": CUSTOMERS[user],
            "roles": ["voip", "staff"]}


def portal_app(state: PortalState) -> Any:
    async def json_login(request: Request) -> Response:
        data = await request.json()
        user, password = data.get("email"), data.get("password")
        if user == "login-crash":
            return Response("oops", 500)
        if user == "login-slow":
            await asyncio.sleep(3)
        if isinstance(user, str) and user.startswith("login-garbage"):
            return Response("<html>maintenance</html>", 200, media_type="text/html")
        if user == "login-no-token":
            return JSONResponse({"success": True, "data": {"user": _session("alice")}})
        if isinstance(user, str) and user.startswith("login-rejected"):  # names it refuses
            return JSONResponse({"error": "email is not valid"}, 400)
        if user == "login-reshaped":  # an API that changed shape: no "success" any more
            return JSONResponse({"status": "ok", "data": {"user": _session("alice"),
                                                          "token": "tok-reshaped"}})
        if not _login_ok(user, password):
            return JSONResponse({"success": False, "error": "invalid"}, 401)
        response = JSONResponse({"success": True, "data": {
            "user": _session(user), "token": f"tok-{CUSTOMERS[user]}"}})
        response.set_cookie("PHPSESSID", f"sess-{CUSTOMERS[user]}", httponly=True)
        response.set_cookie("tracking", "t-1")
        return response

    async def form_login(request: Request) -> Response:
        form = await form_of(request)
        user, password = form.get("username"), form.get("password")
        if not _login_ok(user, password):
            # WHMCS-like: a 200 that says no.
            return JSONResponse({"result": "error", "message": "Email or Password Invalid"})
        response = JSONResponse({"result": "success", "client_id": CUSTOMERS[str(user)],
                                 "name": str(user)})
        response.set_cookie("WHMCSsession", f"sess-{CUSTOMERS[str(user)]}")
        return response

    async def xml_login(request: Request) -> Response:
        form = await form_of(request)
        ok = _login_ok(form.get("username"), form.get("password"))
        body = (f"<login><status>{'ok' if ok else 'denied'}</status>"
                f"<user id=\"{CUSTOMERS.get(str(form.get('username')), 0)}\">"
                f"<name>{form.get('username')}</name></user></login>")
        return Response(body, 200, media_type="application/xml")

    async def basic_login(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if _login_ok(user, password):
                return JSONResponse({"ok": True, "user": _session(user)})
        return Response("", 401, {"WWW-Authenticate": 'Basic realm="portal"'})

    async def token(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        form = await form_of(request)
        expected = "Basic " + base64.b64encode(":".join(OAUTH_CLIENT).encode()).decode()
        if auth != expected or form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "invalid_client"}, 401)
        state.tokens_issued += 1
        return JSONResponse({"access_token": f"svc-token-{state.tokens_issued}",
                             "token_type": "Bearer", "expires_in": state.token_lifetime})

    def user_from_raw_path(request: Request, index: int) -> str:
        """The segment exactly as sent, decoded once: proves where the boundaries were."""
        return unquote(request.scope["raw_path"].decode("ascii").split("/")[index])

    async def accounts(request: Request) -> Response:
        user = user_from_raw_path(request, 3)
        auth = request.headers.get("authorization")
        if auth is not None and auth != f"Bearer tok-{CUSTOMERS.get(user)}":
            return JSONResponse({"error": "not your session"}, 401)  # a session, if sent, fits
        return await answer(user)

    async def protected(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        basic = "Basic " + base64.b64encode(":".join(SERVICE_BASIC).encode()).decode()
        issued = {f"Bearer svc-token-{n}" for n in range(1, state.tokens_issued + 1)}
        if not (auth in ({f"Bearer {STATIC_TOKEN}", basic} | issued)
                or request.headers.get("x-api-key") == API_KEY):
            return JSONResponse({"error": "unauthorized"}, 401)
        return await answer(user_from_raw_path(request, 3))

    async def session_accounts(request: Request) -> Response:
        """Accounts of the customer whose login session (token or cookie) comes along."""
        customer = int(request.query_params.get("customer", "0"))
        user = next((u for u, c in CUSTOMERS.items() if c == customer), None)
        auth = request.headers.get("authorization", "")
        cookie = request.cookies.get("PHPSESSID") or request.cookies.get("WHMCSsession")
        if user is None or (auth != f"Bearer tok-{customer}" and cookie != f"sess-{customer}"):
            return JSONResponse({"error": "unauthorized"}, 401)
        return await answer(user)

    async def primary(request: Request) -> Response:
        user = user_from_raw_path(request, 3)
        return JSONResponse({"data": {"account": accounts_of(user)[0]}})

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], int(request.query_params["code"]))

    async def answer(user: str) -> Response:
        if user == "crash":
            return Response("Internal Server Error", 500)
        if user == "sleepy":
            await asyncio.sleep(3)
        if user == "drip":
            async def trickle() -> AsyncIterator[bytes]:
                yield b'{"data": {"accounts": ['
                for _ in range(40):
                    await asyncio.sleep(0.1)
                    yield b" "
                yield b"]}}"
            return StreamingResponse(trickle(), media_type="application/json")
        if user == "garbage":
            return Response('{"data": {"accounts": [{"sip": ', 200,
                            media_type="application/json")
        if user == "ghost":
            return JSONResponse({"error": "no such customer"}, 404)
        if user == "refused":  # the API does not accept this customer's request
            return JSONResponse({"error": "invalid customer"}, 400)
        if user == "huge":
            return JSONResponse({"data": {"accounts": accounts_of("bob"),
                                          "padding": "x" * 200_000}})
        if user == "huge-chunked":
            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"data": {"padding": "'
                for _ in range(50):
                    yield b"x" * 10_000
                yield b'"}}'
            return StreamingResponse(chunks(), media_type="application/json")
        if user == "xml":
            items = "".join(
                f"<account><sip><username>{a['sip']['username']}</username>"
                f"<password>{a['sip']['password']}</password></sip>"
                f"<domain>{a['domain']}</domain></account>" for a in accounts_of("alice"))
            return Response(f"<?xml version='1.0'?><accounts>{items}</accounts>",
                            media_type="application/xml")
        if user == "xml-empty":
            return Response("<accounts/>", media_type="text/xml")
        if user == "doctype":
            return Response('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM '
                            '"file:///etc/passwd">]><accounts><account><domain>&e;</domain>'
                            '</account></accounts>', media_type="application/xml")
        return JSONResponse({"data": {"accounts": accounts_of(user)}})

    app = Starlette(routes=[
        Route("/api/login", json_login, methods=["POST"]),
        Route("/form/login", form_login, methods=["POST"]),
        Route("/xml/login", xml_login, methods=["POST"]),
        Route("/basic/login", basic_login, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/api/users/{user:path}/accounts", accounts, methods=["GET", "POST"]),
        Route("/api/users/{user:path}/primary", primary),
        Route("/protected/users/{user:path}/accounts", protected),
        Route("/session/accounts", session_accounts, methods=["GET", "POST"]),
        Route("/redirect", redirect, methods=["GET", "POST"]),
    ])
    return Recorder(app, state)


class Server:
    """A uvicorn server in a daemon thread, on 127.0.0.1."""

    def __init__(self, app: Any, port: int | None = None, **ssl_options: Any) -> None:
        self.app = app
        self.port = port or free_port()
        self.ssl_options = ssl_options
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_options else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> Server:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical",
                                lifespan="off", access_log=False, timeout_graceful_shutdown=1,
                                **self.ssl_options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"test upstream on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RawServer:
    """A TCP server on 127.0.0.1 that misbehaves below HTTP.

    `behave(head)` gets each request's head (up to the blank line) and returns
    the bytes to send before closing the connection (b"": close at once), or
    None to never answer (the connection is held until stop()). `heads` keeps
    every request head received.
    """

    def __init__(self, behave: Callable[[bytes], bytes | None]) -> None:
        self.behave = behave
        self.heads: list[bytes] = []
        self._listener: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        assert self._listener is not None
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> RawServer:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                head += chunk
        self.heads.append(head.partition(b"\r\n\r\n")[0])
        reply = self.behave(head)
        if reply is None:
            self._held.append(conn)
            return
        with contextlib.suppress(OSError):
            conn.sendall(reply)
        conn.close()

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


MISBEHAVIOUR = {
    "malformed": b"garbage instead of HTTP\r\n\r\n",               # a bad status line
    "bad-header": b"HTTP/1.1 200 OK\r\nX-Broken: \x00\r\n\r\n",     # an invalid header
    "closer": b"",                                                     # closes, no answer
    "truncated": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{",  # body cut short
}


def misbehave(head: bytes) -> bytes | None:
    """What RawServer answers, chosen by the request's `user=` query parameter (None: never)."""
    target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
    user = parse_qs(target.partition(b"?")[2].decode("latin-1")).get("user", [""])[0]
    return MISBEHAVIOUR.get(user)


def leaks(text: str, secret: str) -> list[str]:
    """Each form of `secret` found in `text`: as typed, percent-/plus-/JSON-/repr-encoded in
    UTF-8 or Latin-1, and any run of 6+ letters or digits of it (which every encoding keeps)."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret.encode())[2:-1]}
    for encoding in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):
            for form in (quote(secret, safe="", encoding=encoding),
                         quote_plus(secret, safe="", encoding=encoding)):
                forms |= {form, form.lower()}
    forms |= {run for run in re.findall(r"[A-Za-z0-9]+", secret) if len(run) >= 6}
    return sorted(form for form in forms if form in text)


@dataclass
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verification must fail with it

    @classmethod
    def create(cls, folder: Path) -> TLSFiles:
        ca, other = trustme.CA(), trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("gateway.example.org")
        files = cls(*(folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                           "client.key", "other-ca.pem")))
        ca.cert_pem.write_to_path(str(files.ca))
        other.cert_pem.write_to_path(str(files.other_ca))
        server.private_key_pem.write_to_path(str(files.server_key))
        files.server_cert.write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
        client.private_key_pem.write_to_path(str(files.client_key))
        files.client_cert.write_bytes(b"".join(b.bytes() for b in client.cert_chain_pems))
        return files

    def server_options(self, require_client_cert: bool) -> dict[str, Any]:
        return dict(ssl_certfile=str(self.server_cert), ssl_keyfile=str(self.server_key),
                    ssl_ca_certs=str(self.ca),
                    ssl_cert_reqs=ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE)


def section(toml_text: str, path: str, base_dir: Path | None = None) -> Section:
    return Section(tomllib.loads(toml_text), path, [], base_dir)


def make_authenticator(toml_text: str, base_dir: Path | None = None) -> Authenticator:
    cfg = section(toml_text, "auth", base_dir)
    backend = build_authenticator(cfg)
    assert not cfg.problems, cfg.problems
    assert backend is not None
    return backend


def make_source(toml_text: str, base_dir: Path | None = None) -> AccountSource:
    cfg = section(toml_text, "source", base_dir)
    backend = build_source(cfg)
    assert not cfg.problems, cfg.problems
    assert backend is not None
    return backend


def problems(toml_text: str, kind: str = "auth", base_dir: Path | None = None) -> list[str]:
    cfg = section(toml_text, kind, base_dir)
    (build_authenticator if kind == "auth" else build_source)(cfg)
    return cfg.problems


@contextlib.asynccontextmanager
async def started(backend: Backend) -> AsyncIterator[Any]:
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def dumps(value: Any) -> str:
    """A TOML inline value (strings via JSON, which TOML basic strings accept)."""
    return json.dumps(value)


# -- fixtures shared by the website/HTTP test modules (registered in tests/conftest.py) -----


@pytest.fixture(scope="module")
def portal():
    state = PortalState()
    with Server(portal_app(state)) as server:
        state.base_url = server.url
        yield state


@pytest.fixture(scope="module")
def raw_server():
    with RawServer(misbehave) as server:
        yield server


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return TLSFiles.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_portal(tls):
    with Server(portal_app(PortalState()), **tls.server_options(require_client_cert=False)) as s:
        yield s
