//! The REST route table, derived only from the `google.api.http` annotations in the
//! descriptor set: adding a route means annotating an RPC, never writing a handler.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use http::{Method, StatusCode};
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, Value,
};

use marquee_proto::google::api::{HttpRule, http_rule::Pattern};

use crate::template::{DecodeError, PathTemplate};

/// Full name of the `google.api.http` method option.
pub const HTTP_EXTENSION: &str = "google.api.http";
/// Full name of Marquee's success-status method option.
pub const SUCCESS_CODE_EXTENSION: &str = "marquee.api.v1.success_code";
/// Full name of the field option naming a streamed message's SSE `id:`.
pub const SSE_EVENT_ID_EXTENSION: &str = "marquee.api.v1.sse_event_id";
/// Full name of the method option marking a stream every caller of a request shares.
pub const SHARED_STREAM_EXTENSION: &str = "marquee.api.v1.shared_stream";

/// Which proto packages are served by which upstream. Index = [`Route::upstream`].
/// `marquee.admin.v1` (dead letters) is served by booking-svc, which merges in
/// pay-svc's: pay-svc's instance of it is never routed from outside.
pub const UPSTREAMS: &[Upstream] = &[
    Upstream {
        name: "booking",
        packages: &["marquee.booking.v1", "marquee.admin.v1"],
    },
    Upstream {
        name: "pay",
        packages: &["marquee.pay.v1"],
    },
    Upstream {
        name: "realtime",
        packages: &["marquee.realtime.v1"],
    },
    Upstream {
        name: "search",
        packages: &["marquee.search.v1"],
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    pub name: &'static str,
    pub packages: &'static [&'static str],
}

/// Where the request body goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRule {
    /// `body: ""`: the body is ignored; unbound fields come from the query string.
    None,
    /// `body: "*"`: the body is the whole request message.
    Whole,
    /// `body: "field"`: the body is that one field of the request message.
    Field(String),
}

/// One REST binding of one RPC.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub template: PathTemplate,
    /// `/package.Service/Method`.
    pub grpc_path: String,
    /// `Service_Method`, unique per RPC (used as the OpenAPI operationId).
    pub operation_id: String,
    pub service: String,
    /// Index into [`UPSTREAMS`].
    pub upstream: usize,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    pub body: BodyRule,
    /// `response_body`: answer with only this field of the response (proto name).
    pub response_body: Option<String>,
    pub success: StatusCode,
    /// Server-streaming RPCs are served as SSE (`text/event-stream`).
    pub server_streaming: bool,
    /// The field of the streamed message whose value is each SSE event's `id:`.
    pub sse_event_id: Option<FieldDescriptor>,
    /// `(marquee.api.v1.shared_stream)`: one upstream stream per distinct request,
    /// fanned out to all its clients ([`crate::fanout`]).
    pub shared_stream: bool,
    /// Leading comment of the RPC in the .proto, if any.
    pub description: Option<String>,
}

impl Route {
    /// `POST /v1/bookings`: the span name and the metrics label.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// Path variables bound by a match: (field path, decoded value).
pub type Bindings = Vec<(String, String)>;

/// Result of looking a request up. The gateway computes it once per request and
/// keeps it in the request's extensions for the span, the metrics and the handler.
#[derive(Debug, Clone)]
pub enum RouteMatch {
    Found {
        route: Arc<Route>,
        bindings: Bindings,
    },
    /// The path matched but a variable did not decode.
    BadPath {
        route: Arc<Route>,
        error: DecodeError,
    },
    /// The path is known, the method is not; carries the allowed methods.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

impl RouteMatch {
    /// The route the request is addressed to, if the table knows its path and method.
    pub fn route(&self) -> Option<&Route> {
        match self {
            RouteMatch::Found { route, .. } | RouteMatch::BadPath { route, .. } => Some(route),
            RouteMatch::MethodNotAllowed(_) | RouteMatch::NotFound => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    pool: DescriptorPool,
}

impl RouteTable {
    /// Builds the table from Marquee's own descriptor set.
    pub fn marquee() -> anyhow::Result<Self> {
        Self::from_descriptor_set(marquee_proto::DESCRIPTOR_SET, UPSTREAMS)
    }

    /// Builds the table from an encoded `FileDescriptorSet`, routing each package in
    /// `upstreams` to that upstream. Methods without a `google.api.http` option are not
    /// exposed. Fails on an annotation the gateway cannot serve.
    pub fn from_descriptor_set(bytes: &[u8], upstreams: &[Upstream]) -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(bytes).context("decoding the descriptor set")?;
        let http_ext = pool
            .get_extension_by_name(HTTP_EXTENSION)
            .with_context(|| format!("{HTTP_EXTENSION} is not in the descriptor set"))?;
        let success_ext = pool.get_extension_by_name(SUCCESS_CODE_EXTENSION);
        let shared_ext = pool.get_extension_by_name(SHARED_STREAM_EXTENSION);
        let mut routes = Vec::new();
        for service in pool.services() {
            let Some(upstream) = upstreams
                .iter()
                .position(|u| u.packages.contains(&service.package_name()))
            else {
                continue;
            };
            for method in service.methods() {
                let options = method.options();
                let Some(rule) = http_rule(&options, &http_ext)? else {
                    continue;
                };
                if method.is_client_streaming() {
                    tracing::warn!(rpc = %method.full_name(), "client-streaming rpc is not exposed over rest");
                    continue;
                }
                let success = success_code(&options, success_ext.as_ref()).with_context(|| {
                    format!("{}: bad {SUCCESS_CODE_EXTENSION}", method.full_name())
                })?;
                let shared =
                    shared_stream(&options, shared_ext.as_ref(), &method).with_context(|| {
                        format!("{}: bad {SHARED_STREAM_EXTENSION}", method.full_name())
                    })?;
                let description = leading_comment(&method);
                let mut bindings = vec![rule.clone()];
                bindings.extend(rule.additional_bindings.iter().cloned());
                for binding in bindings {
                    let mut route =
                        make_route(&method, upstream, &binding, success, description.clone())
                            .with_context(|| {
                                format!("{}: bad google.api.http option", method.full_name())
                            })?;
                    route.shared_stream = shared;
                    if routes.iter().any(|r: &Arc<Route>| {
                        r.method == route.method && r.template == route.template
                    }) {
                        bail!("duplicate rest route {}", route.name());
                    }
                    routes.push(Arc::new(route));
                }
            }
        }
        Ok(Self { routes, pool })
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route of `method` and path `template` as the proto spells it.
    pub fn find(&self, method: &Method, template: &str) -> Option<Arc<Route>> {
        self.routes
            .iter()
            .find(|r| r.method == *method && r.template.as_str() == template)
            .cloned()
    }

    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Finds the route for a request; `path` is the raw (percent-encoded) path.
    pub fn lookup(&self, method: &Method, path: &str) -> RouteMatch {
        let mut best: Option<(&Arc<Route>, Result<Bindings, DecodeError>)> = None;
        let mut allowed: Vec<Method> = Vec::new();
        // The most specific template another method has for this path: when it beats
        // this method's (`/v1/bookings/b-1:cancel` is CancelBooking's, not GetBooking's
        // with the id `b-1:cancel`), the answer is 405.
        let mut other: Option<(usize, bool)> = None;
        for route in &self.routes {
            let Some(bound) = route.template.matches(path) else {
                continue;
            };
            if route.method != *method {
                if !allowed.contains(&route.method) {
                    allowed.push(route.method.clone());
                }
                other = other.max(Some(route.template.specificity()));
                continue;
            }
            let better = match &best {
                None => true,
                Some((current, _)) => route.template.specificity() > current.template.specificity(),
            };
            if better {
                best = Some((route, bound));
            }
        }
        if let Some((route, _)) = &best
            && other.is_some_and(|o| o > route.template.specificity())
        {
            return RouteMatch::MethodNotAllowed(allowed);
        }
        match best {
            Some((route, Ok(bindings))) => RouteMatch::Found {
                route: route.clone(),
                bindings,
            },
            Some((route, Err(error))) => RouteMatch::BadPath {
                route: route.clone(),
                error,
            },
            None if !allowed.is_empty() => RouteMatch::MethodNotAllowed(allowed),
            None => RouteMatch::NotFound,
        }
    }
}

fn http_rule(
    options: &DynamicMessage,
    ext: &ExtensionDescriptor,
) -> anyhow::Result<Option<HttpRule>> {
    if !options.has_extension(ext) {
        return Ok(None);
    }
    match options.get_extension(ext).as_ref() {
        Value::Message(message) => {
            let rule = HttpRule::decode(message.encode_to_vec().as_slice())
                .context("decoding google.api.HttpRule")?;
            Ok(Some(rule))
        }
        other => bail!("{HTTP_EXTENSION} holds {other:?}, not a message"),
    }
}

fn success_code(
    options: &DynamicMessage,
    ext: Option<&ExtensionDescriptor>,
) -> anyhow::Result<StatusCode> {
    let code = match ext {
        Some(ext) if options.has_extension(ext) => match options.get_extension(ext).as_ref() {
            Value::I32(code) => *code,
            other => bail!("expected an int32, found {other:?}"),
        },
        _ => 200,
    };
    let code = u16::try_from(code).context("out of range")?;
    let status = StatusCode::from_u16(code).context("not an HTTP status")?;
    if !status.is_success() {
        bail!("{status} is not a success status");
    }
    Ok(status)
}

/// Whether the method is marked `(marquee.api.v1.shared_stream)`; only a stream whose
/// messages carry a numeric SSE id can be shared, since clients join it by that id.
fn shared_stream(
    options: &DynamicMessage,
    ext: Option<&ExtensionDescriptor>,
    method: &MethodDescriptor,
) -> anyhow::Result<bool> {
    let shared = match ext {
        Some(ext) if options.has_extension(ext) => match options.get_extension(ext).as_ref() {
            Value::Bool(shared) => *shared,
            other => bail!("expected a bool, found {other:?}"),
        },
        _ => false,
    };
    if shared {
        if !method.is_server_streaming() {
            bail!("only a server-streaming method can be shared");
        }
        let id = sse_event_id_field(&method.output())
            .context("a shared stream's messages need an (marquee.api.v1.sse_event_id) field")?;
        if !matches!(id.kind(), Kind::Int64 | Kind::Uint32 | Kind::Int32) || id.is_list() {
            bail!("a shared stream's sse_event_id must be an integer");
        }
    }
    Ok(shared)
}

fn make_route(
    method: &MethodDescriptor,
    upstream: usize,
    rule: &HttpRule,
    success: StatusCode,
    description: Option<String>,
) -> anyhow::Result<Route> {
    let (http_method, path) = match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p.as_str()),
        Some(Pattern::Put(p)) => (Method::PUT, p.as_str()),
        Some(Pattern::Post(p)) => (Method::POST, p.as_str()),
        Some(Pattern::Delete(p)) => (Method::DELETE, p.as_str()),
        Some(Pattern::Patch(p)) => (Method::PATCH, p.as_str()),
        Some(Pattern::Custom(c)) => (
            Method::from_bytes(c.kind.as_bytes()).context("bad custom http method")?,
            c.path.as_str(),
        ),
        None => bail!("no http pattern"),
    };
    let template = PathTemplate::parse(path)?;
    let input = method.input();
    let output = method.output();
    for variable in template.variables() {
        let leaf = resolve_field_path(&input, variable).with_context(|| {
            format!(
                "path variable {{{variable}}} names no field of {}",
                input.full_name()
            )
        })?;
        if leaf.is_list() || leaf.is_map() || matches!(leaf.kind(), Kind::Message(_)) {
            bail!("path variable {{{variable}}} must name a singular scalar field");
        }
    }
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        field => {
            let desc = input
                .get_field_by_name(field)
                .with_context(|| format!("body field {field} is not in {}", input.full_name()))?;
            BodyRule::Field(desc.name().to_owned())
        }
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        field => {
            let desc = output.get_field_by_name(field).with_context(|| {
                format!("response_body {field} is not in {}", output.full_name())
            })?;
            Some(desc.name().to_owned())
        }
    };
    let service = method.parent_service();
    let sse_event_id = sse_event_id_field(&output);
    Ok(Route {
        method: http_method,
        template,
        grpc_path: format!("/{}/{}", service.full_name(), method.name()),
        operation_id: format!("{}_{}", service.name(), method.name()),
        service: service.full_name().to_owned(),
        upstream,
        input,
        output,
        body,
        response_body,
        success,
        server_streaming: method.is_server_streaming(),
        sse_event_id,
        shared_stream: false,
        description,
    })
}

/// The field of `message` marked `(marquee.api.v1.sse_event_id) = true`, if any.
fn sse_event_id_field(message: &MessageDescriptor) -> Option<FieldDescriptor> {
    let ext = message
        .parent_pool()
        .get_extension_by_name(SSE_EVENT_ID_EXTENSION)?;
    message.fields().find(|field| {
        let options = field.options();
        options.has_extension(&ext)
            && matches!(options.get_extension(&ext).as_ref(), Value::Bool(true))
    })
}

/// Resolves a dotted field path (proto or JSON names) to its last field.
pub fn resolve_field_path(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let mut current = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))?;
        if parts.peek().is_none() {
            return Some(field);
        }
        match field.kind() {
            Kind::Message(next) if !field.is_list() && !field.is_map() => current = next,
            _ => return None,
        }
    }
    None
}

/// The leading comment of an RPC in its .proto, from the source info in the set.
fn leading_comment(method: &MethodDescriptor) -> Option<String> {
    let file = method.parent_file();
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let comments: HashMap<&[i32], &str> = info
        .location
        .iter()
        .filter_map(|l| {
            l.leading_comments
                .as_deref()
                .map(|c| (l.path.as_slice(), c))
        })
        .collect();
    let text = comments.get(method.path())?;
    let text = text
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::marquee().expect("route table builds from DESCRIPTOR_SET")
    }

    fn find<'a>(table: &'a RouteTable, method: Method, template: &str) -> &'a Route {
        table
            .routes()
            .iter()
            .find(|r| r.method == method && r.template.as_str() == template)
            .unwrap_or_else(|| panic!("no route {method} {template}"))
    }

    #[test]
    fn table_has_annotated_routes() {
        let table = table();
        let create = find(&table, Method::POST, "/v1/bookings");
        assert_eq!(create.success, StatusCode::ACCEPTED);
        assert_eq!(
            create.grpc_path,
            "/marquee.booking.v1.BookingService/CreateBooking"
        );
        assert_eq!(create.body, BodyRule::Whole);
        assert_eq!(
            create.input.full_name(),
            "marquee.booking.v1.CreateBookingRequest"
        );
        assert_eq!(create.output.full_name(), "marquee.booking.v1.Booking");
        assert_eq!(UPSTREAMS[create.upstream].name, "booking");
        assert!(!create.server_streaming);
        assert!(
            create
                .description
                .as_deref()
                .is_some_and(|d| d.contains("Checks a hold out"))
        );

        let seats = find(&table, Method::GET, "/v1/events/{event_id}/seats");
        assert_eq!(seats.success, StatusCode::OK);
        assert_eq!(seats.body, BodyRule::None);
        assert!(!seats.shared_stream);
        // Public streams are shared; a caller's own booking or queue ticket is not.
        assert!(find(&table, Method::GET, "/v1/events/{event_id}/seats:watch").shared_stream);
        assert!(find(&table, Method::GET, "/v1/auctions/{auction_id}:watch").shared_stream);
        assert!(!find(&table, Method::GET, "/v1/bookings/{booking_id}:watch").shared_stream);
        assert!(!find(&table, Method::GET, "/v1/queue/{ticket_id}:watch").shared_stream);

        let wallet = find(&table, Method::GET, "/v1/wallet");
        assert_eq!(UPSTREAMS[wallet.upstream].name, "pay");
        assert_eq!(wallet.grpc_path, "/marquee.pay.v1.WalletService/GetWallet");

        assert_eq!(
            find(&table, Method::POST, "/v1/accounts").success,
            StatusCode::CREATED
        );
        assert_eq!(
            find(&table, Method::DELETE, "/v1/holds/{hold_id}")
                .output
                .full_name(),
            "google.protobuf.Empty"
        );
        find(&table, Method::POST, "/v1/bookings/{booking_id}:cancel");
    }

    #[test]
    fn only_annotated_rpcs_of_known_packages_are_routed() {
        let table = table();
        for route in table.routes() {
            assert!(
                UPSTREAMS
                    .iter()
                    .flat_map(|u| u.packages.iter())
                    .any(|p| route.grpc_path.starts_with(&format!("/{p}."))),
                "{}",
                route.grpc_path
            );
            assert_ne!(
                route.grpc_path,
                "/marquee.booking.v1.CatalogService/GetSeatSnapshot"
            );
        }
        let names: Vec<String> = table.routes().iter().map(|r| r.name()).collect();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(names.len(), unique.len());
    }

    #[test]
    fn lookup_distinguishes_404_405_and_verbs() {
        let table = table();
        match table.lookup(&Method::POST, "/v1/bookings/b-1:cancel") {
            RouteMatch::Found { route, bindings } => {
                assert_eq!(
                    route.grpc_path,
                    "/marquee.booking.v1.BookingService/CancelBooking"
                );
                assert_eq!(bindings, vec![("booking_id".to_owned(), "b-1".to_owned())]);
            }
            other => panic!("unexpected {other:?}"),
        }
        match table.lookup(&Method::GET, "/v1/bookings/b-1") {
            RouteMatch::Found { route, .. } => {
                assert_eq!(route.operation_id, "BookingService_GetBooking")
            }
            other => panic!("unexpected {other:?}"),
        }
        match table.lookup(&Method::GET, "/v1/bookings/b-1:cancel") {
            RouteMatch::MethodNotAllowed(allowed) => assert!(allowed.contains(&Method::POST)),
            other => panic!("GET of a verb route: {other:?}"),
        }
        match table.lookup(&Method::PUT, "/v1/bookings") {
            RouteMatch::MethodNotAllowed(allowed) => {
                assert!(allowed.contains(&Method::GET) && allowed.contains(&Method::POST));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            table.lookup(&Method::GET, "/v1/nope"),
            RouteMatch::NotFound
        ));
        assert!(matches!(
            table.lookup(&Method::GET, "/v1/events/%FF"),
            RouteMatch::BadPath { .. }
        ));
        assert_eq!(
            table
                .lookup(&Method::GET, "/v1/events/e-1/seats")
                .route()
                .map(Route::name)
                .as_deref(),
            Some("GET /v1/events/{event_id}/seats")
        );
    }
}
