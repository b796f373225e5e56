#!/usr/bin/env bash
# `ringfence schema` is a JSON Schema (draft 2020-12) that every shipped policy
# and example passes, and that rejects the bad-input corpus files whose error is
# one of shape (unknown keys, wrong types, bad enumeration values, a missing
# name, direction or action). Files whose error is one of meaning (a reversed
# range, an unknown user, a rule that can never match) pass the schema, as the
# schema cannot know; files that are not YAML fail before it. Each corpus file is
# in exactly one list below, so a new file must be classified here.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../ipsec.sh"
# Debian's python3-jsonschema is for /usr/bin/python3, which may not be the first on PATH.
PY=
for p in python3 /usr/bin/python3; do "$p" -c 'import jsonschema, yaml' 2>/dev/null && { PY=$p; break; }; done
[ -n "$PY" ] || { echo "schema: python3-jsonschema or python3-yaml is missing (run integration/install-deps.sh)"; exit 1; }

BAD="$ROOT/integration/bad-policies"
SCHEMA_ERRORS=(04-unknown-key 05-unknown-rule-key 06-unknown-profile-key 07-unknown-profile-name
    08-unknown-settings-key 09-string-for-list 10-list-for-string 11-bool-as-string 12-rules-as-mapping
    13-missing-name 14-missing-direction 15-missing-action 16-bad-direction 44-null-name
    47-port-float 48-protocol-list 49-direction-list 51-rules-number 52-rule-item-not-mapping 55-port-huge
    56-missing-field-flow 61-isolation-mode-unknown 74-group-bad-name 75-group-missing-subject 96-merge-key
    100-core-networking-yes)
YAML_ERRORS=(01-yaml-syntax 02-tab-indent 03-tab-indent-key 41-duplicate-key 42-multiple-documents
    50-bad-indentation 57-unclosed-quote 58-colon-in-value 97-python-tag)
# 46-version-float: `1.0` is an integer to JSON Schema; ringfence reads it as a float.
SEMANTIC_ERRORS=(17-action-bypass 18-bad-protocol 19-protocol-256 20-cidr-prefix-33 21-cidr-host-bits 22-address-octet-300
    23-address-garbage 24-address-range-reversed 25-address-range-mixed 26-port-70000 27-port-negative
    28-port-range-reversed 29-ports-protocol-any 30-ports-protocol-icmp 31-icmp-types-without-icmp
    32-icmp-type-unknown 33-users-inbound 34-user-unknown 35-interface-glob-middle 36-interface-too-long
    37-profile-interfaces-overlap 38-never-matches 39-version-2 40-keyword-dhcp-local 43-empty-name
    45-duplicate-name-same-file 46-version-float 53-icmpv6-type-300 54-icmpv6-type-for-icmp
    59-interface-in-profile-bad 60-rule-too-many-elements 62-isolation-subnet-range 63-isolation-no-identity
    64-isolation-relative-path 65-isolation-lifetime 66-isolation-socket 67-isolation-missing-files
    68-isolation-no-subnets 69-group-partial-wildcard 70-group-unknown-attribute 71-group-not-type-value
    72-group-empty-value 73-group-empty-subject 76-remote-groups-undefined 77-remote-groups-outbound
    78-require-secure-block 79-require-secure-false-groups 80-groups-without-isolation 81-group-case-clash
    82-too-many-group-connections 83-name-control 84-name-bidi-override 85-name-bidi-isolate 86-name-zero-width
    87-name-bom 88-name-soft-hyphen 89-name-tag-character 90-name-line-separator 91-name-paragraph-separator
    92-name-private-use 93-name-unassigned 94-name-no-break-space 95-name-ideographic-space 98-unknown-service 99-services-and-ports
    101-staged-bypass 102-staged-file-profiles 103-staged-log 104-unit-executable-path 105-unit-target 106-unit-template
    120-detect-http-probe 121-detect-probe-without-port 122-detect-pin-not-sha256 123-detect-on-private
    124-detect-without-ca 125-detect-unreadable-ca dup-groups/10-group-a dup-groups/20-group-b
    dup-names/10-dup-a dup-names/20-dup-b profile-overlap/10-overlap-a profile-overlap/20-overlap-b)

check "ringfence schema prints a schema" "$RINGFENCE" schema
cp "$WORK/last.out" "$WORK/schema.json"
check "... that is a valid draft 2020-12 JSON Schema" "$PY" -c '
import json, sys, jsonschema
jsonschema.Draft202012Validator.check_schema(json.load(open(sys.argv[1])))' "$WORK/schema.json"
validate() { "$PY" "$ROOT/integration/schemacheck.py" "$WORK/schema.json" "$@"; }

"$RINGFENCE" default-policy >"$WORK/embedded-default.yaml"
for f in "$ROOT"/policies/*.yaml "$ROOT"/policies/*/*.yaml "$WORK/embedded-default.yaml"; do
    check "valid: ${f#"$ROOT"/}" validate "$f"
    one="$WORK/one-$(basename "$f" .yaml)"
    # Each file alone: without the default layer (the default policy would
    # meet itself).
    mkdir -p "$one" && cp "$f" "$one/" && mask_default "$one"
    # An isolation example names the host's credentials under /etc: check it
    # with a throwaway CA and certificate in their place.
    if grep -q /etc/ringfence/pki/ "$f"; then
        [ -f "$PKI/ca.crt" ] || { pki_ca ca "C=XX, O=Example, CN=Example CA" && pki_host host ca; }
        sed -i "s|/etc/ringfence/pki/ca.pem|$PKI/ca.crt|; s|/etc/ringfence/pki/host.pem|$PKI/host.crt|;
            s|/etc/ringfence/pki/host.key|$PKI/host.key|" "$one/$(basename "$f")"
    fi
    check "... and ringfence check agrees" "$RINGFENCE" check --policy-dir "$one"
done
printf '# only a comment\n' >"$WORK/empty.yaml"
check "valid: an empty file" validate "$WORK/empty.yaml"

for name in "${SCHEMA_ERRORS[@]}"; do
    status=0; validate "$BAD/$name.yaml" >"$WORK/out" 2>&1 || status=$?
    check "schema error: $name ($(cut -c1-150 "$WORK/out"))" test "$status" -eq 1
done
for name in "${YAML_ERRORS[@]}"; do
    status=0; validate "$BAD/$name.yaml" >"$WORK/out" 2>&1 || status=$?
    check "not YAML: $name" test "$status" -eq 2
done
for name in "${SEMANTIC_ERRORS[@]}"; do
    check "passes the schema (its error is one of meaning): $name" validate "$BAD/$name.yaml"
done
listed=$(printf '%s\n' "${SCHEMA_ERRORS[@]}" "${YAML_ERRORS[@]}" "${SEMANTIC_ERRORS[@]}" | sort)
present=$(cd "$BAD" && find . -name '*.yaml' | sed 's|^\./||; s|\.yaml$||' | sort)
check "every corpus file is in exactly one list" diff <(echo "$listed") <(echo "$present")
finish
