#!/usr/bin/env python3
"""deploy/k8s/ holds manifests Kubernetes and External Secrets Operator accept, wired as the
docs say.

- Core kinds validate strictly (unknown fields refused) against the Kubernetes schemas of the
  oldest and newest versions we support (kubernetes-validate); ESO kinds against the strict
  schemas in deploy/k8s/schemas/ (from ESO's CRDs by scripts/crd_schema.py). Any other kind is
  an error.
- Every volume a container mounts is declared by its pod.
- Every `coffer agent` container: its config (the ConfigMap key its `--config` names) passes
  `coffer agent --check`, and every file it renders is on a writable memory-backed emptyDir
  (never the node's disk), its token_file and ca_file on mounts.

`--self-test` first breaks the real manifests one way at a time (a misspelt field, a wrong ESO
field, a disk-backed emptyDir, a config the agent refuses, an undeclared volume, an unknown kind)
and checks that each is caught.

    python3 scripts/check_k8s.py --coffer BIN [--self-test]

Needs kubernetes-validate, jsonschema and PyYAML (the venv `make k8s` makes).
"""
import argparse
import copy
import glob
import json
import os
import subprocess
import sys
import tempfile
import tomllib

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "k8s")
VERSIONS = ("1.29", "1.37")
ESO_GROUP = "external-secrets.io/"


def load(dir=K8S):
    docs = []
    for path in sorted(glob.glob(os.path.join(dir, "*.yaml"))):
        with open(path) as f:
            docs += [(os.path.basename(path), d) for d in yaml.safe_load_all(f) if d is not None]
    return docs


def schema_problems(name, doc):
    where = f"{name}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    if not doc.get("metadata", {}).get("name"):
        return [f"{where}: no metadata.name"]
    api = doc.get("apiVersion", "")
    if api.startswith(ESO_GROUP):
        path = os.path.join(K8S, "schemas", f"{doc['kind'].lower()}-external-secrets-{api.split('/')[1]}.json")
        if not os.path.exists(path):
            return [f"{where}: no schema for {api} {doc['kind']}"]
        with open(path) as f:
            schema = json.load(f)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
        return [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    problems = []
    for v in VERSIONS:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where} (Kubernetes {v}): {'.'.join(map(str, e.absolute_path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: Kubernetes {v} has no {api} {doc.get('kind')}")
    return problems


def pod_specs(doc):
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "Pod":
        return [spec]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return [spec.get("template", {}).get("spec", {})]
    if kind == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    return []


def on_mount(container, volumes, path):
    """The mount (and its volume) `path` is under, deepest first."""
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best["mountPath"])):
            best = m
    return best, volumes.get(best["name"]) if best else None


def agent_problems(coffer, name, doc, config_maps):
    problems = []
    for spec in pod_specs(doc):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            where = f"{name}: {doc['kind']} {doc['metadata']['name']} container {c['name']}"
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"{where}: mounts {m['name']}, which the pod does not declare")
            args = c.get("args", [])
            if args[:1] != ["agent"]:
                continue
            if "--config" not in args or args.index("--config") + 1 >= len(args):
                problems.append(f"{where}: runs the agent without --config")
                continue
            config_path = args[args.index("--config") + 1]
            mount, volume = on_mount(c, volumes, config_path)
            cm = (volume or {}).get("configMap", {}).get("name")
            key = os.path.relpath(config_path, mount["mountPath"]) if mount else None
            text = config_maps.get(cm, {}).get(key)
            if text is None:
                problems.append(f"{where}: --config {config_path} is not a key of a ConfigMap in deploy/k8s")
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
                f.write(text)
                f.flush()
                r = subprocess.run([coffer, "agent", "--config", f.name, "--check"], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"{where}: coffer agent --check refuses ConfigMap {cm}: {r.stderr.strip()}")
                continue
            cfg = tomllib.loads(text)
            for field in ("token_file", "ca_file"):
                if field in cfg and on_mount(c, volumes, cfg[field])[0] is None:
                    problems.append(f"{where}: {field} {cfg[field]} is on no mount")
            for file in cfg.get("file", []):
                m, v = on_mount(c, volumes, file["path"])
                if m is None or v is None:
                    problems.append(f"{where}: renders {file['path']} on no mount")
                elif (v.get("emptyDir") or {}).get("medium") != "Memory" or m.get("readOnly"):
                    problems.append(f"{where}: renders {file['path']} onto {m['name']}, not a writable emptyDir in memory")
    return problems


def check(coffer, docs):
    problems = []
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for _, d in docs if d.get("kind") == "ConfigMap"}
    for name, doc in docs:
        problems += schema_problems(name, doc)
        problems += agent_problems(coffer, name, doc, config_maps)
    return problems


def first(docs, kind):
    return next(d for _, d in docs if d.get("kind") == kind)


def self_test(coffer):
    def deployment_typo(docs):
        spec = first(docs, "Deployment")["spec"]["template"]["spec"]
        spec["containres"] = spec.pop("containers")

    def eso_field(docs):
        result = first(docs, "SecretStore")["spec"]["provider"]["webhook"]["result"]
        result["jsonpath"] = result.pop("jsonPath")

    def other_provider(docs):
        first(docs, "SecretStore")["spec"]["provider"] = {"vault": {"server": "https://vault.example"}}

    def disk_backed(docs):
        for v in first(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]:
            if v["name"] == "secrets":
                v["emptyDir"].pop("medium")

    def bad_agent_config(docs):
        cm = first(docs, "ConfigMap")
        cm["data"]["agent.toml"] = cm["data"]["agent.toml"].replace('mode = "0400"', 'mode = "0644"', 1)

    def undeclared_volume(docs):
        spec = first(docs, "Job")["spec"]["template"]["spec"]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "coffer-ca"]

    def unknown_kind(docs):
        docs.append(("extra.yaml", {"apiVersion": "v1", "kind": "Secrett", "metadata": {"name": "x"}}))

    real = load()
    clean = check(coffer, copy.deepcopy(real))
    if clean:
        sys.exit("self-test: the real manifests must pass first:\n  " + "\n  ".join(clean))
    for breakage in (deployment_typo, eso_field, other_provider, disk_backed, bad_agent_config, undeclared_volume, unknown_kind):
        docs = copy.deepcopy(real)
        breakage(docs)
        if not check(coffer, docs):
            sys.exit(f"self-test: {breakage.__name__} was not caught")
    print("self-test: a misspelt field, a wrong ESO field, another provider, a disk-backed emptyDir, "
          "a refused agent config, an undeclared volume and an unknown kind are caught")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--coffer", required=True, help="the coffer binary (for coffer agent --check)")
    p.add_argument("--self-test", action="store_true")
    a = p.parse_args()
    if a.self_test:
        self_test(a.coffer)
        return
    docs = load()
    problems = check(a.coffer, docs)
    if problems:
        sys.exit("deploy/k8s:\n  " + "\n  ".join(problems))
    kinds = sorted({d["kind"] for _, d in docs})
    print(f"deploy/k8s: {len(docs)} manifests ({', '.join(kinds)}) valid for Kubernetes "
          f"{' and '.join(VERSIONS)} and ESO v1; every agent config checked")


if __name__ == "__main__":
    main()
