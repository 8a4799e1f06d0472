#!/usr/bin/env python3
"""CycloneDX 1.5 SBOM (JSON) of the Rust crates compiled into one httpscale binary.

    python3 scripts/sbom.py interceptor [--target x86_64-unknown-linux-gnu] > interceptor.cdx.json

The crate graph comes from `cargo metadata --locked` (versions pinned by Cargo.lock, dependency kinds,
platform-specific dependencies dropped for --target), the SHA-256 of each crate from Cargo.lock. It lists what
the binary's package needs to build and run: normal and build dependencies, not dev-dependencies, and not the
crates other workspace members alone use. Standard library only, so it runs in any build stage with Python 3.11+.
The output is deterministic: the timestamp is SOURCE_DATE_EPOCH (else now) and the serial number is derived
from the content.
"""
import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tomllib
import uuid


def cargo(*args):
    return subprocess.run(["cargo", *args], check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("binary", help="a [[bin]] name of the workspace: interceptor, scaler or operator")
    ap.add_argument("--target", help="Rust target triple (default: the host's)")
    a = ap.parse_args()
    target = a.target or next(
        line.split(": ", 1)[1] for line in subprocess.run(
            ["rustc", "-vV"], check=True, capture_output=True, text=True).stdout.splitlines()
        if line.startswith("host: "))
    meta = json.loads(cargo("metadata", "--format-version", "1", "--locked", "--filter-platform", target))
    packages = {p["id"]: p for p in meta["packages"]}
    root = next((p for p in packages.values() if p["id"] in meta["workspace_members"]
                 and any(t["name"] == a.binary and "bin" in t["kind"] for t in p["targets"])), None)
    if root is None:
        sys.exit(f"sbom.py: no workspace binary named {a.binary!r}")
    with open(os.path.join(meta["workspace_root"], "Cargo.lock"), "rb") as f:
        checksums = {(p["name"], p["version"]): p.get("checksum") for p in tomllib.load(f)["package"]}

    # Walk from the binary's package along normal and build edges (a dev-only edge has only "dev" kinds).
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    edges, todo = {}, [root["id"]]
    while todo:
        pid = todo.pop()
        if pid in edges:
            continue
        edges[pid] = sorted({d["pkg"] for d in nodes[pid]["deps"]
                             if any(k["kind"] != "dev" for k in d["dep_kinds"])})
        todo.extend(edges[pid])

    def ref(p):
        return f"pkg:cargo/{p['name']}@{p['version']}" if p["source"] else f"{p['name']}@{p['version']}"

    def component(p, kind):
        c = {"type": kind, "bom-ref": ref(p), "name": p["name"], "version": p["version"]}
        if p.get("description"):
            c["description"] = " ".join(p["description"].split())
        if p.get("license"):
            c["licenses"] = [{"expression": p["license"]}]
        if p["source"]:  # from crates.io (workspace crates have no source and are not published)
            c["purl"] = ref(p)
            if checksums.get((p["name"], p["version"])):
                c["hashes"] = [{"alg": "SHA-256", "content": checksums[(p["name"], p["version"])]}]
        if p.get("repository"):
            c["externalReferences"] = [{"type": "vcs", "url": p["repository"]}]
        return c

    deps = sorted((packages[pid] for pid in edges if pid != root["id"]), key=lambda p: (p["name"], p["version"]))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or datetime.datetime.now().timestamp())
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "httpscale scripts/sbom.py"}]},
            "component": component(root, "application") | {"name": a.binary},
            "properties": [{"name": "cargo:target", "value": target}],
        },
        "components": [component(p, "library") for p in deps],
        "dependencies": [{"ref": ref(packages[pid]), "dependsOn": [ref(packages[d]) for d in edges[pid]]}
                         for pid in sorted(edges, key=lambda i: ref(packages[i]))],
    }
    body = json.dumps(bom, sort_keys=True).encode()
    bom["serialNumber"] = uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=5).urn
    json.dump(bom, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
