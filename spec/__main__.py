"""``python -m fusion_spec.spec schema``: regenerate ``spec/schema.json``."""

import sys

from ._union import write_schema

if __name__ == "__main__":
    if sys.argv[1:] != ["schema"]:
        sys.exit("usage: python -m fusion_spec.spec schema")
    print(f"wrote {write_schema()}")
