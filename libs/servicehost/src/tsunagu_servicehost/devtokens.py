"""The development issuer of staff tokens, for `make run` (deploy/stack.py).

    python -m tsunagu_servicehost.devtokens issue TOKENS_FILE JWKS_FILE
        writes the development issuer's JWKS (its public key) and one token per staff role, signed
        with its private key (TSUNAGU_DEV_STAFF_KEY), for TSUNAGU_STAFF_ISSUER and
        TSUNAGU_STAFF_AUDIENCE (kid: TSUNAGU_DEV_STAFF_KID); tokens with mode 0600, valid 12 hours.
    python -m tsunagu_servicehost.devtokens public-keys
        reads a JSON object of name → Ed25519 private key on stdin, prints name → public key.

Keys come in the environment or on stdin, never on the command line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tsunagu_servicehost.auth import STAFF_ROLES, Role, jwks_of, public_half, staff_token


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), mode)  # before the tokens are in it: an existing file keeps its old mode
        f.write(text)


def issue(tokens_file: Path, jwks_file: Path) -> None:
    key = os.environ.get("TSUNAGU_DEV_STAFF_KEY", "")
    issuer, audience = os.environ.get("TSUNAGU_STAFF_ISSUER", ""), os.environ.get("TSUNAGU_STAFF_AUDIENCE", "")
    kid = os.environ.get("TSUNAGU_DEV_STAFF_KID", "tsunagu-dev-1")
    if not (key and issuer and audience):
        sys.exit("[tsunagu] error: TSUNAGU_DEV_STAFF_KEY, TSUNAGU_STAFF_ISSUER and TSUNAGU_STAFF_AUDIENCE are needed")
    _write(jwks_file, json.dumps(jwks_of(key, kid), indent=2), 0o644)  # public keys only
    order = [Role.COUNTER, Role.COORDINATOR, Role.COUNCIL, Role.OPS]
    tokens = {role.value: staff_token(key, kid=kid, issuer=issuer, audience=audience, subject=f"dev-{role.value}",
                                      role=role) for role in order if role in STAFF_ROLES}
    _write(tokens_file, json.dumps(tokens, indent=2), 0o600)
    print(f"[tsunagu] development tokens for {', '.join(tokens)} written to {tokens_file}")


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "issue" and len(sys.argv) == 4:
        issue(Path(sys.argv[2]), Path(sys.argv[3]))
    elif command == "public-keys":
        json.dump({name: public_half(key) for name, key in json.load(sys.stdin).items()}, sys.stdout)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
