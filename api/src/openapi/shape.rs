//! Post-processing of the generated document, on its JSON:
//!
//! - [`merge_all_of`]: an `allOf` of object schemas becomes one object. utoipa renders a
//!   `#[serde(flatten)]` field and a `kind`-tagged enum's variant as `allOf: [{$ref: Body},
//!   {kind}]`; with the body closed (`additionalProperties: false`, from
//!   `deny_unknown_fields`), no document could satisfy both parts, so the parts' properties and
//!   required keys are merged into one object, closed when any part was.
//! - [`prune`]: component schemas no longer referenced from anywhere are dropped (the bodies
//!   of merged variants).

use std::collections::{BTreeSet, VecDeque};

use serde_json::{Map, Value};

/// Merges every `allOf` whose parts are all object schemas (inline or `$ref`), repeatedly,
/// until none is left that can be merged.
pub(super) fn merge_all_of(doc: &mut Value) {
    loop {
        let components = doc["components"]["schemas"].clone();
        let mut changed = false;
        walk(doc, &mut |node| {
            if let Some(merged) = merged(node, &components) {
                *node = merged;
                changed = true;
            }
        });
        if !changed {
            return;
        }
    }
}

/// Visits every JSON value of `value`, children before their parent.
fn walk(value: &mut Value, visit: &mut impl FnMut(&mut Value)) {
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| walk(v, visit)),
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, visit)),
        _ => {}
    }
    visit(value);
}

/// The object schema a part stands for: itself, or the component its `$ref` names.
fn resolve<'a>(part: &'a Value, components: &'a Value) -> Option<&'a Value> {
    match part.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/schemas/")?;
            components.get(name)
        }
        None => Some(part),
    }
}

/// The one object an `allOf` node stands for, when every part is a plain object schema.
fn merged(node: &Value, components: &Value) -> Option<Value> {
    let parts = node.get("allOf")?.as_array()?;
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut closed = false;
    let mut description = node.get("description").cloned();
    for part in parts {
        let object = resolve(part, components)?;
        let plain = object.get("type").and_then(Value::as_str) == Some("object")
            && ["allOf", "oneOf", "anyOf"]
                .iter()
                .all(|k| object.get(k).is_none());
        if !plain {
            return None;
        }
        if let Some(props) = object.get("properties").and_then(Value::as_object) {
            properties.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        for key in object
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !required.contains(key) {
                required.push(key.clone());
            }
        }
        closed |= object.get("additionalProperties") == Some(&Value::Bool(false));
        if description.is_none() {
            description = part
                .get("description")
                .or_else(|| object.get("description"))
                .cloned();
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), "object".into());
    if let Some(description) = description {
        out.insert("description".into(), description);
    }
    for (key, value) in node.as_object()? {
        if key != "allOf" && key != "description" {
            out.insert(key.clone(), value.clone());
        }
    }
    if !required.is_empty() {
        out.insert("required".into(), Value::Array(required));
    }
    out.insert("properties".into(), Value::Object(properties));
    if closed {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Some(Value::Object(out))
}

/// Drops the component schemas nothing outside them (paths, responses) reaches.
pub(super) fn prune(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    let mut outside = doc.clone();
    if let Some(components) = outside.get_mut("components").and_then(Value::as_object_mut) {
        components.remove("schemas");
    }
    let mut reached = BTreeSet::new();
    let mut queue: VecDeque<String> = references(&outside).into_iter().collect();
    while let Some(name) = queue.pop_front() {
        if reached.insert(name.clone())
            && let Some(schema) = schemas.get(&name)
        {
            queue.extend(references(schema));
        }
    }
    if let Some(map) = doc["components"]["schemas"].as_object_mut() {
        map.retain(|name, _| reached.contains(name));
    }
}

/// The component schema names `value` refers to.
fn references(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    out.push(name.to_owned());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tagged_variant_becomes_one_closed_object_and_its_body_is_pruned() {
        let mut doc = json!({
            "paths": {"/x": {"get": {"responses": {"200": {"content": {"application/json":
                {"schema": {"$ref": "#/components/schemas/Source"}}}}}}}},
            "components": {"schemas": {
                "Source": {"oneOf": [{"allOf": [
                    {"$ref": "#/components/schemas/Http", "description": "an http source"},
                    {"type": "object", "required": ["kind"],
                     "properties": {"kind": {"type": "string", "enum": ["http"]}}}
                ]}]},
                "Http": {"type": "object", "required": ["id"], "additionalProperties": false,
                         "properties": {"id": {"type": "string"}}}
            }}
        });
        merge_all_of(&mut doc);
        prune(&mut doc);
        let variant = &doc["components"]["schemas"]["Source"]["oneOf"][0];
        assert_eq!(
            variant,
            &json!({"type": "object", "description": "an http source",
                    "required": ["id", "kind"], "additionalProperties": false,
                    "properties": {"id": {"type": "string"},
                                   "kind": {"type": "string", "enum": ["http"]}}})
        );
        assert!(doc["components"]["schemas"].get("Http").is_none());
    }

    #[test]
    fn an_all_of_with_a_one_of_part_is_left_alone() {
        let mut doc = json!({"paths": {}, "components": {"schemas": {
            "Event": {"allOf": [{"$ref": "#/components/schemas/Kind"},
                                {"type": "object", "properties": {}}]},
            "Kind": {"oneOf": [{"type": "object"}]}
        }}});
        let before = doc.clone();
        merge_all_of(&mut doc);
        assert_eq!(doc, before);
    }
}
