"""One service's login role cannot open another service's database."""

import json
import os
from pathlib import Path

import asyncpg
import pytest

from tsunagu_teststack.infrastructure import repo_root, stack_config


async def test_a_scratch_role_cannot_connect_to_another_scratch_database(scratch_databases):
    first = await scratch_databases.create("first")
    second = await scratch_databases.create("second")
    second_database = second.rsplit("/", 1)[1]
    trespass = first.rsplit("/", 1)[0] + "/" + second_database

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(trespass)


async def test_the_provisioned_service_roles_reach_only_their_own_database(infrastructure):
    if infrastructure.backend != "native":
        pytest.skip("the service roles are provisioned by deploy/pgctl.py on the native stack")
    cfg = stack_config()
    var = Path(os.environ.get("TSUNAGU_VAR_DIR", repo_root() / "var"))  # where the native stack keeps them
    passwords = json.loads((var / "secrets.json").read_text())["postgres"]
    pg = cfg["postgres"]
    intake = cfg["services"]["intake"]["database"]
    referral = cfg["services"]["referral"]["database"]

    def url(role: str, database: str) -> str:
        return f"postgresql://{role}:{passwords[role]}@{pg['host']}:{pg['port']}/{database}"

    own = await asyncpg.connect(url(intake, intake))
    await own.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(url(intake, referral))
