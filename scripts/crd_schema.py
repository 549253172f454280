#!/usr/bin/env python3
"""A strict JSON Schema from a CustomResourceDefinition, for validating manifests offline.

Reads one version's `openAPIV3Schema` from a CRD (YAML) and writes it as JSON Schema:
objects with `properties` accept no other fields (like `kubectl apply --validate=strict`)
unless the CRD says `x-kubernetes-preserve-unknown-fields`, `nullable` becomes a null type, the
root gets its apiVersion and kind, and descriptions are dropped. `--keep FIELD=CHILD` keeps only
CHILD under a field named FIELD (ESO's `provider` has 40-odd providers; Coffer uses one), so a
manifest naming another one is refused.

The schemas in deploy/k8s/schemas/ come from External Secrets Operator's CRDs:

    python3 scripts/crd_schema.py CRD.yaml --version v1 --keep provider=webhook \\
        --source 'external-secrets/external-secrets@COMMIT PATH' > deploy/k8s/schemas/KIND.json

Needs PyYAML (in the venv `make k8s` makes).
"""
import argparse
import json
import sys

import yaml


def strict(node, keep):
    if isinstance(node, list):
        return [strict(n, keep) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("description", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type"):
            continue
        if k == "properties":
            out[k] = {}
            for name, child in v.items():
                if name in keep:
                    child = dict(child, properties={keep[name]: child["properties"][keep[name]]})
                out[k][name] = strict(child, keep)
        else:
            out[k] = strict(v, keep)
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("crd")
    p.add_argument("--version", required=True)
    p.add_argument("--keep", action="append", default=[])
    p.add_argument("--source", required=True)
    a = p.parse_args()
    crd = yaml.safe_load(open(a.crd))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == a.version)
    keep = dict(k.split("=", 1) for k in a.keep)
    schema = strict(version["schema"]["openAPIV3Schema"], keep)
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema["properties"]["apiVersion"] = {"const": f"{group}/{a.version}"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    kept = ", ".join(f"{k}: only {v}" for k, v in keep.items())
    schema = {
        "$comment": f"{kind} {group}/{a.version} from {a.source}, strict; {kept or 'nothing pruned'} (scripts/crd_schema.py)",
        **schema,
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
