//! Error responses, shaped exactly like grpc-gateway's: `{"code", "message", "details"}`
//! where `code` is the gRPC code number and `details` holds `google.rpc` detail messages
//! as JSON with an `@type`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value as Json, json};
use tonic::Code;
use tonic_types::{ErrorDetail, StatusExt};

use marquee_infra::errors::{code_for_http, http_status};

/// An error answered to a REST client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    pub details: Vec<Json>,
    allow: Option<String>,
}

impl ApiError {
    /// A gateway-side failure; the gRPC code follows from the HTTP status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code_for_http(status),
            message: message.into(),
            details: Vec::new(),
            allow: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }

    pub fn method_not_allowed(allowed: &[http::Method]) -> Self {
        let mut error = Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        error.allow = Some(
            allowed
                .iter()
                .map(http::Method::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        );
        error
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// An upstream's answer, mapped with the shared grpc-gateway table.
    pub fn from_status(status: &tonic::Status) -> Self {
        Self {
            status: http_status(status.code()),
            code: status.code(),
            message: status.message().to_owned(),
            details: render_details(status),
            allow: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Json {
        json!({
            "code": i32::from(self.code),
            "message": self.message,
            "details": self.details,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A struct, not a map, so the keys keep grpc-gateway's order.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            code: i32,
            message: &'a str,
            details: &'a [Json],
        }
        let body = serde_json::to_vec(&Body {
            code: i32::from(self.code),
            message: &self.message,
            details: &self.details,
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            headers.insert(header::ALLOW, allow);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `ErrorInfo` and `BadRequest` details as grpc-gateway renders them; others are left out.
fn render_details(status: &tonic::Status) -> Vec<Json> {
    status
        .get_error_details_vec()
        .into_iter()
        .filter_map(|detail| match detail {
            ErrorDetail::ErrorInfo(info) => Some(json!({
                "@type": tonic_types::ErrorInfo::TYPE_URL,
                "reason": info.reason,
                "domain": info.domain,
                "metadata": info.metadata,
            })),
            ErrorDetail::BadRequest(bad) => Some(json!({
                "@type": tonic_types::BadRequest::TYPE_URL,
                "fieldViolations": bad
                    .field_violations
                    .iter()
                    .map(|v| json!({"field": v.field, "description": v.description}))
                    .collect::<Vec<_>>(),
            })),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn status_with_error_info_renders_like_grpc_gateway() {
        let mut details = ErrorDetails::with_error_info(
            "SEAT_TAKEN",
            "booking.marquee",
            [("seatId".to_owned(), "s-1".to_owned())],
        );
        details.add_bad_request_violation("seat_ids", "seat s-1 is already held");
        let status = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "seat s-1 is taken",
            details,
        );
        let error = ApiError::from_status(&status);
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            error.body(),
            json!({
                "code": 9,
                "message": "seat s-1 is taken",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "SEAT_TAKEN",
                        "domain": "booking.marquee",
                        "metadata": {"seatId": "s-1"}
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": "seat_ids", "description": "seat s-1 is already held"}]
                    }
                ]
            })
        );
    }

    #[test]
    fn plain_status_has_empty_details() {
        let error = ApiError::from(tonic::Status::not_found("no such booking"));
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(
            error.body(),
            json!({"code": 5, "message": "no such booking", "details": []})
        );
        let error = ApiError::from(tonic::Status::unavailable("down"));
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn response_is_json_with_headers() {
        let response =
            ApiError::method_not_allowed(&[http::Method::GET, http::Method::POST]).into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, POST");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Json = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body["code"], 5);
        assert_eq!(body["details"], json!([]));
    }
}
