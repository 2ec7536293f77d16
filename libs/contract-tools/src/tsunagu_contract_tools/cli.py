"""`tsunagu-contracts generate|check`: regenerate the artifacts, or gate breaking schema changes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tsunagu_contract_tools.artifacts import write
from tsunagu_contract_tools.compat import breaking_changes_against


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["generate", "check"])
    parser.add_argument("--contracts", type=Path, default=Path("contracts"))
    parser.add_argument("--base", default="HEAD", help="git revision to compare schemas with (check)")
    args = parser.parse_args()
    if args.command == "generate":
        changed = write(args.contracts)
        print("\n".join(changed) if changed else "contracts: generated files are up to date")
    else:
        problems = breaking_changes_against(args.base, args.contracts)
        for problem in problems:
            print(problem, file=sys.stderr)
        sys.exit(1 if problems else 0)
