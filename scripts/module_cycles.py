#!/usr/bin/env python3
"""No module of any crate imports a module that imports it back (docs/architecture.md: Layers).

Every non-test file module of each workspace crate is a node; a path in one module that names
another module of the same crate (`crate::a::b`, `super::x`, `self::child`, or a child module by
its bare name) is an edge to the deepest module the path names. A parent's `mod child;`
declaration is ownership, not use; `pub use child::X` is use. Inline `mod tests { .. }` blocks
and `#[cfg(test)] mod x;` files are left out: tests may reach anywhere.

Exit status 1 and every cycle printed if the graph has one. `--self-test` runs the checker on a
fixture crate with a planted cycle and on the same crate without it.

    python3 scripts/module_cycles.py [CRATE_SRC_DIR ...]
"""
import os
import re
import sys
import tempfile

CRATES = ["src", "kv/src", "model/src", "raft/src", "proto/src", "testkit/src", "simulations/src", "benches/loadgen/src"]

COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING_RE = re.compile(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"|b\'(?:\\.|[^\'\\])\'')
MOD_DECL_RE = re.compile(r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
INLINE_TEST_RE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
USE_RE = re.compile(r"\buse\s+([^;]*);")
PATH_RE = re.compile(r"(?<![\w:])((?:crate|super|self|[a-z_][a-z0-9_]*)(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)+)")


def strip(text):
    text = COMMENT_RE.sub(" ", text)
    text = STRING_RE.sub('""', text)
    return text


def cut_inline_tests(text):
    """Drops every `#[cfg(test)] mod x { .. }` block (balanced braces)."""
    out, pos = [], 0
    for m in INLINE_TEST_RE.finditer(text):
        if m.start() < pos:
            continue
        out.append(text[pos : m.start()])
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        pos = i
    out.append(text[pos:])
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [`a::b`, `a::c::d`, `a::c::e`]."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas\w+", "", tree)

    def expand(prefix, s):
        results, depth, start = [], 0, 0
        parts = []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0 and part.endswith("}"):
                head = part[:brace].rstrip(":")
                new_prefix = prefix + ([head] if head else [])
                results.extend(expand(new_prefix, part[brace + 1 : -1]))
            else:
                results.append("::".join(prefix + [part]))
        return results

    return expand([], tree)


class Crate:
    def __init__(self, root):
        self.root = root
        self.modules = {}  # module path (tuple) -> file
        lib = next(
            (os.path.join(root, f) for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(root, f))),
            None,
        )
        if lib:
            self.load((), lib)
        # A binary's main.rs beside lib.rs is a crate of its own: left out.

    def load(self, path, file):
        self.modules[path] = file
        text = strip(open(file, encoding="utf-8").read())
        base = os.path.dirname(file)
        stem = os.path.splitext(os.path.basename(file))[0]
        child_dir = base if stem in ("mod", "lib", "main") else os.path.join(base, stem)
        for m in MOD_DECL_RE.finditer(text):
            attrs, name = m.group(1), m.group(2)
            if "cfg(test)" in attrs:
                continue
            explicit = re.search(r'path\s*=\s*"([^"]*)"', attrs)
            candidates = [os.path.join(child_dir, name + ".rs"), os.path.join(child_dir, name, "mod.rs")]
            for c in candidates:
                if os.path.exists(c):
                    self.load(path + (name,), c)
                    break

    def resolve(self, here, path):
        """The deepest module of this crate a `::` path names, or None."""
        segs = [s for s in re.split(r"\s*::\s*", path) if s]
        if not segs:
            return None
        if segs[0] == "crate":
            cur, rest = (), segs[1:]
        elif segs[0] in ("self", "super"):
            cur, rest = here, segs
            while rest and rest[0] in ("self", "super"):
                if rest[0] == "super":
                    if not cur:
                        return None
                    cur = cur[:-1]
                rest = rest[1:]
        elif here + (segs[0],) in self.modules:
            cur, rest = here, segs
        else:
            return None
        best = cur
        for s in rest:
            if cur + (s,) in self.modules:
                cur = cur + (s,)
                best = cur
            else:
                break
        return best

    def edges(self):
        graph = {m: set() for m in self.modules}
        for mod, file in self.modules.items():
            text = cut_inline_tests(strip(open(file, encoding="utf-8").read()))
            text = MOD_DECL_RE.sub(" ", text)
            paths = []
            for u in USE_RE.finditer(text):
                paths.extend(expand_use_tree(u.group(1)))
            body = USE_RE.sub(" ", text)
            paths.extend(m.group(1) for m in PATH_RE.finditer(body))
            for p in paths:
                target = self.resolve(mod, p)
                if target is None or target == mod:
                    continue
                # A path through an ancestor to a descendant of `mod` is a use of the descendant.
                graph[mod].add(target)
        return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def name(crate, mod):
    return "crate" + "".join("::" + s for s in mod) if mod else "crate (" + os.path.basename(crate.modules[mod]) + ")"


def check(roots):
    failed = False
    for root in roots:
        crate = Crate(root)
        graph = crate.edges()
        for comp in cycles(graph):
            failed = True
            members = set(comp)
            print(f"error: import cycle in {root}:")
            for m in comp:
                back = sorted(t for t in graph[m] if t in members)
                print(f"  {name(crate, m)} ({crate.modules[m]}) -> " + ", ".join(name(crate, t) for t in back))
    return failed


def self_test():
    files = {
        "lib.rs": "pub mod a;\npub mod b;\n#[cfg(test)]\nmod t;\n",
        "a.rs": "use crate::b::Thing;\npub struct A;\n",
        "b.rs": "pub struct Thing;\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
        "t.rs": "use crate::a::A; use crate::b::Thing;\n",
    }
    with tempfile.TemporaryDirectory() as clean, tempfile.TemporaryDirectory() as bad:
        for d in (clean, bad):
            for f, body in files.items():
                open(os.path.join(d, f), "w").write(body)
        # The planted cycle: b names a through a nested use tree outside its tests.
        open(os.path.join(bad, "b.rs"), "a").write("use super::{a::{A as Aa}};\n")
        if check([clean]):
            print("self-test: the clean fixture reported a cycle", file=sys.stderr)
            return 1
        if not check([bad]):
            print("self-test: the planted cycle a <-> b was missed", file=sys.stderr)
            return 1
    print("self-test: planted cycle caught, clean fixture passes")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    roots = argv[1:] or [os.path.join(here, c) for c in CRATES]
    roots = [os.path.relpath(r) for r in roots]
    if check(roots):
        return 1
    print(f"module cycles: none in {len(roots)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
