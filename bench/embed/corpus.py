#!/usr/bin/env python3
"""A real text corpus from this machine's own documentation: every paragraph (text between blank
lines, whitespace collapsed, at least 40 characters) of the files under /usr/share/doc (README,
changelogs, copyright files, plain or gzipped) and of the man pages under /usr/share/man (roff
markup stripped), in sorted path order, as JSON Lines {"id": "<path>#<n>", "text": ...}.

  python3 bench/embed/corpus.py OUT.jsonl [--max 150000]

Licence texts repeat across copyright files, so the corpus holds many exact and near duplicates.
"""
import gzip
import json
import os
import re
import sys

ROOTS = ["/usr/share/doc", "/usr/share/man/man1", "/usr/share/man/man3", "/usr/share/man/man5", "/usr/share/man/man7", "/usr/share/man/man8"]


def read(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(4 << 20)
        else:
            with open(path, "rb") as f:
                data = f.read(4 << 20)
    except OSError:
        return None
    if b"\0" in data[:4096]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def deroff(text):
    out = []
    for line in text.split("\n"):
        if line.startswith(".") or line.startswith("'"):
            if re.match(r"^\.(PP|P|LP|SH|SS|TP|IP|sp|br)\b", line):
                out.append("")
            m = re.match(r"^\.(SH|SS|B|I|BR|IR|RB|RI|BI|IB)\s+(.*)", line)
            if m:
                out.append(m.group(2).replace('"', ""))
            continue
        out.append(re.sub(r"\\f[BIRP]|\\\(..|\\[-&e|^]|\\s[-+]?\d", "", line).replace("\\", ""))
    return "\n".join(out)


def main():
    out = sys.argv[1]
    cap = int(sys.argv[sys.argv.index("--max") + 1]) if "--max" in sys.argv else 150000
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for root in ROOTS:
            for d, dirs, files in os.walk(root, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(d, name)
                    if os.path.islink(path):
                        continue
                    text = read(path)
                    if text is None:
                        continue
                    if "/man/" in path:
                        text = deroff(text)
                    for i, para in enumerate(re.split(r"\n\s*\n", text)):
                        para = " ".join(para.split())
                        if len(para) < 40:
                            continue
                        f.write(json.dumps({"id": f"{path}#{i}", "text": para}, ensure_ascii=False) + "\n")
                        n += 1
                        if n >= cap:
                            print(f"{out}: {n} paragraphs", file=sys.stderr)
                            return
    print(f"{out}: {n} paragraphs", file=sys.stderr)


main()
