"""Validates policy files against `ringfence schema` as an editor or CI would.

Usage: python3 schemacheck.py SCHEMA.json FILE...
Prints one line per file: "ok FILE", "schema FILE: message" or "yaml FILE: message".
Exit status: 0 if every file is valid, 1 if one breaks the schema, 2 if one is
not YAML that ringfence would read.

YAML is read as Ringfence reads it, YAML 1.2 (PyYAML reads 1.1, where `yes` is
true and `22:30` a number): only the core schema's booleans, numbers and nulls
are resolved, a key given twice and a second document are errors.
"""

import json
import re
import sys

import jsonschema
import yaml


class Yaml12Loader(yaml.SafeLoader):
    pass


Yaml12Loader.yaml_implicit_resolvers = {}
for tag, pattern, first in [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+0123456789."),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]:
    Yaml12Loader.add_implicit_resolver(tag, re.compile(pattern), list(first))


def construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


Yaml12Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)


def main():
    schema = json.load(open(sys.argv[1]))
    validator = jsonschema.Draft202012Validator(schema)
    worst = 0
    for path in sys.argv[2:]:
        try:
            with open(path) as f:
                document = yaml.load(f, Loader=Yaml12Loader)
        except yaml.YAMLError as e:
            print(f"yaml {path}: {str(e).splitlines()[0]}")
            worst = max(worst, 2)
            continue
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path)
            print(f"schema {path}: at /{where}: {errors[0].message}")
            worst = max(worst, 1)
        else:
            print(f"ok {path}")
    sys.exit(worst)


main()
