"""``python -m fusion_spec.conformance.measure [REPORT.json]``: the error figures behind the tolerance policy.

Reads a JSON report of ``python -m fusion_spec.conformance`` and prints, per backend, the
largest scaled error of any forward tensor (``max|a - e| / max(1, max|e|)``,
the ``atol`` that tensor alone would need) and of any gradient (element-wise:
divided by the case's gradient scale ``S``; directional: by ``|g| + S``),
with the check where it occurs, and the largest ULP distance. The numbers in
``spec/tolerance.py`` are these maxima times a safety factor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def worst(rows: list[dict], category: str, key: str) -> tuple[float, str]:
    best = (0.0, "")
    for r in rows:
        if r["category"] != category:
            continue
        for t in r["tensors"]:
            if t.get(key, 0.0) > best[0]:
                best = (t[key], f"{r['id']} {t['name']}")
    return best


def main(path: str = "reports/conformance.json") -> int:
    payload = json.loads(Path(path).read_text())
    rows = payload["results"]
    print(f"{'backend':12} {'forward scaled':>15} {'max ulp':>12} {'gradient scaled':>16}  where")
    for backend in payload["backends"]:
        mine = [r for r in rows if r["backend"] == backend]
        fwd, where_f = worst(mine, "forward", "scaled")
        ulp, _ = worst(mine, "forward", "max_ulp")
        grad, where_g = worst(mine, "gradient", "scaled")
        print(f"{backend:12} {fwd:15.3g} {ulp:12.3g} {grad:16.3g}  {where_f} | {where_g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
