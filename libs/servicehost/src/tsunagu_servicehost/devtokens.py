"""`python -m tsunagu_servicehost.devtokens FILE`: one development token per role, for `make run`.

Signed with TSUNAGU_AUTH_SECRET; written with mode 0600; valid for 12 hours.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tsunagu_servicehost.auth import Role, issue_token


def main() -> None:
    target = Path(sys.argv[1])
    secret = os.environ.get("TSUNAGU_AUTH_SECRET", "")
    if len(secret) < 32:
        sys.exit("[tsunagu] error: TSUNAGU_AUTH_SECRET is not set")
    tokens = {role.value: issue_token(secret, f"dev-{role.value}", role) for role in Role if role not in (Role.PARTNER, Role.SERVICE)}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        json.dump(tokens, f, indent=2)
    print(f"[tsunagu] development tokens for {', '.join(tokens)} written to {target}")


if __name__ == "__main__":
    main()
