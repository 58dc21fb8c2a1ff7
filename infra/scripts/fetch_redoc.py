#!/usr/bin/env python3
"""Fetches Redoc's standalone bundle (the `/docs` page of `make dev`) from the npm registry.

Usage: fetch_redoc.py <version> <sha512 integrity> <output file>. The tarball is checked
against the integrity the registry published for that release before anything is written.
"""

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path


def main() -> int:
    version, integrity, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    url = f"https://registry.npmjs.org/redoc/-/redoc-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        tarball = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != integrity:
        print(f"{url}: integrity {digest}, expected {integrity}", file=sys.stderr)
        return 1
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        member = archive.extractfile("package/bundles/redoc.standalone.js")
        if member is None:
            print(f"{url}: no bundles/redoc.standalone.js", file=sys.stderr)
            return 1
        bundle = member.read()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    partial.write_bytes(bundle)
    partial.rename(out)
    print(f"Redoc {version}: {out} ({len(bundle)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
