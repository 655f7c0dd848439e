//! Canonical proto3 JSON of a response, written straight from the `DynamicMessage` into
//! bytes: no `serde_json::Value` tree of the whole answer (a 20,000-seat map was
//! 140,000 small allocations built, sorted and dropped per request).
//!
//! The bytes are the ones the Value route (`super::response_json_value`) writes:
//! prost-reflect's forms, `null` for unset singular message fields outside oneofs, and
//! every object's keys sorted as `serde_json::Map` (a `BTreeMap`, no `preserve_order`)
//! sorts them. Well-known types are prost-reflect's own serialization; the ones whose
//! form holds maps or floats (Struct, Value, Any, FloatValue, …) and messages carrying
//! extensions still go through a small `Value`, so that their key order and number
//! forms stay the old ones.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};

use super::fill_unpopulated;

/// Whether `response_json` can write a message of this type directly (not a well-known
/// type, no extensions at the top, where `response_body` picks from the object).
pub(super) fn is_plain(desc: &MessageDescriptor) -> bool {
    form_of(desc) == Form::Fields
}

/// The JSON of `message`, or with `response_body` of that one field of it (`null` when
/// the object would not hold it). `message` must be [`is_plain`].
pub(super) fn write(
    message: &DynamicMessage,
    desc: &MessageDescriptor,
    response_body: Option<&str>,
) -> Result<Vec<u8>, serde_json::Error> {
    let ctx = Context::default();
    let mut out = Vec::with_capacity(512);
    match response_body {
        None => serde_json::to_writer(
            &mut out,
            &MessageJson {
                message,
                desc,
                ctx: &ctx,
            },
        )?,
        Some(name) => {
            // The old route serialized the whole message first, so a field it cannot
            // write (a Timestamp out of range) refused the answer whatever field it
            // gave: check the rest likewise (no `response_body` route is hot).
            serde_json::to_writer(
                std::io::sink(),
                &MessageJson {
                    message,
                    desc,
                    ctx: &ctx,
                },
            )?;
            let layout = ctx.layout(desc);
            let field = desc
                .get_field_by_name(name)
                .or_else(|| desc.get_field_by_json_name(name))
                .and_then(|f| layout.fields.iter().find(|l| l.field == f));
            match field {
                Some(field) if field.is_emitted(message) => serde_json::to_writer(
                    &mut out,
                    &FieldJson {
                        value: &message.get_field(&field.field),
                        field,
                        ctx: &ctx,
                    },
                )?,
                // Unset (a `null` or absent key): `null`, as the old lookup gave.
                _ => out.extend_from_slice(b"null"),
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A message of our own: its fields, sorted by JSON name.
    Fields,
    /// A well-known type prost-reflect writes as one string (Timestamp, Duration).
    Direct,
    /// Through a `serde_json::Value` (other well-known types, extensions), so that map
    /// keys come out sorted and f32 as the old f64 digits.
    ViaValue,
}

fn form_of(desc: &MessageDescriptor) -> Form {
    match desc.full_name() {
        "google.protobuf.Timestamp" | "google.protobuf.Duration" => Form::Direct,
        name if name.starts_with("google.protobuf.") => Form::ViaValue,
        _ if desc.extensions().len() > 0 => Form::ViaValue,
        _ => Form::Fields,
    }
}

/// What is worked out once per message type and response: the fields in key order
/// and their kinds (`Kind` of a message field clones a descriptor, so not per value).
struct Layout {
    desc: MessageDescriptor,
    form: Form,
    fields: Vec<FieldLayout>,
}

struct FieldLayout {
    field: FieldDescriptor,
    /// Unset means absent (message fields, oneof members, proto3 `optional`).
    presence: bool,
    /// Unset and absent from prost-reflect's object, but outside a oneof: `null`.
    null_when_unset: bool,
    shape: Shape,
}

enum Shape {
    Single(Kind),
    List(Kind),
    /// A map field: the kind of its values.
    Map(Kind),
}

impl FieldLayout {
    fn is_emitted(&self, message: &DynamicMessage) -> bool {
        !self.presence || message.has_field(&self.field)
    }
}

struct Context {
    /// A handful of message types per response: a list beats hashing descriptors.
    layouts: RefCell<Vec<Rc<Layout>>>,
    options: SerializeOptions,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            layouts: RefCell::default(),
            // Every field, defaults too (`SerializeOptions::default()` skips them).
            options: SerializeOptions::new().skip_default_fields(false),
        }
    }
}

impl Context {
    fn layout(&self, desc: &MessageDescriptor) -> Rc<Layout> {
        if let Some(layout) = self.layouts.borrow().iter().find(|l| l.desc == *desc) {
            return Rc::clone(layout);
        }
        let mut fields: Vec<FieldLayout> = desc
            .fields()
            .map(|field| {
                let shape = match field.kind() {
                    Kind::Message(entry) if field.is_map() => {
                        Shape::Map(entry.map_entry_value_field().kind())
                    }
                    kind if field.is_list() => Shape::List(kind),
                    kind => Shape::Single(kind),
                };
                FieldLayout {
                    presence: field.supports_presence(),
                    null_when_unset: field.containing_oneof().is_none(),
                    shape,
                    field,
                }
            })
            .collect();
        // serde_json::Map is a BTreeMap: the old output's keys are in byte order.
        fields.sort_by(|a, b| a.field.json_name().cmp(b.field.json_name()));
        let layout = Rc::new(Layout {
            desc: desc.clone(),
            form: form_of(desc),
            fields,
        });
        self.layouts.borrow_mut().push(Rc::clone(&layout));
        layout
    }
}

struct MessageJson<'a> {
    message: &'a DynamicMessage,
    desc: &'a MessageDescriptor,
    ctx: &'a Context,
}

impl Serialize for MessageJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let layout = self.ctx.layout(self.desc);
        let options = &self.ctx.options;
        match layout.form {
            Form::Direct => self.message.serialize_with_options(serializer, options),
            Form::ViaValue => {
                let mut value = self
                    .message
                    .serialize_with_options(serde_json::value::Serializer, options)
                    .map_err(S::Error::custom)?;
                fill_unpopulated(self.desc, &mut value);
                value.serialize(serializer)
            }
            Form::Fields => {
                let mut map = serializer.serialize_map(None)?;
                for field in &layout.fields {
                    if field.is_emitted(self.message) {
                        map.serialize_entry(
                            field.field.json_name(),
                            &FieldJson {
                                value: &self.message.get_field(&field.field),
                                field,
                                ctx: self.ctx,
                            },
                        )?;
                    } else if field.null_when_unset {
                        map.serialize_entry(field.field.json_name(), &())?;
                    }
                }
                map.end()
            }
        }
    }
}

struct FieldJson<'a> {
    value: &'a Value,
    field: &'a FieldLayout,
    ctx: &'a Context,
}

impl Serialize for FieldJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ctx = self.ctx;
        match (&self.field.shape, self.value) {
            (Shape::Single(kind), value) => ValueJson { value, kind, ctx }.serialize(serializer),
            (Shape::List(kind), Value::List(items)) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for value in items {
                    seq.serialize_element(&ValueJson { value, kind, ctx })?;
                }
                seq.end()
            }
            (Shape::Map(kind), Value::Map(entries)) => {
                let mut sorted: Vec<(Cow<'_, str>, &Value)> = entries
                    .iter()
                    .map(|(key, value)| (map_key(key), value))
                    .collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let mut map = serializer.serialize_map(Some(sorted.len()))?;
                for (key, value) in &sorted {
                    map.serialize_entry(key.as_ref(), &ValueJson { value, kind, ctx })?;
                }
                map.end()
            }
            (_, value) => Err(S::Error::custom(format!(
                "value {value:?} does not match field {}",
                self.field.field.full_name()
            ))),
        }
    }
}

/// JSON object keys of map entries, as prost-reflect writes them.
fn map_key(key: &MapKey) -> Cow<'_, str> {
    match key {
        MapKey::String(s) => Cow::Borrowed(s),
        MapKey::Bool(b) => Cow::Owned(b.to_string()),
        MapKey::I32(n) => Cow::Owned(n.to_string()),
        MapKey::I64(n) => Cow::Owned(n.to_string()),
        MapKey::U32(n) => Cow::Owned(n.to_string()),
        MapKey::U64(n) => Cow::Owned(n.to_string()),
    }
}

/// One value (not a list or map) of a field of kind `kind`.
struct ValueJson<'a> {
    value: &'a Value,
    kind: &'a Kind,
    ctx: &'a Context,
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::I32(n) => serializer.serialize_i32(*n),
            Value::U32(n) => serializer.serialize_u32(*n),
            Value::I64(n) => serializer.collect_str(n),
            Value::U64(n) => serializer.collect_str(n),
            // The old Value route stored an f32 as the f64 it widens to (0.1f32 was
            // written 0.10000000149011612); keep those digits.
            Value::F32(f) => float(serializer, f64::from(*f)),
            Value::F64(f) => float(serializer, *f),
            Value::String(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_str(&base64(b)),
            Value::EnumNumber(n) => match self.kind {
                Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => {
                    serializer.serialize_unit()
                }
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(v) => serializer.serialize_str(v.name()),
                    None => serializer.serialize_i32(*n),
                },
                _ => serializer.serialize_i32(*n),
            },
            Value::Message(message) => match self.kind {
                Kind::Message(desc) => MessageJson {
                    message,
                    desc,
                    ctx: self.ctx,
                }
                .serialize(serializer),
                _ => MessageJson {
                    message,
                    desc: &message.descriptor(),
                    ctx: self.ctx,
                }
                .serialize(serializer),
            },
            Value::List(_) | Value::Map(_) => Err(S::Error::custom(format!(
                "a list or map where a single {:?} was expected",
                self.kind
            ))),
        }
    }
}

/// prost-reflect's forms: a JSON number when finite, else the proto3 JSON strings.
fn float<S: Serializer>(serializer: S, f: f64) -> Result<S::Ok, S::Error> {
    if f.is_finite() {
        serializer.serialize_f64(f)
    } else if f == f64::INFINITY {
        serializer.serialize_str("Infinity")
    } else if f == f64::NEG_INFINITY {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_str("NaN")
    }
}

/// Standard base64 with padding, as prost-reflect writes bytes fields.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_standard_with_padding() {
        for (raw, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xfb\xff\xfe", "+//+"),
        ] {
            assert_eq!(super::base64(raw), encoded);
        }
    }
}
