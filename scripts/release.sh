#!/usr/bin/env bash
# Release artifacts of the sidecar: the same steps locally and in .github/workflows/release.yml.
#
#   scripts/release.sh local [DIST]                  x86_64 Linux: release build (fat LTO, ~10 min on
#                                                    2 cores), package, SBOM, SHA256SUMS, check (DIST: dist/)
#   scripts/release.sh package TARGET VERSION DIST   agent-vVERSION-TARGET.tar.gz (target/release/agent,
#                                                    the example config, README) and its .sha256
#   scripts/release.sh sbom TARGET VERSION DIST      agent-vVERSION-TARGET.cdx.json: CycloneDX 1.5 SBOM of
#                                                    the agent binary for TARGET (cargo-cyclonedx)
#   scripts/release.sh sums DIST                     SHA256SUMS over every archive and SBOM in DIST
#   scripts/release.sh check DIST                    every .sha256 and SHA256SUMS verify; every SBOM parses,
#                                                    describes the agent at the workspace version and
#                                                    lists each of its direct dependencies at the locked version
#   scripts/release.sh sbom-check                    SBOM of x86_64 into a temp dir + check: no build, seconds
#                                                    (what scripts/test.sh runs)
#
# cargo-cyclonedx is installed by scripts/services.sh install (pinned below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CYCLONEDX_VERSION=0.5.9
NATIVE_TARGET=x86_64-unknown-linux-gnu

die() { printf 'release: %s\n' "$*" >&2; exit 1; }

workspace_version() {
  python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])'
}

package() { # TARGET VERSION DIST
  local target=$1 version=$2 dist=$3 name
  name="agent-v${version}-${target}"
  [ -x target/release/agent ] || die "target/release/agent missing: build it first"
  rm -rf "${dist:?}/$name"
  mkdir -p "$dist/$name"
  cp target/release/agent agent/agent.example.toml README.md "$dist/$name/"
  # Reproducible archive: fixed owner, order and mtime (the commit's).
  tar -C "$dist" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$(git log -1 --format=%ct 2>/dev/null || echo 0)" -czf "$dist/$name.tar.gz" "$name"
  rm -rf "${dist:?}/$name"
  (cd "$dist" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
  cat "$dist/$name.tar.gz.sha256"
}

sbom() { # TARGET VERSION DIST
  local target=$1 version=$2 dist=$3 name
  name="agent-v${version}-${target}"
  command -v cargo-cyclonedx >/dev/null || die "cargo-cyclonedx missing: scripts/services.sh install"
  mkdir -p "$dist"
  # Normal and build dependencies of the agent crate as resolved for TARGET from Cargo.lock
  # (no dev-dependencies); the timestamp is the commit's, for reproducible output.
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0) \
    cargo cyclonedx --manifest-path agent/Cargo.toml --format json --spec-version 1.5 \
    --target "$target" --override-filename agent-sbom-tmp -q
  local produced
  produced=$(find agent -maxdepth 1 -name 'agent-sbom-tmp*.json' | head -1)
  [ -n "$produced" ] || die "cargo cyclonedx wrote no SBOM"
  mv "$produced" "$dist/$name.cdx.json"
  rm -f ./*/agent-sbom-tmp*.json # cargo-cyclonedx writes one per workspace member
  echo "$dist/$name.cdx.json"
}

sums() { # DIST
  (cd "$1" && sha256sum -- *.tar.gz *.cdx.json 2>/dev/null >SHA256SUMS || true)
  [ -s "$1/SHA256SUMS" ] || die "nothing to sum in $1"
  cat "$1/SHA256SUMS"
}

check() { # DIST
  local dist=$1
  shopt -s nullglob
  local sboms=("$dist"/*.cdx.json)
  [ ${#sboms[@]} -gt 0 ] || die "no SBOM in $dist"
  local sums=("$dist"/*.sha256)
  (cd "$dist" && for f in *.sha256; do sha256sum --quiet --check "$f"; done)
  if [ -f "$dist/SHA256SUMS" ]; then
    (cd "$dist" && sha256sum --quiet --check SHA256SUMS)
    sums+=("$dist/SHA256SUMS")
  fi
  local sbom target
  for sbom in "${sboms[@]}"; do
    target=$(basename "$sbom" .cdx.json); target=${target#agent-v*-}
    cargo metadata --format-version 1 --locked --filter-platform "$target" >"$dist/.metadata.json"
    python3 - "$sbom" "$dist/.metadata.json" "$(workspace_version)" <<'PY'
import json, sys

sbom_path, metadata_path, version = sys.argv[1:]
with open(sbom_path) as f:
    bom = json.load(f)  # parses
with open(metadata_path) as f:
    metadata = json.load(f)
problems = []
if bom.get("bomFormat") != "CycloneDX" or not str(bom.get("specVersion", "")).startswith("1."):
    problems.append(f"not a CycloneDX 1.x document: {bom.get('bomFormat')} {bom.get('specVersion')}")
root = bom.get("metadata", {}).get("component", {})
if (root.get("name"), root.get("version")) != ("agent", version):
    problems.append(f"describes {root.get('name')} {root.get('version')}, not agent {version}")

# The agent's direct normal dependencies, as resolved for this target by the lock file.
packages = {p["id"]: p for p in metadata["packages"]}
agent_id = next(p["id"] for p in metadata["packages"] if p["name"] == "agent" and p["source"] is None)
node = next(n for n in metadata["resolve"]["nodes"] if n["id"] == agent_id)
direct = {
    (packages[d["pkg"]]["name"], packages[d["pkg"]]["version"])
    for d in node["deps"]
    if any(k["kind"] is None for k in d["dep_kinds"])
}
components = {(c.get("name"), c.get("version")): c for c in bom.get("components", [])}
for name, ver in sorted(direct - set(components)):
    problems.append(f"direct dependency {name} {ver} missing from the SBOM")
for name, ver in sorted(direct & set(components)):
    c = components[(name, ver)]
    if not c.get("purl", "").startswith(f"pkg:cargo/{name}@{ver}"):
        problems.append(f"{name} {ver}: purl {c.get('purl')!r}")
    if not any(h.get("alg") == "SHA-256" for h in c.get("hashes", [])):
        problems.append(f"{name} {ver}: no SHA-256 of the crate")
# The agent's own edges are exactly its normal dependencies (no dev-dependency such as
# proptest or tempfile). Deeper down the SBOM may over-list: cargo metadata's resolve counts
# optional crates named by weak features (`proptest?/std` of const-hex), never fewer.
by_ref = {c.get("bom-ref"): (c.get("name"), c.get("version")) for c in bom.get("components", [])}
root_ref = root.get("bom-ref")
edges = next((d.get("dependsOn", []) for d in bom.get("dependencies", []) if d.get("ref") == root_ref), None)
if edges is None:
    problems.append("no dependency entry for the agent")
else:
    listed = {by_ref.get(ref, (ref, "?")) for ref in edges}
    for name, ver in sorted(listed - direct):
        problems.append(f"the agent depends on {name} {ver} in the SBOM but not in Cargo.lock's normal graph")
    for name, ver in sorted(direct - listed):
        problems.append(f"the agent's edge to {name} {ver} is missing")
if problems:
    print(f"{sbom_path}:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"ok: {sbom_path}: CycloneDX {bom['specVersion']}, agent {version}, {len(components)} components, "
      f"all {len(direct)} direct dependencies with purl and SHA-256")
PY
    rm -f "$dist/.metadata.json"
  done
  [ ${#sums[@]} -eq 0 ] || echo "ok: ${#sums[@]} checksum files verify"
}

cmd=${1:-}; shift || true
case "$cmd" in
  package) [ $# -eq 3 ] || die "usage: $0 package TARGET VERSION DIST"; package "$@" ;;
  sbom) [ $# -eq 3 ] || die "usage: $0 sbom TARGET VERSION DIST"; sbom "$@" ;;
  sums) [ $# -eq 1 ] || die "usage: $0 sums DIST"; sums "$1" ;;
  check) [ $# -eq 1 ] || die "usage: $0 check DIST"; check "$1" ;;
  local)
    dist=${1:-dist}; version=$(workspace_version)
    rm -rf "${dist:?}"; mkdir -p "$dist"
    start=$SECONDS
    cargo build --release --locked -p agent
    echo "release build: $((SECONDS - start)) s"
    file target/release/agent 2>/dev/null || true
    package "$NATIVE_TARGET" "$version" "$dist"
    sbom "$NATIVE_TARGET" "$version" "$dist"
    sums "$dist"
    check "$dist"
    ls -l "$dist"
    ;;
  sbom-check)
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
    sbom "$NATIVE_TARGET" "$(workspace_version)" "$work" >/dev/null
    check "$work"
    ;;
  *) die "usage: $0 local [DIST] | package TARGET VERSION DIST | sbom TARGET VERSION DIST | sums DIST | check DIST | sbom-check" ;;
esac
