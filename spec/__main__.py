"""``python -m fusion_spec.spec schema|fields``: regenerate ``spec/schema.json`` or
``spec/_fields.py``."""

import sys

from ._fieldgen import write_fields
from ._union import write_schema

if __name__ == "__main__":
    writers = {"schema": write_schema, "fields": write_fields}
    if len(sys.argv) != 2 or sys.argv[1] not in writers:
        sys.exit("usage: python -m fusion_spec.spec schema|fields")
    print(f"wrote {writers[sys.argv[1]]()}")
