"""Validates a JSON document against one definition of docs/schema/baton.schema.json.

usage: validate_json.py SCHEMA DOCUMENT DEFINITION   (exit 0 when valid; else prints the errors)
Run with Debian's /usr/bin/python3 (python3-jsonschema).
"""
import json
import sys

import jsonschema

schema_file, document_file, definition = sys.argv[1:4]
with open(schema_file, encoding="utf-8") as f:
    schema = json.load(f)
with open(document_file, encoding="utf-8") as f:
    document = json.load(f)
validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/" + definition, "$defs": schema["$defs"]})
errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
for e in errors[:5]:
    print("/" + "/".join(str(p) for p in e.absolute_path) + ": " + e.message[:300])
sys.exit(1 if errors else 0)
