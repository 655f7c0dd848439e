//! The request message built without a `serde_json::Value` of it: a `body: "*"` body
//! deserialized straight from its bytes, then path variables and query parameters set
//! on the message.
//!
//! Only for what it can build exactly as the merged route (`super::build_request_merged`)
//! does; `None` hands the request to that route, which then also gives a refusal its
//! usual text. So `None` whenever anything is wrong (bad JSON, a bad value, an unknown
//! path field) and for the shapes the merged route treats specially: `body: "field"`,
//! path variables on lists and maps, oneof members, paths through oneofs and
//! well-known types.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, ReflectMessage, Value,
};
use serde_json::{Map, Value as Json};

use super::{coerce, is_blank};
use crate::routes::{BodyRule, Route, resolve_field_path};

pub(super) fn build(
    route: &Route,
    bindings: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Option<DynamicMessage> {
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut message = match &route.body {
        BodyRule::Whole if !is_blank(body) => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let message =
                DynamicMessage::deserialize_with_options(route.input.clone(), &mut de, &options)
                    .ok()?;
            de.end().ok()?;
            message
        }
        BodyRule::Whole | BodyRule::None => DynamicMessage::new(route.input.clone()),
        BodyRule::Field(_) => return None,
    };

    // Path variables win over the body; the body's value there was still deserialized
    // (so well typed) above.
    let mut bound: Vec<FieldDescriptor> = Vec::with_capacity(bindings.len());
    for (path, raw) in bindings {
        let field = resolve_field_path(&route.input, path)?;
        if field.is_list() || field.is_map() {
            return None;
        }
        set(&mut message, path, &field, raw, false, &options)?;
        bound.push(field);
    }

    if route.body == BodyRule::None
        && let Some(query) = query
    {
        for (key, raw) in url::form_urlencoded::parse(query.as_bytes()) {
            let Some(field) = resolve_field_path(&route.input, &key) else {
                continue;
            };
            if field.is_map() || bound.contains(&field) {
                continue;
            }
            set(&mut message, &key, &field, &raw, field.is_list(), &options)?;
        }
    }
    Some(message)
}

/// Sets (or with `append`, adds to the list) the field at the dotted `path`, `leaf`
/// being the field it resolves to.
fn set(
    message: &mut DynamicMessage,
    path: &str,
    leaf: &FieldDescriptor,
    raw: &str,
    append: bool,
    options: &DeserializeOptions,
) -> Option<()> {
    let mut target = message;
    let mut parts = path.split('.');
    // Every part but the last: singular messages (resolve_field_path checked that).
    let _leaf_name = parts.next_back()?;
    for part in parts {
        let desc = target.descriptor();
        let field = desc
            .get_field_by_name(part)
            .or_else(|| desc.get_field_by_json_name(part))?;
        // Setting a oneof member clears its siblings, where the merged route refuses
        // both; a well-known type is no object of fields in JSON.
        if in_real_oneof(&field) {
            return None;
        }
        match field.kind() {
            Kind::Message(m) if !m.full_name().starts_with("google.protobuf.") => {}
            _ => return None,
        }
        target = target.get_field_mut(&field).as_message_mut()?;
    }
    if in_real_oneof(leaf) {
        return None;
    }
    match scalar(leaf, raw) {
        Some(value) if append => match target.get_field_mut(leaf) {
            Value::List(items) => items.push(value),
            _ => return None,
        },
        Some(value) => target.set_field(leaf, value),
        None => {
            // Well-known types, bytes, floats: as the merged route does, the coerced
            // JSON deserialized by prost-reflect, here as a one-field message.
            let json = coerce(leaf, raw).ok()?;
            let json = if append {
                Json::Array(vec![json])
            } else {
                json
            };
            let mut only = Map::new();
            only.insert(leaf.name().to_owned(), json);
            let mut one = DynamicMessage::deserialize_with_options(
                target.descriptor(),
                Json::Object(only),
                options,
            )
            .ok()?;
            let value = one.take_field(leaf)?;
            match (append, value, target.get_field_mut(leaf)) {
                (true, Value::List(new), Value::List(items)) => items.extend(new),
                (true, _, _) => return None,
                (false, value, slot) => *slot = value,
            }
        }
    }
    Some(())
}

/// A member of a oneof with siblings (a proto3 `optional` field's oneof has none).
fn in_real_oneof(field: &FieldDescriptor) -> bool {
    field.containing_oneof().is_some_and(|o| !o.is_synthetic())
}

/// The value of a scalar path or query text, for the kinds whose result is plain
/// (what `coerce` accepts, as prost-reflect would read its JSON); `None` for the rest
/// and for what `coerce` refuses.
fn scalar(field: &FieldDescriptor, raw: &str) -> Option<Value> {
    Some(match field.kind() {
        Kind::String => Value::String(raw.to_owned()),
        Kind::Bool => match raw {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return None,
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(raw.parse().ok()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(raw.parse().ok()?),
        // coerce checks with the same `str::parse` prost-reflect reads the string with.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(raw.parse().ok()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(raw.parse().ok()?),
        Kind::Double => Value::F64(match raw {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => Some(raw.parse::<f64>().ok()?).filter(|f| f.is_finite())?,
        }),
        Kind::Enum(desc) if desc.full_name() != "google.protobuf.NullValue" => {
            match raw.parse::<i32>() {
                Ok(n) => Value::EnumNumber(n),
                Err(_) => Value::EnumNumber(desc.get_value_by_name(raw)?.number()),
            }
        }
        _ => return None,
    })
}
