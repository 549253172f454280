#!/usr/bin/env python3
"""docs/architecture.md stays true to the code.

- Every line of the read and write traces (between the `<!-- read-path:begin -->` and
  `<!-- write-path:begin -->` markers and their ends) names a file that exists and a function
  that file defines, in the form ``N. `path` — `function`: what happens``.
- Every workspace crate has a `### <folder>/` section, and every top-level module its root
  declares (`pub mod x;` in lib.rs) is named in that section as `x`.

`--self-test` checks that a trace naming a missing function and a crate section missing a
module are both caught.

    python3 scripts/check_architecture.py [--self-test]
"""
import os
import re
import sys
import tempfile

TRACE_RE = re.compile(r"^\d+\.\s+`([^`]+)`\s+—\s+`([A-Za-z_][A-Za-z0-9_]*)`")
CRATES = {
    "proto/": "proto/src/lib.rs",
    "kv/": "kv/src/lib.rs",
    "model/": "model/src/lib.rs",
    "raft/": "raft/src/lib.rs",
    "src/": "src/lib.rs",
    "testkit/": "testkit/src/lib.rs",
    "simulations/": "simulations/src/lib.rs",
}


def traces(doc):
    problems, count = [], 0
    for name in ("read-path", "write-path"):
        m = re.search(rf"<!-- {name}:begin -->(.*?)<!-- {name}:end -->", doc, re.S)
        if not m:
            problems.append(f"no {name} block")
            continue
        # A step is a numbered line; an indented line continues the step above it.
        lines = [l for l in m.group(1).strip().splitlines() if l.strip() and not l.startswith(" ")]
        if not lines:
            problems.append(f"the {name} block is empty")
        for line in lines:
            t = TRACE_RE.match(line.strip())
            if not t:
                problems.append(f"{name}: cannot read {line.strip()!r}")
                continue
            path, func = t.groups()
            count += 1
            if not os.path.isfile(path):
                problems.append(f"{name}: {path} does not exist")
                continue
            if not re.search(rf"\bfn\s+{func}\b", open(path, encoding="utf-8").read()):
                problems.append(f"{name}: {path} defines no function {func}")
    return problems, count


def crates(doc):
    problems = []
    for folder, root in CRATES.items():
        m = re.search(rf"^### {re.escape(folder)} .*?$(.*?)(?=^##)", doc, re.S | re.M)
        if not m:
            problems.append(f"no section for the crate {folder}")
            continue
        if not os.path.isfile(root):
            problems.append(f"the crate root {root} does not exist")
            continue
        section = m.group(1)
        text = open(root, encoding="utf-8").read()
        for mod in re.findall(r"^\s*(?:#\[[^\]]*\]\s*)*pub\s+mod\s+(\w+)\s*;", text, re.M):
            if not re.search(rf"`{mod}`|`{mod}/|`{mod}\.rs|\b{mod}\b", section):
                problems.append(f"{folder}: the module {mod} is not named in its section")
    return problems


def check(doc_path):
    doc = open(doc_path, encoding="utf-8").read()
    problems, count = traces(doc)
    problems += crates(doc)
    for p in problems:
        print(f"error: {doc_path}: {p}")
    return problems, count


def self_test():
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "a/src"))
        open(os.path.join(d, "a/src/lib.rs"), "w").write("pub mod one;\npub mod two;\nfn serve() {}\n")
        good = (
            "## Crates\n### a/ (a)\n- `one`, `two`\n## Trace\n"
            "<!-- read-path:begin -->\n1. `a/src/lib.rs` — `serve`: serves.\n<!-- read-path:end -->\n"
            "<!-- write-path:begin -->\n1. `a/src/lib.rs` — `serve`: serves.\n<!-- write-path:end -->\n## End\n"
        )
        bad = good.replace("`serve`: serves.\n<!-- read", "`answer`: answers.\n<!-- read").replace(
            "- `one`, `two`", "- `one`"
        )
        os.chdir(d)
        try:
            global CRATES
            saved, CRATES = CRATES, {"a/": "a/src/lib.rs"}
            open("good.md", "w").write(good)
            open("bad.md", "w").write(bad)
            ok_problems, _ = check("good.md")
            bad_problems, _ = check("bad.md")
            CRATES = saved
        finally:
            os.chdir(here)
    if ok_problems:
        print("self-test: the true document was refused", file=sys.stderr)
        return 1
    caught = {
        "function": any("defines no function answer" in p for p in bad_problems),
        "module": any("module two" in p for p in bad_problems),
    }
    if not all(caught.values()):
        print(f"self-test: missed {[k for k, v in caught.items() if not v]}", file=sys.stderr)
        return 1
    print("self-test: a wrong trace line and an unnamed module are caught")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    problems, count = check("docs/architecture.md")
    if problems:
        return 1
    print(f"docs/architecture.md: {count} trace steps and {len(CRATES)} crate sections match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
