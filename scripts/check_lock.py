"""Compares the running environment with requirements-lock.txt.

    python scripts/check_lock.py LOCK            exit 1 unless every locked distribution is installed at its version
    python scripts/check_lock.py --report LOCK   print the distributions whose version differs from the lock
"""

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from packaging.utils import canonicalize_name


def read_lock(path: str) -> dict[str, str]:
    """`{canonical name: version}` of the `name==version` lines of a lock file."""
    pins = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, separator, pinned = line.partition("==")
            if not separator or not name.strip() or not pinned.strip():
                raise SystemExit(f"{path}, line {number}: expected 'name==version', got {line!r}")
            pins[canonicalize_name(name.strip())] = pinned.strip()
    return pins


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lock")
    parser.add_argument("--report", action="store_true", help="list the differences instead of failing on them")
    args = parser.parse_args()
    pins = read_lock(args.lock)
    differences = [(name, pinned, installed(name)) for name, pinned in sorted(pins.items())
                   if installed(name) != pinned]
    if args.report:
        if differences:
            print("Versions that differ from the lock:")
            for name, pinned, found in differences:
                print(f"  {name}=={found or '(not installed)'}  (lock: {pinned})")
        else:
            print("Every distribution of the lock is installed at its locked version.")
        return 0
    for name, pinned, found in differences:
        print(f"{args.lock}: {name}=={pinned} is locked, but {found or 'nothing'} is installed", file=sys.stderr)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
