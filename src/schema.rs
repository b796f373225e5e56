//! `ringfence schema`: the JSON Schema of the policy format, derived from the
//! serde types the parser reads (`policy::raw`), so the two cannot disagree.
//! The types that deserialize by hand get their schema by hand here, and the
//! parser's `Spanned` wrapper (a foreign type) is looked through with
//! `#[schemars(with = ...)]` on the fields.
//!
//! The schema checks shape (keys, types, enumerations); meaning (a port range
//! that is reversed, an unknown user, a rule that can never match) is for
//! `ringfence check`.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::json;
use serde_saphyr::Spanned;

use crate::policy::raw::{Flag, Groups, List, RawFile, RawGroup, Scalar};

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The parser reads numbers into an i64.
        json_schema!({
            "description": "A number or a string (22 or \"8000-8080\", 6 or \"tcp\").",
            "type": ["integer", "string"],
            "minimum": i64::MIN,
            "maximum": i64::MAX,
        })
    }
}

impl JsonSchema for Flag {
    fn schema_name() -> Cow<'static, str> {
        "Flag".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "description": "true or false (not yes/no, not a quoted string).", "type": "boolean" })
    }
}

/// `List` reads a sequence or a null (`key:` with no value); its items are
/// `Spanned`, which is the item itself to the schema.
impl<T: JsonSchema> JsonSchema for List<Spanned<T>> {
    fn schema_name() -> Cow<'static, str> {
        format!("List_of_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let items = generator.subschema_for::<T>();
        json_schema!({ "type": ["array", "null"], "items": items })
    }
}

/// A mapping of group names (as `validate` accepts them) to groups.
impl JsonSchema for Groups {
    fn schema_name() -> Cow<'static, str> {
        "Groups".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let group = generator.subschema_for::<RawGroup>();
        json_schema!({
            "type": "object",
            "propertyNames": { "pattern": "^[a-z][a-z0-9-]{0,31}$" },
            "additionalProperties": group,
        })
    }
}

/// The schema of one policy file. An empty file (a YAML null) is valid.
pub fn policy_schema() -> Schema {
    let mut schema = schemars::schema_for!(RawFile);
    schema.insert("title".into(), json!("Ringfence policy file, version 1"));
    schema.insert("type".into(), json!(["object", "null"]));
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_strict_where_the_parser_is() {
        let s = serde_json::to_value(policy_schema()).unwrap();
        let rule = &s["$defs"]["RawRule"];
        assert_eq!(rule["additionalProperties"], json!(false));
        assert!(rule["properties"]["local-ports"].is_object());
        assert!(rule["properties"]["remote-addresses"].is_object());
        assert_eq!(rule["properties"]["direction"]["enum"], json!(["in", "out"]));
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(rule["required"], json!(["name", "direction", "action"]));
        assert_eq!(s["$defs"]["RawSettings"]["properties"]["log-dropped"]["anyOf"][0]["$ref"], json!("#/$defs/Flag"));
        assert_eq!(rule["properties"]["action"]["enum"], json!(["allow", "block", "bypass"]));
        assert!(rule["properties"]["remote-groups"].is_object() && rule["properties"]["require-secure"].is_object());
        assert_eq!(s["$defs"]["Groups"]["additionalProperties"]["$ref"], json!("#/$defs/RawGroup"));
        assert_eq!(s["$defs"]["RawGroup"]["required"], json!(["subject"]));
        assert_eq!(s["$defs"]["RawProfile"]["properties"]["detect"]["anyOf"][0]["$ref"], json!("#/$defs/RawDetect"));
        assert_eq!(s["$defs"]["RawDetect"]["required"], json!(["probes"]));
        assert_eq!(s["$defs"]["RawDetect"]["additionalProperties"], json!(false));
    }
}
