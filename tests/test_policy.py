from __future__ import annotations

import pytest

from bridge.errors import NotPermitted
from bridge.models import Credentials
from bridge.passwords import hash_password
from bridge.provision import Provisioner
from bridge.settings import from_dict


def settings(tmp_path, required: list[str]):
    (tmp_path / "users.toml").write_text(
        f'[users.alice]\npassword = "{hash_password("pw-a", 10)}"\ngroups = ["staff"]\n'
        f'[users.hatter]\npassword = "{hash_password("pw-h", 10)}"\n')
    return from_dict({
        "auth": {"type": "file", "path": "users.toml"},
        "source": {"type": "static", "accounts": [{"domain": "sip.example.com"}]},
        "policy": {"required_groups": required},
        "mapping": {"account": {"username": "{login.username}", "password": "{login.password}",
                                "SIP_domain": "{account.domain}"}},
    }, base_dir=tmp_path)


async def test_required_groups(tmp_path):
    p = Provisioner.from_settings(settings(tmp_path, ["staff", "admins"]))
    async with p.running():
        assert b"<username>alice</username>" in await p.provision(Credentials("alice", "pw-a"))
        with pytest.raises(NotPermitted):
            await p.provision(Credentials("hatter", "pw-h"))


async def test_no_required_groups_means_no_check(tmp_path):
    p = Provisioner.from_settings(settings(tmp_path, []))
    async with p.running():
        assert b"<username>hatter</username>" in await p.provision(Credentials("hatter", "pw-h"))
