"""`python -m tsunagu_servicehost.devtokens FILE`: one development token per role, for `make run`.

Signed with TSUNAGU_AUTH_SECRET; written with mode 0600; valid for 12 hours.
`python -m tsunagu_servicehost.devtokens --ops` prints a short-lived ops token (for /readyz's reasons).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tsunagu_servicehost.auth import Role, issue_token


OPS_TOKEN_TTL_S = 300


def ops_token(secret: str) -> str:
    """A token of the ops role for the operators' own tools (`make status`, `make run`'s readiness wait),
    so /readyz tells them why a service is not ready. The one place those tools obtain a token."""
    return issue_token(secret, "ops-tools", Role.OPS, ttl_seconds=OPS_TOKEN_TTL_S)


def main() -> None:
    secret = os.environ.get("TSUNAGU_AUTH_SECRET", "")
    if len(secret) < 32:
        sys.exit("[tsunagu] error: TSUNAGU_AUTH_SECRET is not set")
    if sys.argv[1:] == ["--ops"]:
        print(ops_token(secret))
        return
    target = Path(sys.argv[1])
    tokens = {role.value: issue_token(secret, f"dev-{role.value}", role) for role in Role if role not in (Role.PARTNER, Role.SERVICE)}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        json.dump(tokens, f, indent=2)
    print(f"[tsunagu] development tokens for {', '.join(tokens)} written to {target}")


if __name__ == "__main__":
    main()
