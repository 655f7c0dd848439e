//! An OpenAPI 3.0 document generated from the same route table the gateway serves.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use crate::routes::{BodyRule, Route, RouteTable, resolve_field_path};

const ERROR_SCHEMA: &str = "Status";

/// The document for every route of `table`.
pub fn document(table: &RouteTable) -> Json {
    let rules = Rules::of(table);
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut wanted: VecDeque<MessageDescriptor> = VecDeque::new();
    for route in table.routes() {
        let path = route
            .template
            .render_with(|field| json_path(&route.input, field));
        let operation = operation(route, &rules, &mut wanted);
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
            message_schema(&message, &rules, &mut wanted),
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

fn operation(route: &Route, rules: &Rules, wanted: &mut VecDeque<MessageDescriptor>) -> Json {
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
            "schema": rules.path_schema(&field, field_schema(&field, wanted)),
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
            let schema = rules.request_field(&field, field_schema(&field, wanted));
            parameters.push(json!({
                "name": field.json_name(),
                "in": "query",
                "required": REQUIRED.contains(&field.full_name()),
                "schema": schema,
            }));
        }
    }
    if let Some((required, description)) = idempotency_header(route) {
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": required,
            "description": description,
            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
        }));
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
            .map(|f| rules.request_field(&f, field_schema(&f, wanted))),
    };
    if let Some(schema) = body_schema {
        // An absent body is the empty message, which is fine unless it lacks a required field.
        let required = route.body == BodyRule::Whole
            && route
                .input
                .fields()
                .any(|f| REQUIRED.contains(&f.full_name()));
        op.insert(
            "requestBody".into(),
            json!({"required": required, "content": {"application/json": {"schema": schema}}}),
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

/// An `Idempotency-Key`: 1 to 200 visible ASCII characters (booking-svc's
/// `IdempotencyKey::parse`).
const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,200}$";

/// The `Idempotency-Key` header a route reads, if any: whether it is required, and
/// what it means. booking-svc takes the key from the body's `idempotencyKey`, else
/// from the header; the document states the header (required at checkout).
fn idempotency_header(route: &Route) -> Option<(bool, &'static str)> {
    match route.input.full_name() {
        "marquee.booking.v1.CreateBookingRequest" => Some((
            true,
            "Makes the checkout safe to retry: a retry with the same key returns the same booking.",
        )),
        "marquee.booking.v1.AcceptTransferOfferRequest" => Some((
            true,
            "Makes the accept safe to retry: a retry with the same key returns the same booking.",
        )),
        "marquee.booking.v1.CreateHoldRequest" => Some((
            false,
            "Optional: a retry with the same key returns the hold the first attempt made.",
        )),
        "marquee.booking.v1.PayAwardRequest" => Some((
            true,
            "Makes the payment safe to retry: a retry with the same key returns the same booking.",
        )),
        _ => None,
    }
}

/// Request fields the services refuse when absent or empty (by full proto name).
const REQUIRED: &[&str] = &[
    "marquee.booking.v1.SignUpRequest.email",
    "marquee.booking.v1.SignUpRequest.password",
    "marquee.booking.v1.SignUpRequest.display_name",
    "marquee.booking.v1.SignUpRequest.role",
    "marquee.booking.v1.LogInRequest.email",
    "marquee.booking.v1.LogInRequest.password",
    "marquee.booking.v1.ConfirmTwoFactorRequest.code",
    "marquee.booking.v1.CreateBookingRequest.hold_id",
    "marquee.booking.v1.CreateBookingRequest.payment_method",
    "marquee.booking.v1.PayAwardRequest.payment_method",
    "marquee.booking.v1.PlaceBidRequest.amount",
    "marquee.booking.v1.CreateAuctionRequest.seat_ids",
    "marquee.booking.v1.CreateAuctionRequest.opening_price",
    "marquee.booking.v1.CreateAuctionRequest.min_increment",
    "marquee.booking.v1.CreateAuctionRequest.closes_at",
    "marquee.booking.v1.AcceptTransferOfferRequest.payment_method",
    "marquee.booking.v1.CreateTransferOfferRequest.price",
    "marquee.search.v1.SearchEventsRequest.q",
    "marquee.search.v1.SuggestRequest.q",
];

/// A non-blank line without control characters (booking-svc's `domain::text`).
const TEXT_LINE_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// What the services accept of request fields beyond their proto types: derived where
/// the protos say it (ids are UUIDs: a field named `*_id`/`*_ids`, except the one a
/// path variable fills, whose body copy the path overrides), and from a small table
/// of booking-svc's own validation otherwise. Only for messages no response carries,
/// so that a response never breaks a rule meant for requests.
struct Rules {
    /// Messages reachable from some route's input and from no route's output.
    request_only: BTreeSet<String>,
    /// Fields some route binds to a path variable.
    bound: BTreeSet<String>,
}

impl Rules {
    fn of(table: &RouteTable) -> Self {
        let inputs = reachable(table.routes().iter().map(|r| r.input.clone()));
        let outputs = reachable(table.routes().iter().map(|r| r.output.clone()));
        let bound = table
            .routes()
            .iter()
            .flat_map(|r| {
                r.template
                    .variables()
                    .filter_map(|v| resolve_field_path(&r.input, v))
                    .map(|f| f.full_name().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        Self {
            request_only: inputs.difference(&outputs).cloned().collect(),
            bound,
        }
    }

    /// A path variable: a `*_id` is a UUID.
    fn path_schema(&self, field: &FieldDescriptor, schema: Json) -> Json {
        if is_id(field) {
            with(schema, id_format(field))
        } else {
            schema
        }
    }

    /// A field of a request (body or query).
    fn request_field(&self, field: &FieldDescriptor, schema: Json) -> Json {
        let mut extra = field_rules(field.full_name()).unwrap_or_else(|| json!({}));
        if is_id(field) && !self.bound.contains(field.full_name()) {
            extra = with(id_format(field), extra);
        }
        if field.name() == "page_size" {
            extra["minimum"] = json!(0);
        }
        if extra.as_object().is_none_or(Map::is_empty) {
            return schema;
        }
        if field.is_list() {
            let mut schema = schema;
            let items = schema["items"].take();
            schema["items"] = with(items, extra);
            schema
        } else {
            with(schema, extra)
        }
    }
}

/// Is `field` a (list of) UUID id(s): a string named `*_id` or `*_ids`.
fn is_id(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::String)
        && (field.name().ends_with("_id") || field.name().ends_with("_ids"))
}

/// What an id looks like: a UUID, but for a waiting-room ticket (its event's UUID and a
/// nonce, 48 hex digits: booking-svc's `TicketId::parse`).
fn id_format(field: &FieldDescriptor) -> Json {
    if field.name() == "ticket_id" {
        json!({"pattern": "^[0-9A-Fa-f]{48}$"})
    } else {
        json!({"format": "uuid"})
    }
}

/// No control characters (booking-svc's `domain::storable`).
const NO_CONTROLS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$";

/// booking-svc's validation of single fields, by full proto name (rules that hold for
/// whatever a response carries too, for a message both carry).
fn field_rules(full_name: &str) -> Option<Json> {
    Some(match full_name {
        "marquee.booking.v1.SignUpRequest.email" | "marquee.booking.v1.LogInRequest.email" => {
            json!({
                "maxLength": 254,
                // Visible ASCII: a local part, `@`, a dotted domain not starting or ending in `.`.
                "pattern": "^[!-?A-~]+@[!-\\-/-?A-~][!-?A-~]*\\.[!-?A-~]*[!-\\-/-?A-~]$",
            })
        }
        // Empty (an open listing) or an email as at sign-up.
        "marquee.booking.v1.CreateTransferOfferRequest.recipient_email" => json!({
            "maxLength": 254,
            "pattern": "^$|^[!-?A-~]+@[!-\\-/-?A-~][!-?A-~]*\\.[!-?A-~]*[!-\\-/-?A-~]$",
        }),
        "marquee.booking.v1.SignUpRequest.password" => {
            json!({"minLength": 8, "maxLength": 128, "pattern": NO_CONTROLS})
        }
        "marquee.booking.v1.LogInRequest.password" => json!({"pattern": NO_CONTROLS}),
        // booking-svc's `TotpCode` and `RecoveryCode` (absent from a log-in without
        // two-factor sign-in; a recovery code in any case, dashes and spaces optional).
        "marquee.booking.v1.LogInRequest.code" => json!({"pattern": "^ *([0-9]{6})? *$"}),
        "marquee.booking.v1.ConfirmTwoFactorRequest.code" => json!({"pattern": "^ *[0-9]{6} *$"}),
        "marquee.booking.v1.LogInRequest.recovery_code" => {
            json!({"maxLength": 64, "pattern": "^( *|[- ]*([A-Za-z2-7][- ]*){16})$"})
        }
        "marquee.booking.v1.SignUpRequest.display_name" => {
            json!({"maxLength": 100, "pattern": TEXT_LINE_PATTERN})
        }
        // ADMIN cannot be chosen at sign-up.
        "marquee.booking.v1.SignUpRequest.role" => json!({"enum": ["BUYER", "SELLER"]}),
        // An offset, as decimal text (booking-svc's `domain::page_offset`).
        "marquee.booking.v1.ListEventsRequest.page_token"
        | "marquee.booking.v1.ListBookingsRequest.page_token"
        | "marquee.booking.v1.ListTransferListingsRequest.page_token" => {
            json!({"pattern": "^[0-9]{0,18}$"})
        }
        // search-svc: 0 is the default; more than the most is refused.
        "marquee.search.v1.SearchEventsRequest.page_size"
        | "marquee.search.v1.ListPopularEventsRequest.limit"
        | "marquee.search.v1.ListPopularKeywordsRequest.limit" => {
            json!({"minimum": 0, "maximum": 100})
        }
        "marquee.search.v1.SuggestRequest.limit" => json!({"minimum": 0, "maximum": 20}),
        // Words to look for (it must have a letter or a digit, which no ECMA pattern
        // can say of every script).
        "marquee.search.v1.SearchEventsRequest.q" | "marquee.search.v1.SuggestRequest.q" => {
            json!({"maxLength": 200, "pattern": "\\S"})
        }
        "marquee.search.v1.SearchEventsRequest.category" => json!({"maxLength": 50}),
        "marquee.booking.v1.CreateBookingRequest.payment_method"
        | "marquee.booking.v1.PayAwardRequest.payment_method"
        | "marquee.booking.v1.AcceptTransferOfferRequest.payment_method" => {
            json!({"enum": ["WALLET", "CARD"]})
        }
        // 0 is the default, 600.
        "marquee.booking.v1.CreateAuctionRequest.payment_window_seconds" => json!({
            "oneOf": [{"enum": [0]}, {"minimum": 30, "maximum": 86_400}]
        }),
        "marquee.booking.v1.CreateAuctionRequest.seat_ids" => {
            json!({"minItems": 1, "maxItems": 100, "uniqueItems": true})
        }
        // 0 is the default, 100.
        "marquee.booking.v1.TransferPolicy.max_price_percent" => {
            json!({"minimum": 0, "maximum": 100})
        }
        "marquee.booking.v1.WaitingRoomSettings.admit_per_second"
        | "marquee.booking.v1.WaitingRoomSettings.max_shoppers" => {
            json!({"minimum": 0, "maximum": 100_000})
        }
        // 0 is the default, 600.
        "marquee.booking.v1.WaitingRoomSettings.admission_seconds" => json!({
            "oneOf": [{"enum": [0]}, {"minimum": 30, "maximum": 86_400}]
        }),
        "marquee.booking.v1.CreateBookingRequest.idempotency_key" => {
            json!({"pattern": IDEMPOTENCY_KEY_PATTERN})
        }
        "marquee.booking.v1.AcceptTransferOfferRequest.idempotency_key"
        | "marquee.booking.v1.CreateHoldRequest.idempotency_key"
        | "marquee.booking.v1.PayAwardRequest.idempotency_key" => {
            json!({"pattern": "^[!-~]{0,200}$"})
        }
        _ => return None,
    })
}

/// `schema` with `extra`'s keywords; a `$ref` (which allows no siblings) goes in `allOf`.
fn with(schema: Json, extra: Json) -> Json {
    let Json::Object(extra) = extra else {
        return schema;
    };
    match schema {
        Json::Object(mut object)
            if !object.contains_key("$ref") && !object.contains_key("allOf") =>
        {
            object.extend(extra);
            Json::Object(object)
        }
        other => {
            let mut object = Map::new();
            object.insert("allOf".into(), json!([other]));
            object.extend(extra);
            Json::Object(object)
        }
    }
}

/// Every message reachable from `roots` through fields (well-known types included).
fn reachable(roots: impl Iterator<Item = MessageDescriptor>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<MessageDescriptor> = roots.collect();
    while let Some(message) = queue.pop_front() {
        if !seen.insert(message.full_name().to_owned()) {
            continue;
        }
        for field in message.fields() {
            if let Kind::Message(inner) = field.kind() {
                queue.push_back(inner);
            }
        }
    }
    seen
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

/// A message's schema. The gateway refuses unknown fields in a body and writes only
/// known ones, so no other properties. A message only requests carry also states what
/// the services accept of each field (see [`Rules`]).
fn message_schema(
    message: &MessageDescriptor,
    rules: &Rules,
    wanted: &mut VecDeque<MessageDescriptor>,
) -> Json {
    let request = rules.request_only.contains(message.full_name());
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in message.fields() {
        let mut schema = field_schema(&field, wanted);
        if request {
            schema = rules.request_field(&field, schema);
        } else if let Some(extra) = field_rules(field.full_name()) {
            schema = with(schema, extra);
        }
        if request && REQUIRED.contains(&field.full_name()) {
            required.push(field.json_name().to_owned());
        } else if !matches!(field.kind(), Kind::Message(_)) || field.is_list() {
            // proto3 JSON reads `null` as the field's default.
            schema = nullable(schema);
        }
        properties.insert(field.json_name().to_owned(), schema);
    }
    let mut schema =
        json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    if let (Some(rules), Json::Object(object)) = (message_rules(message.full_name()), &mut schema) {
        object.extend(rules.as_object().cloned().unwrap_or_default());
    }
    schema
}

/// booking-svc's rules across the fields of a message, by full proto name.
fn message_rules(full_name: &str) -> Option<Json> {
    Some(match full_name {
        // A code or a recovery code, not both (booking-svc's `SecondFactor::parse`).
        "marquee.booking.v1.LogInRequest" => json!({"not": {
            "required": ["code", "recoveryCode"],
            "properties": {
                "code": {"type": "string", "pattern": "[0-9]"},
                "recoveryCode": {"type": "string", "pattern": "[A-Za-z2-7]"}
            }
        }}),
        // WALLET without a card token, or CARD with the provider's token (a checkout,
        // the accept of a transfer offer or an auction award's payment, which pay the
        // same way).
        "marquee.booking.v1.CreateBookingRequest"
        | "marquee.booking.v1.AcceptTransferOfferRequest"
        | "marquee.booking.v1.PayAwardRequest" => json!({"oneOf": [
            {
                "properties": {
                    "paymentMethod": {"enum": ["WALLET"]},
                    "cardToken": {"nullable": true, "type": "string", "pattern": "^\\s*$"}
                }
            },
            {
                "properties": {
                    "paymentMethod": {"enum": ["CARD"]},
                    "cardToken": {"type": "string", "pattern": CARD_TOKEN_PATTERN}
                },
                "required": ["cardToken"]
            }
        ]}),
        // A room paces admissions, caps the shoppers inside, or both.
        "marquee.booking.v1.WaitingRoomSettings" => json!({"anyOf": [
            {"properties": {"admitPerSecond": {"type": "integer", "minimum": 1}}, "required": ["admitPerSecond"]},
            {"properties": {"maxShoppers": {"type": "integer", "minimum": 1}}, "required": ["maxShoppers"]}
        ]}),
        // Those seats, or best available: a quantity, optionally in a section and up to
        // a price (booking-svc's `HoldSelection::parse`).
        "marquee.booking.v1.CreateHoldRequest" => json!({"oneOf": [
            {
                "properties": {
                    "seatIds": {"type": "array", "minItems": 1},
                    "quantity": {"nullable": true, "enum": [0, null]},
                    "sectionId": {"nullable": true, "type": "string", "pattern": "^\\s*$"},
                    "maxPrice": {"nullable": true, "enum": [null]}
                },
                "required": ["seatIds"]
            },
            {
                "properties": {
                    "seatIds": {"nullable": true, "type": "array", "maxItems": 0},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 64}
                },
                "required": ["quantity"]
            }
        ]}),
        _ => return None,
    })
}

/// The payment provider's card token (booking-svc's `CardToken::parse`).
const CARD_TOKEN_PATTERN: &str = "^tok_[A-Za-z0-9_]{1,64}$";

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
    } else if matches!(field.kind(), Kind::Message(_)) && field.containing_oneof().is_none() {
        // An unset message field is written as `null` (and `null` reads as unset).
        nullable(schema)
    } else {
        schema
    }
}

fn nullable(schema: Json) -> Json {
    match schema {
        Json::Object(mut object) if !object.contains_key("$ref") => {
            object.insert("nullable".into(), json!(true));
            Json::Object(object)
        }
        other => json!({"allOf": [other], "nullable": true}),
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
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"})
        }
        Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$"})
        }
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

        // The server's rules: ids are UUIDs, unknown fields are refused, sign-up takes
        // BUYER or SELLER only, checkout needs an Idempotency-Key header (holds may).
        assert_eq!(seats["parameters"][0]["schema"]["format"], "uuid");
        assert_eq!(
            paths["/v1/queue/{ticketId}"]["get"]["parameters"][0]["schema"]["pattern"],
            "^[0-9A-Fa-f]{48}$"
        );
        let sign_up = &schemas["marquee.booking.v1.SignUpRequest"];
        assert_eq!(sign_up["additionalProperties"], false);
        assert_eq!(
            sign_up["properties"]["role"]["enum"],
            json!(["BUYER", "SELLER"])
        );
        assert!(
            sign_up["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("email")))
        );
        let header = |op: &Json| {
            op["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["in"] == "header"))
                .map(|p| (p["name"].clone(), p["required"].clone()))
        };
        assert_eq!(
            header(create),
            Some((json!("Idempotency-Key"), json!(true)))
        );
        assert_eq!(create["requestBody"]["required"], true);
        let hold = &paths["/v1/events/{eventId}/holds"]["post"];
        assert_eq!(header(hold), Some((json!("Idempotency-Key"), json!(false))));
        assert_eq!(checkout["holdId"]["format"], "uuid");
        assert_eq!(list["parameters"][0]["schema"]["minimum"], 0);
        // The path fills a hold's eventId, whatever the body says: not a UUID there.
        let hold_request = &schemas["marquee.booking.v1.CreateHoldRequest"]["properties"];
        assert!(hold_request["eventId"]["format"].is_null());
        assert_eq!(hold_request["seatIds"]["items"]["format"], "uuid");
        // An unset message field is written as null.
        assert_eq!(
            schemas["marquee.booking.v1.Event"]["properties"]["waitingRoom"]["nullable"],
            true
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
    }
}
