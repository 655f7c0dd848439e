//! An OpenAPI 3.0 document generated from the same route table the gateway serves.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use crate::routes::{BodyRule, Route, RouteTable, resolve_field_path};

const ERROR_SCHEMA: &str = "Status";

/// The document for every route of `table`.
pub fn document(table: &RouteTable) -> Json {
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut wanted: VecDeque<MessageDescriptor> = VecDeque::new();
    for route in table.routes() {
        let path = route
            .template
            .render_with(|field| json_path(&route.input, field));
        let operation = operation(route, &mut wanted);
        paths
            .entry(path)
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), operation);
    }

    let mut schemas = Map::new();
    let mut seen = BTreeSet::new();
    while let Some(message) = wanted.pop_front() {
        if !seen.insert(message.full_name().to_owned()) {
            continue;
        }
        schemas.insert(
            message.full_name().to_owned(),
            message_schema(&message, &mut wanted),
        );
    }
    schemas.insert(
        ERROR_SCHEMA.to_owned(),
        json!({
            "type": "object",
            "description": "An error, as grpc-gateway renders google.rpc.Status.",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "integer", "format": "int32", "description": "gRPC status code"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"@type": {"type": "string"}},
                        "additionalProperties": true
                    }
                }
            }
        }),
    );

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Marquee API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST/JSON surface of Marquee, transcoded to gRPC from the google.api.http annotations in proto/."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
        // Optional at the edge: each RPC decides whether it needs an identity.
        "security": [{"bearerAuth": []}, {}]
    })
}

fn operation(route: &Route, wanted: &mut VecDeque<MessageDescriptor>) -> Json {
    let mut parameters = Vec::new();
    let bound: Vec<FieldDescriptor> = route
        .template
        .variables()
        .filter_map(|v| resolve_field_path(&route.input, v))
        .collect();
    for variable in route.template.variables() {
        let Some(field) = resolve_field_path(&route.input, variable) else {
            continue;
        };
        parameters.push(json!({
            "name": json_path(&route.input, variable),
            "in": "path",
            "required": true,
            "schema": field_schema(&field, wanted),
        }));
    }
    if route.body != BodyRule::Whole {
        for field in route.input.fields() {
            let in_body = matches!(&route.body, BodyRule::Field(f) if f == field.name());
            if bound.contains(&field)
                || in_body
                || field.is_map()
                || matches!(field.kind(), Kind::Message(_))
            {
                continue;
            }
            parameters.push(json!({
                "name": field.json_name(),
                "in": "query",
                "required": false,
                "schema": field_schema(&field, wanted),
            }));
        }
    }

    let mut op = Map::new();
    op.insert("operationId".into(), json!(route.operation_id));
    op.insert(
        "tags".into(),
        json!([route.service.rsplit('.').next().unwrap_or(&route.service)]),
    );
    if let Some(description) = &route.description {
        op.insert("summary".into(), json!(description));
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Json::Array(parameters));
    }
    let body_schema = match &route.body {
        BodyRule::None => None,
        BodyRule::Whole => Some(message_ref(&route.input, wanted)),
        BodyRule::Field(name) => route
            .input
            .get_field_by_name(name)
            .map(|f| field_schema(&f, wanted)),
    };
    if let Some(schema) = body_schema {
        op.insert(
            "requestBody".into(),
            json!({"required": false, "content": {"application/json": {"schema": schema}}}),
        );
    }
    let response_schema = match &route.response_body {
        None => message_ref(&route.output, wanted),
        Some(name) => route
            .output
            .get_field_by_name(name)
            .map(|f| field_schema(&f, wanted))
            .unwrap_or_else(|| json!({})),
    };
    let mut responses = Map::new();
    if route.server_streaming {
        responses.insert(
            route.success.as_u16().to_string(),
            json!({
                "description": "A stream of server-sent events, each one message as JSON.",
                "content": {"text/event-stream": {"schema": response_schema}}
            }),
        );
    } else {
        responses.insert(
            route.success.as_u16().to_string(),
            json!({
                "description": route.success.canonical_reason().unwrap_or("Success"),
                "content": {"application/json": {"schema": response_schema}}
            }),
        );
    }
    responses.insert(
        "default".into(),
        json!({
            "description": "An error.",
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ERROR_SCHEMA}")}}}
        }),
    );
    op.insert("responses".into(), Json::Object(responses));
    Json::Object(op)
}

/// The JSON name of a (dotted) field path, for OpenAPI parameter names.
fn json_path(message: &MessageDescriptor, path: &str) -> String {
    let mut current = message.clone();
    let mut names = Vec::new();
    for part in path.split('.') {
        match current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
        {
            Some(field) => {
                names.push(field.json_name().to_owned());
                if let Kind::Message(next) = field.kind() {
                    current = next;
                }
            }
            None => names.push(part.to_owned()),
        }
    }
    names.join(".")
}

fn message_ref(message: &MessageDescriptor, wanted: &mut VecDeque<MessageDescriptor>) -> Json {
    if let Some(schema) = well_known_schema(message.full_name()) {
        return schema;
    }
    wanted.push_back(message.clone());
    json!({"$ref": format!("#/components/schemas/{}", message.full_name())})
}

fn message_schema(message: &MessageDescriptor, wanted: &mut VecDeque<MessageDescriptor>) -> Json {
    let mut properties = Map::new();
    for field in message.fields() {
        properties.insert(field.json_name().to_owned(), field_schema(&field, wanted));
    }
    json!({"type": "object", "properties": properties})
}

fn field_schema(field: &FieldDescriptor, wanted: &mut VecDeque<MessageDescriptor>) -> Json {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return json!({"type": "object"});
        };
        let value = entry.map_entry_value_field();
        return json!({"type": "object", "additionalProperties": kind_schema(&value.kind(), wanted)});
    }
    let schema = kind_schema(&field.kind(), wanted);
    if field.is_list() {
        json!({"type": "array", "items": schema})
    } else {
        schema
    }
}

fn kind_schema(kind: &Kind, wanted: &mut VecDeque<MessageDescriptor>) -> Json {
    match kind {
        Kind::Double => json!({"type": "number", "format": "double"}),
        Kind::Float => json!({"type": "number", "format": "float"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
        // proto3 JSON writes 64-bit integers as strings.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Enum(desc) => json!({
            "type": "string",
            "enum": desc.values().map(|v| v.name().to_owned()).collect::<Vec<_>>(),
        }),
        Kind::Message(message) => message_ref(message, wanted),
    }
}

fn well_known_schema(full_name: &str) -> Option<Json> {
    Some(match full_name {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "example": "1.5s"}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.FieldMask" => json!({"type": "string"}),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" | "google.protobuf.Any" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array", "items": {}}),
        "google.protobuf.StringValue" => json!({"type": "string", "nullable": true}),
        "google.protobuf.BytesValue" => {
            json!({"type": "string", "format": "byte", "nullable": true})
        }
        "google.protobuf.BoolValue" => json!({"type": "boolean", "nullable": true}),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({"type": "integer", "nullable": true})
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({"type": "string", "format": "int64", "nullable": true})
        }
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => {
            json!({"type": "number", "nullable": true})
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let table = RouteTable::marquee().expect("route table");
        let doc = document(&table);
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = 0;
        for route in table.routes() {
            let path = route.template.render_with(|f| json_path(&route.input, f));
            let op = &paths[&path][route.method.as_str().to_ascii_lowercase()];
            assert_eq!(op["operationId"], route.operation_id, "{}", route.name());
            assert!(op["responses"][route.success.as_u16().to_string()].is_object());
            operations += 1;
        }
        let documented: usize = paths
            .values()
            .map(|p| p.as_object().map_or(0, Map::len))
            .sum();
        assert_eq!(documented, operations);

        assert!(paths.contains_key("/v1/events/{eventId}/seats"));
        assert!(paths.contains_key("/v1/bookings/{bookingId}:cancel"));
        let create = &paths["/v1/bookings"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/marquee.booking.v1.CreateBookingRequest"
        );
        assert_eq!(
            create["responses"]["202"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/marquee.booking.v1.Booking"
        );
        let seats = &paths["/v1/events/{eventId}/seats"]["get"];
        assert_eq!(seats["parameters"][0]["name"], "eventId");
        assert_eq!(seats["parameters"][0]["in"], "path");
        let list = &paths["/v1/events"]["get"];
        let names: Vec<&str> = list["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, vec!["pageSize", "pageToken"]);

        let schemas = &doc["components"]["schemas"];
        // A checkout pays by WALLET or by CARD with the payment provider's token.
        let checkout = &schemas["marquee.booking.v1.CreateBookingRequest"]["properties"];
        assert_eq!(checkout["cardToken"]["type"], "string");
        let methods = checkout["paymentMethod"]["enum"].as_array().expect("enum");
        assert!(methods.contains(&Json::from("WALLET")), "{methods:?}");
        assert!(methods.contains(&Json::from("CARD")), "{methods:?}");
        let booking = &schemas["marquee.booking.v1.Booking"]["properties"];
        assert_eq!(booking["status"]["type"], "string");
        assert_eq!(booking["createdAt"]["format"], "date-time");
        assert_eq!(
            booking["seats"]["items"]["$ref"],
            "#/components/schemas/marquee.booking.v1.BookedSeat"
        );
        assert_eq!(
            schemas["marquee.type.v1.Money"]["properties"]["amountMinor"]["type"],
            "string"
        );
        assert!(schemas["marquee.booking.v1.BookedSeat"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
    }
}
