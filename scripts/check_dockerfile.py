#!/usr/bin/env python3
"""Lints deploy/Dockerfile (`make docker-lint`, in `make test`; no Docker daemon needed).

Rules: a multi-stage build; every base image pinned to a tag that is not `latest`; each
`apt-get install` with `-y --no-install-recommends` and the package lists removed in the same
RUN; no ADD, sudo or piped installers; `COPY --from` names an earlier stage; the final stage
runs as a non-root user set after its last RUN; ENTRYPOINT and CMD in exec form; a HEALTHCHECK
running `coffer cluster health`; every port the deploy configs listen on exposed; a .dockerignore that keeps
build output and git history out of the context.

`--self-test` first breaks the real Dockerfile in each of those ways and requires the break
to be caught.
"""

import argparse
import io
import json
import pathlib
import re
import sys

from dockerfile_parse import DockerfileParser

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy/Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIGS = sorted((ROOT / "deploy/config").glob("*.toml"))


def listen_ports():
    ports = set()
    for c in CONFIGS:
        for m in re.finditer(r'^(api_addr|raft_addr|http_addr|metrics_addr)\s*=\s*"[^"]*:(\d+)"', c.read_text(), re.M):
            ports.add(int(m.group(2)))
    return ports


def lint(text, dockerignore):
    # A file object, never a path: the parser would write the text to ./Dockerfile.
    p = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    problems = []
    instrs = p.structure
    stages = []  # (name, index of FROM)
    for i, ins in enumerate(instrs):
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            image = parts[0]
            name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else None
            stages.append((name, i))
            tag = image.split("@")[0].rsplit(":", 1)
            if "@sha256:" not in image and (len(tag) < 2 or tag[1] in ("", "latest")):
                problems.append(f"line {ins['startline'] + 1}: base image {image} is not pinned to a tag")
    if len(stages) < 2:
        problems.append("not a multi-stage build (build and runtime stages)")
    final_from = stages[-1][1] if stages else 0
    seen_stages = []
    last_run, user_at, user = None, None, None
    for i, ins in enumerate(instrs):
        kind, value, line = ins["instruction"], ins["value"], ins["startline"] + 1
        if kind == "FROM":
            parts = value.split()
            if len(parts) >= 3:
                seen_stages.append(parts[2])
        if kind == "ADD":
            problems.append(f"line {line}: ADD (use COPY)")
        if kind == "RUN":
            if i > final_from:
                last_run = i
            if re.search(r"\bsudo\b", value):
                problems.append(f"line {line}: sudo in RUN")
            if re.search(r"(curl|wget)[^|;&]*\|\s*(ba)?sh", value):
                problems.append(f"line {line}: a downloaded script piped to a shell")
            for install in re.finditer(r"apt-get\s+install([^&;|]*)", value):
                flags = install.group(1)
                if "--no-install-recommends" not in flags or not re.search(r"(^|\s)-y\b", flags):
                    problems.append(f"line {line}: apt-get install without -y --no-install-recommends")
                if "rm -rf /var/lib/apt/lists" not in value:
                    problems.append(f"line {line}: apt-get install without removing /var/lib/apt/lists in the same RUN")
        if kind == "COPY":
            m = re.search(r"--from=(\S+)", value)
            if m and m.group(1) not in seen_stages[:-1]:
                problems.append(f"line {line}: COPY --from={m.group(1)} names no earlier stage")
        if kind == "USER" and i > final_from:
            user_at, user = i, value.split(":")[0].strip()
        if kind in ("ENTRYPOINT", "CMD"):
            try:
                form = json.loads(value)
                if not isinstance(form, list):
                    raise ValueError
            except ValueError:
                problems.append(f"line {line}: {kind} is not in exec form (a JSON array)")
    if user is None or user in ("root", "0"):
        problems.append("the final stage does not run as a non-root USER")
    elif last_run is not None and user_at < last_run:
        problems.append("USER is set before the final stage's last RUN (that RUN would run as the user)")
    health = [ins for ins in instrs if ins["instruction"] == "HEALTHCHECK"]
    if not health or "coffer cluster health" not in " ".join(re.findall(r'"([^"]*)"', health[-1]["value"])):
        problems.append("no HEALTHCHECK running `coffer cluster health` (readiness as /health/ready says)")
    exposed = set()
    for ins in instrs:
        if ins["instruction"] == "EXPOSE":
            exposed.update(int(x.split("/")[0]) for x in ins["value"].split())
    missing = sorted(listen_ports() - exposed)
    if missing:
        problems.append(f"ports the deploy configs listen on are not exposed: {missing}")
    ignored = {l.strip() for l in dockerignore.splitlines() if l.strip() and not l.startswith("#")}
    for must in ("target", ".git"):
        if must not in ignored:
            problems.append(f".dockerignore does not exclude {must}")
    return problems


def self_test(text, dockerignore):
    final = text.rindex("FROM ")
    breaks = {
        "a base image on latest": text.replace("debian:bookworm-slim", "debian:latest"),
        "an unpinned base image": text.replace("FROM rust:1.95-bookworm", "FROM rust"),
        "one stage only": text[final:].replace("COPY --from=build ", "COPY "),
        "no USER": text.replace("USER 10001:10001\n", ""),
        "USER root": text.replace("USER 10001:10001", "USER root"),
        "USER before the last RUN": text.replace("USER 10001:10001\n", "").replace(
            "FROM debian:bookworm-slim AS runtime\n", "FROM debian:bookworm-slim AS runtime\nUSER 10001:10001\n"),
        "apt-get install with recommends": text.replace("--no-install-recommends ca-certificates", "ca-certificates"),
        "package lists kept": text.replace(" \\\n && rm -rf /var/lib/apt/lists/* \\\n && groupadd", " \\\n && groupadd"),
        "ADD": text.replace("COPY . .", "ADD . ."),
        "COPY --from a stage that does not exist": text.replace("COPY --from=build", "COPY --from=builder"),
        "CMD in shell form": text.replace('CMD ["server", "--config", "/etc/coffer/coffer.toml"]', "CMD server --config /etc/coffer/coffer.toml"),
        "no HEALTHCHECK": re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "", text),
        "a port not exposed": text.replace("EXPOSE 7400 7500 7600 9464", "EXPOSE 7400 7500"),
        "a piped installer": text.replace("WORKDIR /src", "RUN curl -sSf https://example.invalid/x.sh | sh\nWORKDIR /src"),
    }
    for what, broken in breaks.items():
        if broken == text:
            raise SystemExit(f"self-test: the break '{what}' did not change the Dockerfile; update the self-test")
        if not lint(broken, dockerignore):
            raise SystemExit(f"self-test: the linter missed {what}")
        print(f"self-test: caught {what}")
    if not lint(text, "# nothing\n"):
        raise SystemExit("self-test: the linter missed an empty .dockerignore")
    print("self-test: caught an empty .dockerignore")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    text = DOCKERFILE.read_text()
    ignore = DOCKERIGNORE.read_text() if DOCKERIGNORE.exists() else ""
    if a.self_test:
        self_test(text, ignore)
        return
    problems = lint(text, ignore)
    if problems:
        for pr in problems:
            print(f"error: deploy/Dockerfile: {pr}", file=sys.stderr)
        sys.exit(1)
    print(f"deploy/Dockerfile: multi-stage, pinned, non-root, health-checked, ports {sorted(listen_ports())} exposed")


if __name__ == "__main__":
    main()
