#!/usr/bin/env python3
"""Re-points the line links of docs/*.md after the code moved.

A link `[`name`](../path#L123)` must land on a line containing `name` (the
test lb-daemon/tests/docs.rs checks it). For every link that no longer
does, this finds the line of the same file that defines `name` (fn, static,
struct, enum, const, let) or else mentions it, nearest to the old line, and
rewrites the number. It prints what it changed and what it could not fix.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[`([^`]+)`\]\(([^)#]+)#L(\d+)\)")


def best_line(lines, name, old):
    short = name.split("::")[-1]
    define = re.compile(
        r"\b(fn|static|struct|enum|const|let|mod|type)\s+(mut\s+)?" + re.escape(short) + r"\b"
    )
    for pat in (define, re.compile(re.escape(short))):
        hits = [i + 1 for i, l in enumerate(lines) if pat.search(l)]
        if hits:
            return min(hits, key=lambda n: abs(n - old))
    return None


def fix(md_path):
    text = md_path.read_text()
    changed, stuck = [], []

    def repl(m):
        name, target, old = m.group(1), m.group(2), int(m.group(3))
        src = (md_path.parent / target).resolve()
        try:
            lines = src.read_text().splitlines()
        except OSError as e:
            stuck.append(f"{name} -> {target}: {e}")
            return m.group(0)
        short = name.split("::")[-1]
        if 0 < old <= len(lines) and short in lines[old - 1]:
            return m.group(0)
        new = best_line(lines, name, old)
        if new is None:
            stuck.append(f"{name} -> {target}: not found in the file")
            return m.group(0)
        changed.append(f"{name}: {target} L{old} -> L{new}")
        return f"[`{name}`]({target}#L{new})"

    text = LINK.sub(repl, text)
    md_path.write_text(text)
    return changed, stuck


def main():
    bad = False
    for md in sorted((ROOT / "docs").glob("*.md")):
        changed, stuck = fix(md)
        for c in changed:
            print(f"{md.name}: {c}")
        for s in stuck:
            print(f"{md.name}: CANNOT FIX {s}", file=sys.stderr)
            bad = True
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
