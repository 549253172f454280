#!/usr/bin/env python3
"""Checks deploy/compose.yaml (`make compose-check`, in `make test`; no Docker daemon needed).

First the file must validate against the Compose specification's schema (check-jsonschema's
vendored copy, `--builtin-schema vendor.compose-spec`). Then its wiring must agree with the
files it runs, so that a rename on either side is caught:
- the nodes are the deploy/config/*.toml stems and the nodes init.sh certifies; each node
  service `coffer-<node>` answers at the alias `coffer-<node>.internal`, mounts its config at
  /etc/coffer/coffer.toml, its certificate folder (state subpath pki/<node>) where its [tls]
  paths point, the keyrings (subpath keyring) at kms.local_keyring_dir, a volume at data_dir
  and at backup.dir, and (the bootstrap node) the root token hash folder (subpath root) where
  root_token_sha256_file points;
- the agent mounts deploy/compose/agent.toml, its token folder (subpath agent) and the CA
  alone (subpath pki/ca) where the config points, and a volume where it renders files;
- every bind mount's source exists, every `bash /deploy/compose/X.sh` entry point has its
  script and the folder mounted; only init and setup run as root; nodes are health-checked
  with `coffer cluster health`.

`--self-test` first breaks the real file in each of those ways and requires the break to be
caught. tests/compose.rs runs the scripts and configs themselves as processes.
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ROOT_SERVICES = {"init", "setup"}


def schema_problems(text, checker):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        r = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", f.name],
                           capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        return [f"does not match the Compose schema: {(r.stdout + r.stderr).strip()}"]
    return []


def mounts(service):
    """(kind, source, target, subpath) of each volume entry."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            src, target = parts[0], parts[1]
            kind = "bind" if src.startswith((".", "/")) else "volume"
            out.append((kind, src, target, None))
        else:
            out.append((v.get("type", "volume"), v.get("source"), v["target"],
                        (v.get("volume") or {}).get("subpath")))
    return out


def mounted(service, path, kind=None, source=None, subpath=None):
    """The mount whose target holds `path` (the deepest), if it matches what is asked."""
    best = None
    for m in mounts(service):
        t = m[2].rstrip("/")
        if path == t or path.startswith(t + "/"):
            if best is None or len(t) > len(best[2]):
                best = m
    if best is None:
        return False
    return ((kind is None or best[0] == kind) and (source is None or best[1] == source)
            and (subpath is None or best[3] == subpath))


def init_nodes():
    text = (DEPLOY / "compose/init.sh").read_text()
    m = re.search(r"^nodes=\(([^)]*)\)", text, re.M)
    return set(m.group(1).split()) if m else set()


def wiring_problems(doc):
    problems = []
    services = doc.get("services") or {}
    stems = {p.stem for p in (DEPLOY / "config").glob("*.toml")}
    if init_nodes() != stems:
        problems.append(f"init.sh certifies {sorted(init_nodes())} but deploy/config has {sorted(stems)}")
    node_services = {n: s for n, s in services.items() if mounted(s, "/etc/coffer/coffer.toml")}
    if {n.removeprefix("coffer-") for n in node_services} != stems or any(
            not n.startswith("coffer-") for n in node_services):
        problems.append(f"node services {sorted(node_services)} are not coffer-<node> for {sorted(stems)}")
    for name, s in services.items():
        for kind, src, target, _ in mounts(s):
            if kind == "bind" and not (DEPLOY / src).exists():
                problems.append(f"{name}: bind mount source {src} does not exist")
        entry = s.get("entrypoint") or []
        for arg in entry:
            m = re.fullmatch(r"/deploy/compose/([\w.-]+\.sh)", str(arg))
            if m:
                if not (DEPLOY / "compose" / m.group(1)).exists():
                    problems.append(f"{name}: entry point script {m.group(1)} is not in deploy/compose/")
                if not mounted(s, arg, kind="bind", source="./compose"):
                    problems.append(f"{name}: runs {arg} but does not mount ./compose at /deploy/compose")
        user = str(s.get("user", "")).split(":")[0]
        if user in ("0", "root") and name not in ROOT_SERVICES:
            problems.append(f"{name}: runs as root (only {sorted(ROOT_SERVICES)} may)")
    for name, s in node_services.items():
        node = name.removeprefix("coffer-")
        if not (DEPLOY / "config" / f"{node}.toml").exists():
            continue
        cfg = tomllib.loads((DEPLOY / "config" / f"{node}.toml").read_text())
        if not mounted(s, "/etc/coffer/coffer.toml", kind="bind", source=f"./config/{node}.toml"):
            problems.append(f"{name}: /etc/coffer/coffer.toml is not ./config/{node}.toml")
        aliases = ((s.get("networks") or {}).get("coffer") or {}).get("aliases") or []
        if f"coffer-{node}.internal" not in aliases:
            problems.append(f"{name}: no network alias coffer-{node}.internal (its peers dial it)")
        for field, path in (cfg.get("tls") or {}).items():
            if not mounted(s, path, source="state", subpath=f"pki/{node}"):
                problems.append(f"{name}: tls.{field} {path} is not in the state volume's pki/{node}")
        ring = (cfg.get("kms") or {}).get("local_keyring_dir", "")
        if not mounted(s, ring, source="state", subpath="keyring"):
            problems.append(f"{name}: kms.local_keyring_dir {ring} is not the state volume's keyring")
        for what, path in (("node.data_dir", cfg["node"]["data_dir"]), ("backup.dir", (cfg.get("backup") or {}).get("dir"))):
            if path and not mounted(s, path, kind="volume"):
                problems.append(f"{name}: {what} {path} is not on a volume")
        hash_file = (cfg.get("cluster") or {}).get("root_token_sha256_file")
        if hash_file and not mounted(s, hash_file, source="state", subpath="root"):
            problems.append(f"{name}: cluster.root_token_sha256_file {hash_file} is not in the state volume's root")
        test = " ".join(str(x) for x in ((s.get("healthcheck") or {}).get("test") or []))
        if "coffer cluster health" not in test:
            problems.append(f"{name}: not health-checked with `coffer cluster health`")
    agent = services.get("agent")
    if agent is None:
        problems.append("no agent service")
    else:
        if not mounted(agent, "/etc/coffer/agent.toml", kind="bind", source="./compose/agent.toml"):
            problems.append("agent: /etc/coffer/agent.toml is not ./compose/agent.toml")
        acfg = tomllib.loads((DEPLOY / "compose/agent.toml").read_text())
        if not mounted(agent, acfg.get("token_file", ""), source="state", subpath="agent"):
            problems.append(f"agent: token_file {acfg.get('token_file')} is not in the state volume's agent")
        if not mounted(agent, acfg.get("ca_file", ""), source="state", subpath="pki/ca"):
            problems.append(f"agent: ca_file {acfg.get('ca_file')} is not the state volume's pki/ca (the CA alone)")
        for f in acfg.get("file", []):
            if not mounted(agent, f["path"], kind="volume"):
                problems.append(f"agent: {f['path']} is not on a volume an application can mount")
    return problems


def check(text, checker):
    problems = schema_problems(text, checker)
    if problems:
        return problems
    return wiring_problems(yaml.safe_load(text))


def self_test(text, checker):
    breaks = {
        "a key the schema does not know": text.replace("    restart: unless-stopped\n    command:", "    restart: unless-stopped\n    restarts: 3\n    command:"),
        "a node mounting another node's certificates": text.replace("subpath: pki/us-east-1}", "subpath: pki/eu-west-1}"),
        "a node without its peers' alias": text.replace("aliases: [coffer-eu-west-1.internal]", "aliases: [eu-west-1]"),
        "a node given another node's config": text.replace("./config/ap-south-1.toml:", "./config/eu-west-1.toml:"),
        "a bind mount of a missing file": text.replace("./compose/agent.toml:", "./compose/agent-missing.toml:"),
        "the bootstrap node without the root hash": re.sub(r"      - \{type: volume, source: state, target: /etc/coffer/root[^\n]*\n", "", text),
        "data on the container's own layer": text.replace("      - eu-west-1-data:/var/lib/coffer\n", ""),
        "the agent reading the CA folder with its key": text.replace("volume: {subpath: pki/ca}}", "volume: {subpath: pki}}"),
        "the agent's token not where its config reads it": text.replace("target: /run/coffer/agent,", "target: /run/agent,"),
        "the agent as root": text.replace("    command: [\"agent\"", "    user: root\n    command: [\"agent\""),
        "no health check on the nodes": text.replace("\"coffer\", \"cluster\", \"health\",", "\"coffer\", \"cluster\", \"status\","),
        "a script entry point without the scripts": text.replace("      - ./compose:/deploy/compose:ro\n      - state:/state\n\n  coffer-us-east-1", "      - state:/state\n\n  coffer-us-east-1"),
    }
    for what, broken in breaks.items():
        if broken == text:
            raise SystemExit(f"self-test: the break '{what}' did not change compose.yaml; update the self-test")
        if not check(broken, checker):
            raise SystemExit(f"self-test: the checker missed {what}")
        print(f"self-test: caught {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--check-jsonschema", default="check-jsonschema")
    a = ap.parse_args()
    text = COMPOSE.read_text()
    if a.self_test:
        self_test(text, a.check_jsonschema)
        return
    problems = check(text, a.check_jsonschema)
    if problems:
        for p in problems:
            print(f"error: deploy/compose.yaml: {p}", file=sys.stderr)
        sys.exit(1)
    print("deploy/compose.yaml: matches the Compose schema; nodes, agent and scripts wired to their files")


if __name__ == "__main__":
    main()
