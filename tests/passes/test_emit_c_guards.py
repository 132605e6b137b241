#!/usr/bin/env python3
"""No division guard against a constant divisor comes back in emitted C.

Usage:  python3 tests/passes/test_emit_c_guards.py KILN_BINARY CACHE_DIR [model]

ir/loop.h defines integer division and remainder for every divisor; the C
printer guards one (through `kiln_div_T(a, d)` / `kiln_rem_T(a, d)`) only where
the divisor may be 0 or -1, i.e. unless it is an integer constant other than
those.  This emits a mid-size zoo network (default squeezenet1_1, generated
into CACHE_DIR by models/gen/zoo2.py like the other zoo tests) with
`kiln emit-c --weights-file` and fails, naming the line, if any guard tests
a literal divisor other than 0 and -1.  It also requires that the source
divides by constants at all (so the check is not vacuous) and that every
such division is printed plainly.
"""

import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# An integer literal as the C printer writes one: 7, -7, INT64_C(7), UINT64_C(7), ((int32_t)7)
LITERAL = r"(?:-?\d+|U?INT64_C\(-?\d+\)|\(\([a-z0-9_]+\)-?\d+\))"
GUARD = re.compile(r"\(\((" + LITERAL + r")\)\) == 0 \?|\((" + LITERAL + r")\) == 0 \?")
PLAIN_DIV = re.compile(r"[\w\]\)] [/%] (?:\d+|U?INT64_C\(\d+\))\)")


def helper_guards(src):
    """Calls of the guarded-division helpers (kiln_div_T / kiln_rem_T, which
    define x / 0 and MIN / -1) whose divisor is a literal other than 0, -1."""
    for no, line in enumerate(src.splitlines(), 1):
        for m in re.finditer(r"kiln_(?:div|rem)_\w+\(", line):
            if line.lstrip().startswith("static"):
                continue  # the helper's own definition
            depth, args, cur = 1, [], ""
            for ch in line[m.end():]:
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                if ch == "," and depth == 1:
                    args.append(cur)
                    cur = ""
                else:
                    cur += ch
            args.append(cur)
            d = args[-1].strip()
            if len(args) == 2 and re.fullmatch(LITERAL, d) and int(re.findall(r"-?\d+", d)[-1]) not in (0, -1):
                yield no, d, line.strip()


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    kiln, cache = argv[1], Path(argv[2])
    name = argv[3] if len(argv) > 3 else "squeezenet1_1"
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location("kiln_zoo2", REPO / "models" / "gen" / "zoo2.py")
    zoo2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo2)
    cache.mkdir(parents=True, exist_ok=True)
    model = zoo2.generate_any(cache, [name], log=lambda m: print(f"# {m}"))[name]
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "c"
        proc = subprocess.run([kiln, "emit-c", str(model), "--weights-file", "--name", "net", "-o", str(out)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            print(f"FAIL: kiln emit-c exited {proc.returncode}: {proc.stderr.strip()}")
            return 1
        src = (out / "net.c").read_text()
    bad = []
    for no, line in enumerate(src.splitlines(), 1):
        for m in GUARD.finditer(line):
            lit = m.group(1) or m.group(2)
            if int(re.findall(r"-?\d+", lit)[-1]) not in (0, -1):
                bad.append((no, lit, line.strip()))
    bad += [(no, lit, line) for no, lit, line in helper_guards(src)]
    plain = len(PLAIN_DIV.findall(src))
    # A float network's index arithmetic cannot overflow (ir/loop.h): it
    # prints plainly, without the unsigned casts that wrapping data
    # arithmetic needs (those casts once doubled ResNet-50's C).
    wrapped = src.count("(uint64_t)")
    if wrapped:
        print(f"FAIL: {wrapped} wrapping (uint64_t) casts in a float network's emitted C: index arithmetic printed as data")
        return 1
    if bad:
        for no, lit, line in bad[:10]:
            print(f"FAIL: net.c:{no}: division guarded against the constant {lit}: {line[:200]}")
        print(f"{len(bad)} guards against constant divisors")
        return 1
    if plain == 0:
        print("FAIL: no division by a constant in the emitted C: the check above proved nothing")
        return 1
    print(f"PASS {name}: {len(src)} bytes of C, {plain} divisions by constants, none guarded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
