//! JSON ⇄ protobuf for one route: the request message from body, path variables and
//! query string; the response as canonical proto3 JSON.
//!
//! The rules are those of the merged route (`build_request_merged`): everything
//! gathered into one JSON object (body, then path variables, then query parameters,
//! each coerced by field type) and deserialized once, so nested fields, enums, 64-bit
//! integers and well-known types all follow prost-reflect's proto3 JSON rules, and
//! unknown body fields are refused. The usual requests skip that tree: `direct`
//! deserializes the body from its bytes and sets path and query values on the message,
//! and hands anything else (and every refusal, for its text) back to the merged route.
//! Responses are written straight to bytes by `json`, byte for byte what the
//! `serde_json::Value` route (`response_json_value`) writes.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions,
};
use serde_json::{Map, Value as Json};

use crate::routes::{BodyRule, Route, resolve_field_path};

/// A client mistake in the request; answered with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

impl BadRequest {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Builds the request message of `route`.
///
/// `body` is the raw request body (ignored unless the route has a body rule), `query`
/// the raw query string. Unknown query parameters are ignored, as grpc-gateway does.
pub fn build_request(
    route: &Route,
    bindings: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, BadRequest> {
    match direct::build(route, bindings, query, body) {
        Some(message) => Ok(message),
        None => build_request_merged(route, bindings, query, body),
    }
}

/// [`build_request`] through one JSON object of body, path variables and query
/// parameters: the reference for every rule, and the route of whatever [`direct`]
/// does not build (refusals, `body: "field"`, values under oneofs).
fn build_request_merged(
    route: &Route,
    bindings: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, BadRequest> {
    let mut object = match &route.body {
        BodyRule::None => Map::new(),
        BodyRule::Whole => parse_body_object(body)?,
        BodyRule::Field(field) => {
            let mut object = Map::new();
            if !is_blank(body) {
                let value: Json = serde_json::from_slice(body)
                    .map_err(|e| BadRequest::new(format!("malformed json body: {e}")))?;
                object.insert(field.clone(), value);
            }
            object
        }
    };

    let mut bound: Vec<FieldDescriptor> = Vec::new();
    for (path, raw) in bindings {
        let field = resolve_field_path(&route.input, path)
            .ok_or_else(|| BadRequest::new(format!("unknown path field {path}")))?;
        let value = coerce(&field, raw)
            .map_err(|reason| BadRequest::new(format!("path field {path}: {reason}")))?;
        set_path(&mut object, &route.input, path, value, false)?;
        bound.push(field);
    }

    if route.body != BodyRule::Whole
        && let Some(query) = query
    {
        for (key, raw) in url::form_urlencoded::parse(query.as_bytes()) {
            let Some(field) = resolve_field_path(&route.input, &key) else {
                continue;
            };
            if field.is_map() || bound.contains(&field) {
                continue;
            }
            if let BodyRule::Field(body_field) = &route.body
                && key
                    .split('.')
                    .next()
                    .is_some_and(|first| is_field(&route.input, first, body_field))
            {
                continue;
            }
            let value = coerce(&field, &raw)
                .map_err(|reason| BadRequest::new(format!("query parameter {key}: {reason}")))?;
            set_path(&mut object, &route.input, &key, value, field.is_list())?;
        }
    }

    let options = DeserializeOptions::new().deny_unknown_fields(true);
    DynamicMessage::deserialize_with_options(route.input.clone(), Json::Object(object), &options)
        .map_err(|e| BadRequest::new(format!("invalid request: {e}")))
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

fn parse_body_object(body: &[u8]) -> Result<Map<String, Json>, BadRequest> {
    if is_blank(body) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(_) => Err(BadRequest::new("request body must be a json object")),
        Err(e) => Err(BadRequest::new(format!("malformed json body: {e}"))),
    }
}

fn is_field(message: &MessageDescriptor, name: &str, proto_name: &str) -> bool {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
        .is_some_and(|f| f.name() == proto_name)
}

/// Sets `value` at the dotted field `path` of the JSON object, replacing whatever the
/// body held there under either the proto or the JSON name (path variables win over
/// the body). With `append`, repeated query parameters accumulate into a list.
fn set_path(
    object: &mut Map<String, Json>,
    message: &MessageDescriptor,
    path: &str,
    value: Json,
    append: bool,
) -> Result<(), BadRequest> {
    let mut object = object;
    let mut message = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = message
            .get_field_by_name(part)
            .or_else(|| message.get_field_by_json_name(part))
            .ok_or_else(|| BadRequest::new(format!("unknown field {path}")))?;
        // Keep one key per field: move a JSON-named entry under the proto name.
        if field.json_name() != field.name()
            && let Some(existing) = object.remove(field.json_name())
        {
            object.insert(field.name().to_owned(), existing);
        }
        let key = field.name().to_owned();
        if parts.peek().is_none() {
            if append {
                match object.get_mut(&key) {
                    Some(Json::Array(items)) => items.push(value),
                    _ => {
                        object.insert(key, Json::Array(vec![value]));
                    }
                }
            } else {
                // The path wins, but what the body said there must still be well typed.
                if let Some(existing) = object.get(&key).filter(|v| !v.is_null()) {
                    let mut only = Map::new();
                    only.insert(key.clone(), existing.clone());
                    DynamicMessage::deserialize(message.clone(), Json::Object(only))
                        .map_err(|e| BadRequest::new(format!("invalid request: {e}")))?;
                }
                object.insert(key, value);
            }
            return Ok(());
        }
        let Kind::Message(next) = field.kind() else {
            return Err(BadRequest::new(format!("{path}: {part} is not a message")));
        };
        message = next;
        let slot = object
            .entry(key)
            .or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        object = match slot {
            Json::Object(inner) => inner,
            _ => return Err(BadRequest::new(format!("{path}: {part} is not an object"))),
        };
    }
    Ok(())
}

/// A path or query string value as the JSON the field's type expects.
pub fn coerce(field: &FieldDescriptor, raw: &str) -> Result<Json, String> {
    let invalid = || format!("invalid value {raw:?} for a {:?} field", field.kind());
    Ok(match field.kind() {
        Kind::String | Kind::Bytes => Json::String(raw.to_owned()),
        Kind::Bool => match raw {
            "true" | "1" => Json::Bool(true),
            "false" | "0" => Json::Bool(false),
            _ => return Err(invalid()),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            let n: i32 = raw.parse().map_err(|_| invalid())?;
            Json::from(n)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            let n: u32 = raw.parse().map_err(|_| invalid())?;
            Json::from(n)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            raw.parse::<i64>().map_err(|_| invalid())?;
            Json::String(raw.to_owned())
        }
        Kind::Uint64 | Kind::Fixed64 => {
            raw.parse::<u64>().map_err(|_| invalid())?;
            Json::String(raw.to_owned())
        }
        Kind::Float | Kind::Double => match raw {
            "NaN" | "Infinity" | "-Infinity" => Json::String(raw.to_owned()),
            _ => {
                let n: f64 = raw.parse().map_err(|_| invalid())?;
                serde_json::Number::from_f64(n)
                    .map(Json::Number)
                    .ok_or_else(invalid)?
            }
        },
        Kind::Enum(desc) => {
            if let Ok(n) = raw.parse::<i32>() {
                Json::from(n)
            } else if desc.get_value_by_name(raw).is_some() {
                Json::String(raw.to_owned())
            } else {
                return Err(format!("{raw:?} is not a value of {}", desc.full_name()));
            }
        }
        // Well-known types (Timestamp, Duration, FieldMask, wrappers) take strings.
        Kind::Message(_) => Json::String(raw.to_owned()),
    })
}

/// Canonical proto3 JSON of a response: lowerCamel names, enums as names, 64-bit
/// integers as strings, and every field present: zero scalars and empty lists as
/// themselves, unset message fields as `null` (grpc-gateway's `EmitUnpopulated`).
pub fn response_json(
    message: &DynamicMessage,
    response_body: Option<&str>,
) -> Result<Vec<u8>, String> {
    let descriptor = message.descriptor();
    if json::is_plain(&descriptor) {
        // A failure (a Timestamp out of range) is reported as the Value route reports
        // it: that route meets the fields in number order, not in key order.
        json::write(message, &descriptor, response_body)
            .or_else(|_| response_json_value(message, response_body))
    } else {
        response_json_value(message, response_body)
    }
}

/// [`response_json`] through a `serde_json::Value` of the whole message: what the
/// gateway did before [`json`], kept for a well-known type as the whole response (its
/// JSON need not be an object) and as the reference the tests compare with.
fn response_json_value(
    message: &DynamicMessage,
    response_body: Option<&str>,
) -> Result<Vec<u8>, String> {
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("serializing response: {e}"))?;
    let descriptor = message.descriptor();
    fill_unpopulated(&descriptor, &mut value);
    let value = match response_body {
        None => value,
        Some(field) => {
            let json_name = descriptor
                .get_field_by_name(field)
                .map(|f| f.json_name().to_owned())
                .unwrap_or_else(|| field.to_owned());
            match value {
                Json::Object(mut object) => object.remove(&json_name).unwrap_or(Json::Null),
                other => other,
            }
        }
    };
    serde_json::to_vec(&value).map_err(|e| format!("serializing response: {e}"))
}

/// Adds `null` for every unset singular message field (outside oneofs), recursively.
/// Well-known types keep their own JSON forms.
fn fill_unpopulated(message: &MessageDescriptor, value: &mut Json) {
    if message.full_name().starts_with("google.protobuf.") {
        return;
    }
    let Json::Object(object) = value else {
        return;
    };
    for field in message.fields() {
        let Some(current) = object.get_mut(field.json_name()) else {
            if field.containing_oneof().is_none() {
                object.insert(field.json_name().to_owned(), Json::Null);
            }
            continue;
        };
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if field.is_map() {
            if let (Kind::Message(value_type), Json::Object(entries)) =
                (inner.map_entry_value_field().kind(), current)
            {
                entries
                    .values_mut()
                    .for_each(|v| fill_unpopulated(&value_type, v));
            }
        } else if field.is_list() {
            if let Json::Array(items) = current {
                items.iter_mut().for_each(|v| fill_unpopulated(&inner, v));
            }
        } else {
            fill_unpopulated(&inner, current);
        }
    }
}

mod direct;
mod json;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use http::Method;
    use prost_reflect::Value;

    use super::*;
    use crate::routes::RouteTable;

    fn route(table: &RouteTable, method: Method, template: &str) -> std::sync::Arc<Route> {
        table
            .find(&method, template)
            .unwrap_or_else(|| panic!("no route {method} {template}"))
    }

    fn table() -> RouteTable {
        RouteTable::marquee().expect("route table")
    }

    fn field(message: &DynamicMessage, name: &str) -> Value {
        message
            .get_field_by_name(name)
            .expect("field exists")
            .into_owned()
    }

    #[test]
    fn body_then_path_variables() {
        let table = table();
        let hold = route(&table, Method::POST, "/v1/events/{event_id}/holds");
        let bindings = vec![("event_id".to_owned(), "e 1".to_owned())];
        // lowerCamel and proto names are both accepted; the path wins over the body.
        let body = br#"{"seatIds": ["s1", "s2"], "event_id": "from-body"}"#;
        let message = build_request(&hold, &bindings, None, body).expect("builds");
        assert_eq!(field(&message, "event_id"), Value::String("e 1".into()));
        assert_eq!(
            field(&message, "seat_ids"),
            Value::List(vec![Value::String("s1".into()), Value::String("s2".into())])
        );
        // Still, what the body holds there must be of the field's type.
        for bad in [&br#"{"eventId": 5}"#[..], br#"{"event_id": {"a": 1}}"#] {
            let refused = build_request(&hold, &bindings, None, bad).expect_err("refused");
            assert!(refused.0.contains("invalid request"), "{refused}");
        }
        let null = build_request(&hold, &bindings, None, br#"{"eventId": null}"#).expect("builds");
        assert_eq!(field(&null, "event_id"), Value::String("e 1".into()));
        let camel = br#"{"eventId": "from-body"}"#;
        let message = build_request(&hold, &bindings, None, camel).expect("builds");
        assert_eq!(field(&message, "event_id"), Value::String("e 1".into()));
    }

    #[test]
    fn nested_path_variables_merge_into_the_body() {
        let table = table();
        let mut synthetic =
            Route::clone(&route(&table, Method::POST, "/v1/events/{event_id}/holds"));
        synthetic.input = table
            .pool()
            .get_message_by_name("marquee.booking.v1.SectionInput")
            .expect("section");
        synthetic.template =
            crate::template::PathTemplate::parse("/v1/sections/{price.currency}").expect("parses");
        let bindings = vec![("price.currency".to_owned(), "KRW".to_owned())];
        let body = br#"{"name": "A", "price": {"amountMinor": "5000"}}"#;
        let message = build_request(&synthetic, &bindings, None, body).expect("builds");
        let json: Json =
            serde_json::from_slice(&response_json(&message, None).expect("ok")).expect("json");
        assert_eq!(
            json["price"],
            serde_json::json!({"amountMinor": "5000", "currency": "KRW"})
        );
        assert_eq!(json["name"], "A");
    }

    #[test]
    fn empty_body_is_empty_message_and_bad_bodies_are_400() {
        let table = table();
        let create = route(&table, Method::POST, "/v1/bookings");
        let message = build_request(&create, &[], None, b"").expect("empty body is fine");
        assert_eq!(
            message.descriptor().full_name(),
            "marquee.booking.v1.CreateBookingRequest"
        );
        assert!(build_request(&create, &[], None, b"{").is_err());
        assert!(build_request(&create, &[], None, b"[1]").is_err());
        assert!(build_request(&create, &[], None, br#"{"nope": 1}"#).is_err());
        assert!(build_request(&create, &[], None, br#"{"paymentMethod": "BITCOIN"}"#).is_err());
        let ok = build_request(
            &create,
            &[],
            None,
            br#"{"holdId": "h", "paymentMethod": "WALLET"}"#,
        )
        .expect("ok");
        assert_eq!(field(&ok, "payment_method"), Value::EnumNumber(1));
        // A card: the method by name and the payment provider's token, in lowerCamel
        // or in the proto's own name.
        for body in [
            &br#"{"holdId": "h", "paymentMethod": "CARD", "cardToken": "tok_approve"}"#[..],
            br#"{"holdId": "h", "payment_method": "CARD", "card_token": "tok_approve"}"#,
        ] {
            let card = build_request(&create, &[], None, body).expect("card");
            assert_eq!(field(&card, "payment_method"), Value::EnumNumber(2));
            assert_eq!(
                field(&card, "card_token"),
                Value::String("tok_approve".into())
            );
        }
        assert!(build_request(&create, &[], None, br#"{"cardToken": 42}"#).is_err());
    }

    #[test]
    fn query_parameters_are_coerced_by_field_type() {
        let table = table();
        let list = route(&table, Method::GET, "/v1/events");
        let message = build_request(
            &list,
            &[],
            Some("pageSize=20&page_token=abc%3D&unknown=1"),
            b"",
        )
        .expect("builds");
        assert_eq!(field(&message, "page_size"), Value::I32(20));
        assert_eq!(field(&message, "page_token"), Value::String("abc=".into()));
        let err = build_request(&list, &[], Some("page_size=twenty"), b"").expect_err("bad int");
        assert!(err.0.contains("page_size"), "{err}");
        assert!(build_request(&list, &[], Some("page_size=99999999999"), b"").is_err());
        // Bodies are ignored on routes without a body rule.
        assert!(build_request(&list, &[], None, b"not json").is_ok());
    }

    /// Found by `proptests`: serde_json's default float parser is off by one unit in the
    /// last place for about one double in ten written with 17 digits (1.4000000000000001
    /// came out as 1.4), so a seat's coordinates reached booking-svc changed.
    #[test]
    fn doubles_in_a_json_body_reach_the_service_exactly() {
        let table = table();
        let create = route(&table, Method::POST, "/v1/events");
        let body = br#"{"sections": [{"rows": [{"seats": [{"x": 1.4000000000000001, "y": 3.7416573867739413}]}]}]}"#;
        let message = build_request(&create, &[], None, body).expect("builds");
        let Value::List(sections) = field(&message, "sections") else {
            panic!("sections is a list");
        };
        let Value::Message(section) = &sections[0] else {
            panic!("a section");
        };
        let Value::List(rows) = field(section, "rows") else {
            panic!("rows is a list");
        };
        let Value::Message(row) = &rows[0] else {
            panic!("a row");
        };
        let Value::List(seats) = field(row, "seats") else {
            panic!("seats is a list");
        };
        let Value::Message(seat) = &seats[0] else {
            panic!("a seat");
        };
        assert_eq!(field(seat, "x"), Value::F64(1.4000000000000001));
        assert_ne!(field(seat, "x"), Value::F64(1.4));
        assert_eq!(field(seat, "y"), Value::F64(3.7416573867739413));
    }

    #[test]
    fn coercion_of_scalars_and_enums() {
        let table = table();
        let pool = table.pool();
        let money = pool
            .get_message_by_name("marquee.type.v1.Money")
            .expect("money");
        let amount = money.get_field_by_name("amount_minor").expect("amount");
        assert_eq!(coerce(&amount, "-5"), Ok(Json::String("-5".into())));
        assert!(coerce(&amount, "5.5").is_err());
        let booking = pool
            .get_message_by_name("marquee.booking.v1.CreateBookingRequest")
            .expect("req");
        let method = booking.get_field_by_name("payment_method").expect("field");
        assert_eq!(coerce(&method, "WALLET"), Ok(Json::String("WALLET".into())));
        assert_eq!(coerce(&method, "1"), Ok(Json::from(1)));
        assert!(coerce(&method, "CASH").is_err());
        let seat = pool
            .get_message_by_name("marquee.booking.v1.SeatInput")
            .expect("seat");
        let x = seat.get_field_by_name("x").expect("x");
        assert_eq!(coerce(&x, "1.5"), Ok(Json::from(1.5)));
        assert!(coerce(&x, "east").is_err());
    }

    #[test]
    fn responses_are_canonical_json_with_defaults() {
        let table = table();
        let pool = table.pool();
        let booking = pool
            .get_message_by_name("marquee.booking.v1.Booking")
            .expect("booking");
        let mut message = DynamicMessage::new(booking);
        message.set_field_by_name("booking_id", Value::String("b-1".into()));
        let json: Json =
            serde_json::from_slice(&response_json(&message, None).expect("serializes"))
                .expect("json");
        assert_eq!(json["bookingId"], "b-1");
        assert_eq!(json["status"], "BOOKING_STATUS_UNSPECIFIED");
        assert_eq!(json["seats"], Json::Array(vec![]));
        assert_eq!(json["cancelReason"], "");
        assert_eq!(json["total"], Json::Null);
        assert_eq!(json["createdAt"], Json::Null);

        let mut seat = DynamicMessage::new(
            pool.get_message_by_name("marquee.booking.v1.BookedSeat")
                .expect("seat"),
        );
        seat.set_field_by_name("seat_id", Value::String("s-1".into()));
        message.set_field_by_name("seats", Value::List(vec![Value::Message(seat)]));
        let json: Json =
            serde_json::from_slice(&response_json(&message, None).expect("serializes"))
                .expect("json");
        assert_eq!(json["seats"][0]["seatId"], "s-1");
        assert_eq!(json["seats"][0]["price"], Json::Null);
        let seats: Json =
            serde_json::from_slice(&response_json(&message, Some("seats")).expect("ok"))
                .expect("json");
        assert_eq!(seats[0]["seatId"], "s-1");

        let money = pool
            .get_message_by_name("marquee.type.v1.Money")
            .expect("money");
        let mut amount = DynamicMessage::new(money);
        amount.set_field_by_name("amount_minor", Value::I64(100_000));
        let json: Json =
            serde_json::from_slice(&response_json(&amount, None).expect("ok")).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"amountMinor": "100000", "currency": ""})
        );

        let empty = pool
            .get_message_by_name("google.protobuf.Empty")
            .expect("empty");
        assert_eq!(
            response_json(&DynamicMessage::new(empty), None).expect("ok"),
            b"{}"
        );
    }
}
