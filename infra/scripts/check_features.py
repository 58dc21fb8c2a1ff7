#!/usr/bin/env python3
"""One build serves `make dev` and `make test`.

Cargo resolves features per selection of packages: when `cargo test --workspace` turns on a
feature of a crate (through a test-only dependency such as reqwest) that `cargo build -p
lumi-infra` does not, every crate above it (the AWS SDK, axum, the functions) is compiled a
second time, a few minutes on a fresh clone. This compares the features each crate gets in
the two selections and fails naming the differences, so that a new dependency cannot bring
the second build back unnoticed. The fix is to turn the feature on in `[workspace.dependencies]`.
"""

import subprocess
import sys


def features(*selection: str) -> dict[str, str]:
    out = subprocess.run(
        ["cargo", "tree", *selection, "--prefix", "none", "-f", "{p}|{f}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        line = line.removesuffix(" (*)")
        if "|" not in line:
            continue
        package, feats = line.split("|", 1)
        found.setdefault(package.strip(), set()).add(feats.strip())
    return {p: " / ".join(sorted(f)) for p, f in found.items()}


def main() -> int:
    dev = features("-p", "lumi-infra", "-e", "normal,build")
    test = features("--workspace", "-e", "normal,build,dev")
    differing = [
        f"  {package}\n    make dev:  [{dev[package]}]\n    make test: [{test[package]}]"
        for package in sorted(dev.keys() & test.keys())
        if dev[package] != test[package]
    ]
    if differing:
        print(
            "these crates get other features under `cargo test --workspace` than under "
            "`cargo build -p lumi-infra`, so `make dev` after `make test` compiles them again; "
            "turn the features on in [workspace.dependencies]:\n" + "\n".join(differing),
            file=sys.stderr,
        )
        return 1
    print(f"one build serves make dev and make test ({len(dev)} crates, same features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
