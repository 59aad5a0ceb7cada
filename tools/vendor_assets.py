"""Vendor the site's math and diagram renderers into ``docs/assets/vendor/``.

The site must render without network, so KaTeX and Mermaid ship with it,
fetched once from the npm registry at pinned versions and committed:

* KaTeX: ``katex.min.js``, ``katex.min.css`` (rewritten to reference only
  the ``.woff2`` fonts) and the ``.woff2`` fonts;
* Mermaid: the single minified ``dist/mermaid.min.js``.

``MANIFEST.json`` records the versions, the npm tarball integrity and the
SHA-256 of every vendored file.

Usage::

    python tools/vendor_assets.py           # fetch with npm and (re)write the files
    python tools/vendor_assets.py --check   # offline: files match MANIFEST.json and the pins
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "docs" / "assets" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"

PINS = {"katex": "0.19.1", "mermaid": "11.12.0"}

# Each font is listed as woff2, woff, ttf; browsers take the first they support,
# and every browser the site targets supports woff2.
_NON_WOFF2 = re.compile(r',url\(fonts/[^)]+\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)')


def _select(package: str, member: str) -> str | None:
    """Destination path (relative to the package's vendor folder) of a tarball member."""
    if package == "katex":
        if member in ("package/dist/katex.min.js", "package/dist/katex.min.css"):
            return member.rsplit("/", 1)[1]
        if member.startswith("package/dist/fonts/") and member.endswith(".woff2"):
            return "fonts/" + member.rsplit("/", 1)[1]
        return None
    if package == "mermaid":
        return "mermaid.min.js" if member == "package/dist/mermaid.min.js" else None
    raise AssertionError(package)


def _rewrite(package: str, name: str, data: bytes) -> bytes:
    if package == "katex" and name == "katex.min.css":
        css = _NON_WOFF2.sub("", data.decode("utf-8"))
        leftover = re.findall(r"url\((?![^)]*\.woff2\))[^)]*\)", css)
        if leftover:
            raise RuntimeError(
                f"katex.min.css: expected only woff2 font URLs; received {leftover[:3]}"
            )
        return css.encode("utf-8")
    return data


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch() -> dict:
    """Download the pinned tarballs with ``npm pack`` and write the selected files."""
    manifest: dict = {"packages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for package, version in PINS.items():
            out = subprocess.run(
                ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", tmp],
                check=True,
                capture_output=True,
                text=True,
            )
            info = json.loads(out.stdout)[0]
            target = VENDOR / package
            files = {}
            with tarfile.open(Path(tmp) / info["filename"]) as tar:
                for member in tar.getmembers():
                    name = _select(package, member.name)
                    if name is None or not member.isfile():
                        continue
                    data = _rewrite(package, name, tar.extractfile(member).read())
                    dest = target / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(data)
                    files[name] = _sha256(dest)
            manifest["packages"][package] = {
                "version": version,
                "integrity": info["integrity"],
                "files": dict(sorted(files.items())),
            }
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def check() -> list[str]:
    """Problems with the vendored files (empty when they match the manifest and the pins)."""
    if not MANIFEST.exists():
        return [f"{MANIFEST.relative_to(ROOT)} missing: run python tools/vendor_assets.py"]
    manifest = json.loads(MANIFEST.read_text())["packages"]
    problems = []
    for package, version in PINS.items():
        entry = manifest.get(package)
        if entry is None or entry["version"] != version:
            found = None if entry is None else entry["version"]
            problems.append(f"{package}: expected version {version} in the manifest; found {found}")
            continue
        on_disk = {
            p.relative_to(VENDOR / package).as_posix()
            for p in (VENDOR / package).rglob("*")
            if p.is_file()
        }
        for name in sorted(on_disk - set(entry["files"])):
            problems.append(f"{package}/{name}: not in the manifest")
        for name, digest in entry["files"].items():
            path = VENDOR / package / name
            if not path.exists():
                problems.append(f"{package}/{name}: missing")
            elif _sha256(path) != digest:
                problems.append(f"{package}/{name}: SHA-256 differs from the manifest")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify only, offline")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    manifest = fetch()
    for package, entry in manifest["packages"].items():
        print(f"{package} {entry['version']}: {len(entry['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
