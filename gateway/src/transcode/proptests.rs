//! Property tests of the JSON ⇄ protobuf transcoding, over every message and route of
//! Marquee's own descriptor set: canonical JSON decodes back to the message it came
//! from (as a response read by a client, and as a request body or query string sent
//! by one), it has the canonical forms (64-bit integers as strings, enums by name,
//! timestamps in UTC with `Z`), and no request, however malformed, does anything but
//! build a message or give a `BadRequest` (the proxy's 400).

use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use proptest::strategy::Union;
use prost::Message as _;
use prost_reflect::{DescriptorPool, EnumDescriptor, MapKey, Value};

use super::*;
use crate::routes::RouteTable;

static TABLE: LazyLock<RouteTable> = LazyLock::new(|| RouteTable::marquee().expect("route table"));

const TIMESTAMP: &str = "google.protobuf.Timestamp";
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range proto3 JSON allows.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// Every message Marquee defines.
fn marquee_messages() -> Vec<MessageDescriptor> {
    TABLE
        .pool()
        .all_messages()
        .filter(|m| m.full_name().starts_with("marquee."))
        .collect()
}

fn enum_number(desc: EnumDescriptor) -> BoxedStrategy<i32> {
    let known: Vec<i32> = desc.values().map(|v| v.number()).collect();
    prop_oneof![4 => prop::sample::select(known), 1 => any::<i32>()].boxed()
}

fn timestamp(desc: MessageDescriptor) -> BoxedStrategy<DynamicMessage> {
    (MIN_SECONDS..=MAX_SECONDS, 0..1_000_000_000i32)
        .prop_map(move |(seconds, nanos)| {
            let mut message = DynamicMessage::new(desc.clone());
            message.set_field_by_name("seconds", Value::I64(seconds));
            message.set_field_by_name("nanos", Value::I32(nanos));
            message
        })
        .boxed()
}

/// A value for one element of `field` (so not a list); `None` for what cannot be
/// generated at this depth. Floats include NaN and the infinities unless `finite`.
fn element_of(field: &FieldDescriptor, depth: u32, finite: bool) -> Option<BoxedStrategy<Value>> {
    Some(match field.kind() {
        Kind::Double => any::<f64>()
            .prop_filter("finite", move |f| !finite || f.is_finite())
            .prop_map(Value::F64)
            .boxed(),
        Kind::Float => any::<f32>()
            .prop_filter("finite", move |f| !finite || f.is_finite())
            .prop_map(Value::F32)
            .boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => any::<i32>().prop_map(Value::I32).boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => any::<i64>().prop_map(Value::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(Value::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(Value::U64).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::String => any::<String>().prop_map(Value::String).boxed(),
        Kind::Bytes => prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(|b| Value::Bytes(b.into()))
            .boxed(),
        Kind::Enum(desc) => enum_number(desc).prop_map(Value::EnumNumber).boxed(),
        Kind::Message(desc) if desc.full_name() == TIMESTAMP => {
            timestamp(desc).prop_map(Value::Message).boxed()
        }
        Kind::Message(desc) if depth > 0 => message_of(desc, depth - 1, finite)
            .prop_map(Value::Message)
            .boxed(),
        Kind::Message(_) => return None,
    })
}

/// Any key of a map field whose keys are of `kind`.
fn map_key(kind: Kind) -> BoxedStrategy<MapKey> {
    match kind {
        Kind::Bool => any::<bool>().prop_map(MapKey::Bool).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => any::<i32>().prop_map(MapKey::I32).boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => any::<i64>().prop_map(MapKey::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(MapKey::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(MapKey::U64).boxed(),
        _ => any::<String>().prop_map(MapKey::String).boxed(),
    }
}

/// Any message of type `desc`: each field unset or set to any value of its type.
fn message(desc: MessageDescriptor, depth: u32) -> BoxedStrategy<DynamicMessage> {
    message_of(desc, depth, true)
}

/// [`message`], with maps, and with NaN and infinities unless `finite`.
fn message_of(desc: MessageDescriptor, depth: u32, finite: bool) -> BoxedStrategy<DynamicMessage> {
    if desc.full_name() == TIMESTAMP {
        return timestamp(desc);
    }
    let fields: Vec<BoxedStrategy<Option<(FieldDescriptor, Value)>>> = desc
        .fields()
        .filter_map(|field| {
            if let (true, Kind::Message(entry)) = (field.is_map(), field.kind()) {
                let value = element_of(&entry.map_entry_value_field(), depth, finite)?;
                let entries = prop::collection::hash_map(
                    map_key(entry.map_entry_key_field().kind()),
                    value,
                    0..3,
                );
                let value = entries.prop_map(Value::Map);
                return Some(prop::option::of(value.prop_map(move |v| (field.clone(), v))).boxed());
            }
            let one = element_of(&field, depth, finite)?;
            let value = if field.is_list() {
                prop::collection::vec(one, 0..3)
                    .prop_map(Value::List)
                    .boxed()
            } else {
                one
            };
            Some(prop::option::of(value.prop_map(move |v| (field.clone(), v))).boxed())
        })
        .collect();
    fields
        .prop_map(move |values| {
            let mut message = DynamicMessage::new(desc.clone());
            for (field, value) in values.into_iter().flatten() {
                message.set_field(&field, value);
            }
            message
        })
        .boxed()
}

fn any_marquee_message() -> impl Strategy<Value = DynamicMessage> {
    Union::new(marquee_messages().into_iter().map(|d| message(d, 2)))
}

/// The message as its wire bytes decode, so that a field set to its default and an
/// unset one compare equal (proto3 does not tell them apart either).
fn normalized(message: &DynamicMessage) -> DynamicMessage {
    DynamicMessage::decode(message.descriptor(), message.encode_to_vec().as_slice())
        .expect("own encoding decodes")
}

/// Checks the canonical proto3 JSON forms of `value`, a message of type `desc`.
fn check_canonical(desc: &MessageDescriptor, value: &Json, at: &str) -> Result<(), String> {
    let Json::Object(object) = value else {
        return Err(format!("{at}: {value} is not an object"));
    };
    for key in object.keys() {
        if desc.get_field_by_json_name(key).is_none() {
            return Err(format!("{at}: {key:?} is not the JSON name of a field"));
        }
    }
    for field in desc.fields() {
        let at = format!("{at}.{}", field.json_name());
        let Some(value) = object.get(field.json_name()) else {
            if field.containing_oneof().is_none() {
                return Err(format!("{at}: missing (every field is emitted)"));
            }
            continue;
        };
        let items: Vec<&Json> = match (field.is_list(), value) {
            (true, Json::Array(items)) => items.iter().collect(),
            (true, other) => return Err(format!("{at}: a list as {other}")),
            (false, other) => vec![other],
        };
        for item in items {
            match field.kind() {
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => match item.as_str() {
                    Some(s) if s.parse::<i64>().is_ok() => {}
                    _ => return Err(format!("{at}: int64 as {item}, not a decimal string")),
                },
                Kind::Uint64 | Kind::Fixed64 => match item.as_str() {
                    Some(s) if s.parse::<u64>().is_ok() => {}
                    _ => return Err(format!("{at}: uint64 as {item}, not a decimal string")),
                },
                Kind::Enum(e) => match item {
                    Json::String(name) if e.get_value_by_name(name).is_some() => {}
                    // Only a number the enum does not define stays a number.
                    Json::Number(n)
                        if n.as_i64()
                            .and_then(|n| i32::try_from(n).ok())
                            .is_some_and(|n| e.get_value(n).is_none()) => {}
                    _ => return Err(format!("{at}: enum as {item}, not its name")),
                },
                Kind::Message(m) if m.full_name() == TIMESTAMP => match item {
                    Json::Null => {}
                    Json::String(s)
                        if s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok() => {}
                    _ => return Err(format!("{at}: timestamp as {item}, not RFC 3339 in Z")),
                },
                Kind::Message(m) if !item.is_null() => check_canonical(&m, item, &at)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The value of the (possibly dotted) field `path` of `message` as path text.
fn path_text(message: &DynamicMessage, path: &str) -> Option<String> {
    let mut current = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = current.get_field_by_name(part)?.into_owned();
        match (value, parts.peek()) {
            (Value::String(s), None) => return Some(s),
            (Value::Message(m), Some(_)) => current = m,
            _ => return None,
        }
    }
    None
}

/// Routes of `rule` whose path variables are all strings (all of Marquee's are).
fn routes_with(rule: fn(&BodyRule) -> bool) -> Vec<Arc<Route>> {
    TABLE
        .routes()
        .iter()
        .filter(|r| rule(&r.body))
        .filter(|r| {
            r.template
                .variables()
                .all(|v| resolve_field_path(&r.input, v).is_some_and(|f| f.kind() == Kind::String))
        })
        .cloned()
        .collect()
}

/// A route and any request message of it.
fn route_and_message(
    routes: Vec<Arc<Route>>,
) -> impl Strategy<Value = (Arc<Route>, DynamicMessage)> {
    assert!(!routes.is_empty());
    prop::sample::select(routes)
        .prop_flat_map(|route| (Just(route.clone()), message(route.input.clone(), 2)))
}

/// The routes without a body, and the same route taking each of Marquee's messages as
/// its request (as a route added to the protos would), so that every kind of field is
/// sent as a query parameter: repeated strings, bools, doubles, int64, timestamps.
fn query_routes() -> impl Strategy<Value = (Arc<Route>, DynamicMessage)> {
    let routes = routes_with(|b| *b == BodyRule::None);
    let list = routes
        .iter()
        .find(|r| r.template.as_str() == "/v1/events")
        .cloned()
        .expect("GET /v1/events");
    let synthetic = marquee_messages()
        .into_iter()
        .map(|input| {
            let mut synthetic = Route::clone(&list);
            synthetic.input = input;
            Arc::new(synthetic)
        })
        .collect();
    // Half the cases on the real routes, half on the synthetic ones.
    prop_oneof![route_and_message(routes), route_and_message(synthetic)]
}

/// What a client types for one scalar in a query string, `None` for what has no query form.
fn query_text(field: &FieldDescriptor, value: &Value) -> Option<String> {
    Some(match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or_else(|| n.to_string(), |v| v.name().to_owned()),
            _ => return None,
        },
        Value::Message(m) if m.descriptor().full_name() == TIMESTAMP => {
            let seconds = m.get_field_by_name("seconds")?.as_i64()?;
            let nanos = m.get_field_by_name("nanos")?.as_i32()?;
            chrono::DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)?
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }
        _ => return None,
    })
}

/// Any JSON, up to a few levels deep.
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        any::<String>().prop_map(Json::String),
        "-?[0-9]{1,25}(\\.[0-9]{0,3})?(e-?[0-9]{1,3})?".prop_map(Json::String),
        "[A-Z_]{1,24}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,14}(Z|[+-][0-9]{2}:[0-9]{2})?"
            .prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|entries| Json::Object(entries.into_iter().collect())),
        ]
    })
}

/// A JSON object of `desc`'s field names (proto or JSON, and an unknown one now and
/// then) with any values, nested objects following the nested message's fields.
fn shaped_json(desc: MessageDescriptor, depth: u32) -> BoxedStrategy<Json> {
    let mut keys: Vec<(String, Option<MessageDescriptor>)> = Vec::new();
    for field in desc.fields() {
        let nested = match field.kind() {
            Kind::Message(m) if depth > 0 => Some(m),
            _ => None,
        };
        keys.push((field.name().to_owned(), nested.clone()));
        keys.push((field.json_name().to_owned(), nested));
    }
    keys.push(("unknownField".to_owned(), None));
    let entry = prop::sample::select(keys).prop_flat_map(move |(key, nested)| {
        let value = match nested {
            Some(m) => prop_oneof![shaped_json(m, depth - 1), any_json()].boxed(),
            None => any_json().boxed(),
        };
        (Just(key), value)
    });
    prop::collection::vec(entry, 0..5)
        .prop_map(|entries| Json::Object(entries.into_iter().collect()))
        .boxed()
}

/// Any query string: raw text, or `key=value` pairs of the input's field paths.
fn any_query(desc: MessageDescriptor) -> impl Strategy<Value = Option<String>> {
    let mut keys: Vec<String> = vec!["x".to_owned()];
    for field in desc.fields() {
        keys.push(field.name().to_owned());
        keys.push(field.json_name().to_owned());
        if let Kind::Message(m) = field.kind() {
            for inner in m.fields() {
                keys.push(format!("{}.{}", field.name(), inner.name()));
            }
        }
    }
    let pair = (
        prop::sample::select(keys),
        prop_oneof![
            any::<String>(),
            "-?[0-9]{1,22}",
            "true|false|1|0|NaN|-Infinity|[A-Z_]{2,20}",
        ],
    );
    prop_oneof![
        Just(None),
        any::<String>().prop_map(Some),
        prop::collection::vec(pair, 0..5).prop_map(|pairs| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                query.append_pair(&k, &v);
            }
            Some(query.finish())
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What a client reads decodes back to the message the service sent, and is in
    /// the canonical proto3 JSON forms.
    #[test]
    fn a_response_is_canonical_json_that_decodes_to_the_same_message(message in any_marquee_message()) {
        let desc = message.descriptor();
        let bytes = response_json(&message, None);
        prop_assert!(bytes.is_ok(), "{}: {bytes:?}", desc.full_name());
        let bytes = bytes.unwrap();
        let json: Json = serde_json::from_slice(&bytes).expect("response_json writes JSON");
        let canonical = check_canonical(&desc, &json, desc.name());
        prop_assert!(canonical.is_ok(), "{}: {}", canonical.unwrap_err(), json);
        let back = DynamicMessage::deserialize(desc.clone(), &mut serde_json::Deserializer::from_slice(&bytes));
        prop_assert!(back.is_ok(), "{json} does not decode: {back:?}");
        prop_assert_eq!(normalized(&back.unwrap()), normalized(&message), "through {}", json);
    }

    /// A client that sends back canonical JSON as the body of a `body: "*"` route
    /// (path variables bound to the message's own values) gets the same message.
    #[test]
    fn a_canonical_json_body_builds_the_same_request(
        (route, message) in route_and_message(routes_with(|b| *b == BodyRule::Whole))
    ) {
        let body = response_json(&message, None).expect("serializes");
        let bindings: Vec<(String, String)> = route
            .template
            .variables()
            .map(|v| (v.to_owned(), path_text(&message, v).unwrap_or_default()))
            .collect();
        let built = build_request(&route, &bindings, None, &body);
        prop_assert!(built.is_ok(), "{}: {} refused: {:?}", route.name(), String::from_utf8_lossy(&body), built);
        prop_assert_eq!(normalized(&built.unwrap()), normalized(&message));
    }

    /// A route without a body takes every scalar, list of scalars and timestamp of its
    /// request from the query string, under either name (any message as the request).
    #[test]
    fn a_query_string_builds_the_same_request(
        (route, message) in query_routes(),
        json_names in any::<bool>(),
    ) {
        // The message as a query string can carry it: top-level fields only.
        let mut expected = DynamicMessage::new(route.input.clone());
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let bound: Vec<String> = route.template.variables().map(str::to_owned).collect();
        for (field, value) in message.fields() {
            if bound.iter().any(|b| b == field.name()) {
                continue;
            }
            let key = if json_names { field.json_name() } else { field.name() };
            let items: Vec<&Value> = match value {
                Value::List(items) => items.iter().collect(),
                other => vec![other],
            };
            let texts: Option<Vec<String>> = items.iter().map(|v| query_text(&field, v)).collect();
            let Some(texts) = texts else { continue };
            for text in &texts {
                query.append_pair(key, text);
            }
            expected.set_field(&field, value.clone());
        }
        let bindings: Vec<(String, String)> = bound
            .iter()
            .map(|v| (v.clone(), path_text(&message, v).unwrap_or_default()))
            .collect();
        for (path, value) in &bindings {
            expected.set_field_by_name(path, Value::String(value.clone()));
        }
        let query = query.finish();
        let built = build_request(&route, &bindings, Some(&query), b"");
        prop_assert!(built.is_ok(), "{}?{} refused: {:?}", route.name(), query, built);
        prop_assert_eq!(normalized(&built.unwrap()), normalized(&expected), "from ?{}", query);
    }

    /// Whatever a client sends (any bytes or JSON as the body, any query string, any
    /// path values) builds a message or is a `BadRequest`, answered 400; never a panic.
    #[test]
    fn any_request_builds_or_is_a_bad_request(
        (route, body, query, values) in prop::sample::select(TABLE.routes().to_vec()).prop_flat_map(|route| {
            let body = prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                any_json().prop_map(|j| j.to_string().into_bytes()),
                shaped_json(route.input.clone(), 2).prop_map(|j| j.to_string().into_bytes()),
            ];
            let values = prop::collection::vec(
                prop_oneof![any::<String>(), "-?[0-9]{1,22}", "[A-Z_]{2,20}"],
                route.template.variables().count(),
            );
            (Just(route.clone()), body, any_query(route.input.clone()), values)
        })
    ) {
        let bindings: Vec<(String, String)> = route
            .template
            .variables()
            .map(str::to_owned)
            .zip(values)
            .collect();
        if let Err(BadRequest(message)) = build_request(&route, &bindings, query.as_deref(), &body) {
            prop_assert!(!message.is_empty(), "a 400 says why");
        }
    }

    /// 64-bit integers are taken from text exactly as written, as JSON strings.
    #[test]
    fn int64_text_is_coerced_to_the_same_decimal_string(n in any::<i64>(), junk in "\\PC{0,4}") {
        let money = TABLE.pool().get_message_by_name("marquee.type.v1.Money").expect("money");
        let amount = money.get_field_by_name("amount_minor").expect("amount");
        prop_assert_eq!(coerce(&amount, &n.to_string()), Ok(Json::String(n.to_string())));
        let raw = format!("{n}{junk}");
        prop_assert_eq!(coerce(&amount, &raw).is_ok(), raw.parse::<i64>().is_ok(), "{:?}", raw);
    }

    /// A scalar from a path or query string is accepted exactly when it is a value of
    /// the field's type, whatever the text.
    #[test]
    fn coercion_accepts_exactly_the_values_of_the_type(raw in prop_oneof![any::<String>(), "-?[0-9]{1,12}(\\.[0-9]{1,3})?", "true|false|1|0|NaN|Infinity|WALLET|CASH"]) {
        let pool = TABLE.pool();
        let list = pool.get_message_by_name("marquee.booking.v1.ListEventsRequest").expect("list");
        let page_size = list.get_field_by_name("page_size").expect("page_size");
        prop_assert_eq!(coerce(&page_size, &raw).is_ok(), raw.parse::<i32>().is_ok(), "{:?}", raw);
        if let Ok(n) = raw.parse::<i32>() {
            prop_assert_eq!(coerce(&page_size, &raw), Ok(Json::from(n)));
        }
        let create = pool.get_message_by_name("marquee.booking.v1.CreateBookingRequest").expect("create");
        let method = create.get_field_by_name("payment_method").expect("payment_method");
        let is_value = raw.parse::<i32>().is_ok() || raw == "WALLET" || raw == "PAYMENT_METHOD_UNSPECIFIED";
        prop_assert_eq!(coerce(&method, &raw).is_ok(), is_value, "{:?}", raw);
        let search = pool.get_message_by_name("marquee.search.v1.SearchEventsRequest").expect("search");
        let bookable = search.get_field_by_name("bookable").expect("bookable");
        let boolean = matches!(raw.as_str(), "true" | "false" | "1" | "0");
        prop_assert_eq!(coerce(&bookable, &raw).is_ok(), boolean, "{:?}", raw);
        let seat = pool.get_message_by_name("marquee.booking.v1.SeatInput").expect("seat");
        let x = seat.get_field_by_name("x").expect("x");
        let number = matches!(raw.as_str(), "NaN" | "Infinity" | "-Infinity") || raw.parse::<f64>().is_ok_and(f64::is_finite);
        prop_assert_eq!(coerce(&x, &raw).is_ok(), number, "{:?}", raw);
    }
}

// ------------------------------------------------------------ equivalence with the old route
//
// `json` and `direct` replaced the `serde_json::Value` routes (`response_json_value`,
// `build_request_merged`), which stay as the reference: responses must be the same
// bytes, and whatever `direct` builds must be what the merged route builds.

/// The kinds of field Marquee's own protos do not use yet, so that the response writer
/// is held to the old bytes on them too: bytes, floats, maps (string, integer and bool
/// keys), a oneof, proto3 `optional`, and well-known types besides Timestamp.
static EXTRA: LazyLock<DescriptorPool> = LazyLock::new(|| {
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{
        DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
        FileDescriptorProto, MessageOptions, OneofDescriptorProto,
    };

    fn camel(name: &str) -> String {
        let mut out = String::new();
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }
    fn field(
        name: &str,
        number: i32,
        ty: Type,
        type_name: &str,
        repeated: bool,
    ) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.to_owned()),
            json_name: Some(camel(name)),
            number: Some(number),
            r#type: Some(ty as i32),
            type_name: (!type_name.is_empty()).then(|| type_name.to_owned()),
            label: Some(if repeated {
                Label::Repeated
            } else {
                Label::Optional
            } as i32),
            ..Default::default()
        }
    }
    fn entry(name: &str, key: Type, value: Type, value_type: &str) -> DescriptorProto {
        DescriptorProto {
            name: Some(name.to_owned()),
            field: vec![
                field("key", 1, key, "", false),
                field("value", 2, value, value_type, false),
            ],
            options: Some(MessageOptions {
                map_entry: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    let inner = DescriptorProto {
        name: Some("Inner".to_owned()),
        field: vec![
            field("name", 1, Type::String, "", false),
            field("n", 2, Type::Int64, "", false),
            field("child", 3, Type::Message, ".transcode.test.Inner", false),
            field("at", 4, Type::Message, ".google.protobuf.Timestamp", false),
        ],
        ..Default::default()
    };
    fn in_oneof(mut f: FieldDescriptorProto, index: i32, synthetic: bool) -> FieldDescriptorProto {
        f.oneof_index = Some(index);
        f.proto3_optional = synthetic.then_some(true);
        f
    }
    let everything = DescriptorProto {
        name: Some("Everything".to_owned()),
        field: vec![
            field("d", 1, Type::Double, "", false),
            field("f", 2, Type::Float, "", false),
            field("i64", 3, Type::Int64, "", false),
            field("u64", 4, Type::Uint64, "", false),
            field("i32", 5, Type::Int32, "", false),
            field("u32", 6, Type::Uint32, "", false),
            field("b", 7, Type::Bool, "", false),
            field("s", 8, Type::String, "", false),
            field("by", 9, Type::Bytes, "", false),
            field("color", 10, Type::Enum, ".transcode.test.Color", false),
            field("inner", 11, Type::Message, ".transcode.test.Inner", false),
            field("inners", 12, Type::Message, ".transcode.test.Inner", true),
            field(
                "by_name",
                13,
                Type::Message,
                ".transcode.test.Everything.ByNameEntry",
                true,
            ),
            field(
                "by_number",
                14,
                Type::Message,
                ".transcode.test.Everything.ByNumberEntry",
                true,
            ),
            field(
                "by_flag",
                15,
                Type::Message,
                ".transcode.test.Everything.ByFlagEntry",
                true,
            ),
            in_oneof(field("text", 16, Type::String, "", false), 0, false),
            in_oneof(
                field("nested", 17, Type::Message, ".transcode.test.Inner", false),
                0,
                false,
            ),
            in_oneof(field("maybe", 18, Type::Int32, "", false), 1, true),
            field("at", 19, Type::Message, ".google.protobuf.Timestamp", false),
            field(
                "took",
                20,
                Type::Message,
                ".google.protobuf.Duration",
                false,
            ),
            field("meta", 21, Type::Message, ".google.protobuf.Struct", false),
            field(
                "wrapped",
                22,
                Type::Message,
                ".google.protobuf.Int64Value",
                false,
            ),
            field(
                "f_wrapped",
                23,
                Type::Message,
                ".google.protobuf.FloatValue",
                false,
            ),
            field(
                "nothing",
                24,
                Type::Message,
                ".google.protobuf.Empty",
                false,
            ),
            field(
                "mask",
                25,
                Type::Message,
                ".google.protobuf.FieldMask",
                false,
            ),
            field("fs", 26, Type::Float, "", true),
            field(
                "colors",
                27,
                Type::Message,
                ".transcode.test.Everything.ColorsEntry",
                true,
            ),
            field("blobs", 28, Type::Bytes, "", true),
            field("value", 29, Type::Message, ".google.protobuf.Value", false),
            field("Upper_Case", 30, Type::String, "", false),
        ],
        nested_type: vec![
            entry(
                "ByNameEntry",
                Type::String,
                Type::Message,
                ".transcode.test.Inner",
            ),
            entry("ByNumberEntry", Type::Int32, Type::String, ""),
            entry("ByFlagEntry", Type::Bool, Type::Double, ""),
            entry(
                "ColorsEntry",
                Type::Int64,
                Type::Enum,
                ".transcode.test.Color",
            ),
        ],
        oneof_decl: vec![
            OneofDescriptorProto {
                name: Some("choice".to_owned()),
                ..Default::default()
            },
            OneofDescriptorProto {
                name: Some("_maybe".to_owned()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let color = EnumDescriptorProto {
        name: Some("Color".to_owned()),
        value: ["COLOR_UNSPECIFIED", "RED", "GREEN"]
            .iter()
            .zip(0..)
            .map(|(name, number)| EnumValueDescriptorProto {
                name: Some((*name).to_owned()),
                number: Some(number),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("transcode_test.proto".to_owned()),
        package: Some("transcode.test".to_owned()),
        dependency: [
            "google/protobuf/timestamp.proto",
            "google/protobuf/duration.proto",
            "google/protobuf/struct.proto",
            "google/protobuf/wrappers.proto",
            "google/protobuf/empty.proto",
            "google/protobuf/field_mask.proto",
        ]
        .map(str::to_owned)
        .to_vec(),
        message_type: vec![inner, everything],
        enum_type: vec![color],
        syntax: Some("proto3".to_owned()),
        ..Default::default()
    };
    let mut pool = DescriptorPool::global();
    pool.add_file_descriptor_proto(file)
        .expect("test descriptor");
    pool
});

/// A message shown by type and JSON: the `Debug` of a recursive type's descriptor
/// (`Inner.child`) never ends.
#[derive(Clone)]
struct Shown(DynamicMessage);

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json =
            response_json_value(&self.0, None).map(|b| String::from_utf8_lossy(&b).into_owned());
        write!(f, "{} {json:?}", self.0.descriptor().full_name())
    }
}

/// Any response: of Marquee's messages or of the test messages, NaN and infinities
/// included.
fn any_response() -> impl Strategy<Value = Shown> {
    let mut descs = marquee_messages();
    descs.extend(
        EXTRA
            .all_messages()
            .filter(|m| m.full_name().starts_with("transcode.test.")),
    );
    Union::new(
        descs
            .into_iter()
            .map(|d| message_of(d, 2, false).prop_map(Shown)),
    )
}

/// Equal, NaN fields included (`NaN != NaN` as a `Value`, not as bytes).
fn same(a: &DynamicMessage, b: &DynamicMessage) -> bool {
    a == b || a.encode_to_vec() == b.encode_to_vec()
}

fn same_result(
    a: &Result<DynamicMessage, BadRequest>,
    b: &Result<DynamicMessage, BadRequest>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => same(a, b),
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// A request body of `message`: canonical JSON under JSON or proto names, defaults
/// written or not.
fn body_of(message: &DynamicMessage, proto_names: bool, defaults: bool) -> Vec<u8> {
    let options = SerializeOptions::new()
        .use_proto_field_name(proto_names)
        .skip_default_fields(!defaults);
    let mut out = Vec::new();
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)
        .expect("serializes");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The response writer's bytes are the old ones, for the whole message and for one
    /// field of it as `response_body` (by proto or JSON name, or a name it lacks).
    #[test]
    fn response_bytes_are_the_old_bytes(Shown(message) in any_response(), pick in any::<prop::sample::Index>(), how in 0..3u8) {
        let new = response_json(&message, None);
        let old = response_json_value(&message, None);
        prop_assert_eq!(
            new.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            old.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            "{}", message.descriptor().full_name()
        );
        let desc = message.descriptor();
        let fields: Vec<FieldDescriptor> = desc.fields().collect();
        let name = if fields.is_empty() || how == 2 {
            "noSuchField".to_owned()
        } else {
            let field = pick.get(&fields);
            if how == 0 { field.name().to_owned() } else { field.json_name().to_owned() }
        };
        let new = response_json(&message, Some(&name));
        let old = response_json_value(&message, Some(&name));
        prop_assert_eq!(
            new.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            old.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            "{} response_body {}", message.descriptor().full_name(), name
        );
    }

    /// Whatever request a client sends (a canonical body of the route's message under
    /// either naming, with path values that agree with it or not; a body of known and
    /// unknown field names with any values; any bytes; any query string), `direct`
    /// builds only what the merged route builds, and `build_request` answers as the
    /// merged route does, refusals word for word.
    #[test]
    fn direct_requests_are_the_merged_ones(
        (route, body, query, values) in prop::sample::select(TABLE.routes().to_vec()).prop_flat_map(|route| {
            let body = prop_oneof![
                3 => (message(route.input.clone(), 2), any::<bool>(), any::<bool>())
                    .prop_map(|(m, proto_names, defaults)| body_of(&m, proto_names, defaults)),
                2 => shaped_json(route.input.clone(), 2).prop_map(|j| j.to_string().into_bytes()),
                1 => prop::collection::vec(any::<u8>(), 0..64),
                1 => any_json().prop_map(|j| j.to_string().into_bytes()),
                1 => Just(Vec::new()),
            ];
            let values = prop::collection::vec(
                prop_oneof![any::<String>(), "[a-z0-9-]{1,36}", "-?[0-9]{1,22}", "[A-Z_]{2,20}"],
                route.template.variables().count(),
            );
            (Just(route.clone()), body, any_query(route.input.clone()), values)
        })
    ) {
        let bindings: Vec<(String, String)> = route
            .template
            .variables()
            .map(str::to_owned)
            .zip(values)
            .collect();
        let merged = build_request_merged(&route, &bindings, query.as_deref(), &body);
        if let Some(built) = direct::build(&route, &bindings, query.as_deref(), &body) {
            prop_assert!(
                merged.as_ref().is_ok_and(|m| same(m, &built)),
                "{}: {} ?{:?}: direct {built:?}, merged {merged:?}",
                route.name(), String::from_utf8_lossy(&body), query
            );
        }
        let answer = build_request(&route, &bindings, query.as_deref(), &body);
        prop_assert!(same_result(&answer, &merged), "{answer:?} vs {merged:?}");
    }

    /// The common requests take the direct route: a `body: "*"` route given a body of
    /// its message (either naming) and its path values, and a route without a body
    /// given its path values and a query string of scalars and timestamps (any message
    /// as the request), each with what the merged route builds.
    #[test]
    fn well_formed_requests_are_built_directly(
        (route, message) in route_and_message(routes_with(|b| *b == BodyRule::Whole)),
        (query_route, query_message) in query_routes(),
        proto_names in any::<bool>(),
        defaults in any::<bool>(),
    ) {
        let body = body_of(&message, proto_names, defaults);
        let bindings: Vec<(String, String)> = route
            .template
            .variables()
            .map(|v| (v.to_owned(), format!("{}-from-path", path_text(&message, v).unwrap_or_default())))
            .collect();
        let built = direct::build(&route, &bindings, None, &body);
        prop_assert!(built.is_some(), "{}: {} not built directly", route.name(), String::from_utf8_lossy(&body));
        let merged = build_request_merged(&route, &bindings, None, &body);
        prop_assert!(merged.as_ref().is_ok_and(|m| built.as_ref().is_some_and(|b| same(m, b))), "{merged:?}");

        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (field, value) in query_message.fields() {
            let key = if proto_names { field.name() } else { field.json_name() };
            let items: Vec<&Value> = match value {
                Value::List(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in items {
                if let Some(text) = query_text(&field, item) {
                    query.append_pair(key, &text);
                }
            }
        }
        let query = query.finish();
        let bindings: Vec<(String, String)> = query_route
            .template
            .variables()
            .map(|v| (v.to_owned(), path_text(&query_message, v).unwrap_or_default()))
            .collect();
        let built = direct::build(&query_route, &bindings, Some(&query), b"");
        prop_assert!(built.is_some(), "{}?{} not built directly", query_route.name(), query);
        let merged = build_request_merged(&query_route, &bindings, Some(&query), b"");
        prop_assert!(merged.as_ref().is_ok_and(|m| built.as_ref().is_some_and(|b| same(m, b))), "?{query}: {merged:?}");
    }
}
