//! The reference seat-map page at `/`: plain HTML, CSS and JS compiled into the binary,
//! no build step. It talks only to the gateway's own REST and SSE routes.

use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};

/// The page and its two assets (also listed among the gateway's own routes).
pub const INDEX: &str = "/";
pub const SCRIPT: &str = "/ui/app.js";
pub const STYLE: &str = "/ui/app.css";

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");

/// Everything from this origin only: no inline script, no other hosts.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            // The assets are compiled in, so a new binary is a new page: revalidate.
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::GatewayConfig;

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_from_self_only() {
        let mut config = GatewayConfig::local("http://127.0.0.1:1", "http://127.0.0.1:1", "s");
        config.upstream_timeout = Duration::from_secs(5);
        let app = crate::router(&config).expect("router builds");
        for (path, content_type, needle) in [
            (INDEX, "text/html", "/ui/app.js"),
            (SCRIPT, "text/javascript", "seats:watch"),
            (STYLE, "text/css", ".seat"),
        ] {
            let request = Request::get(path).body(Body::empty()).expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers().clone();
            assert!(
                headers[CONTENT_TYPE]
                    .to_str()
                    .is_ok_and(|v| v.starts_with(content_type)),
                "{path}: {headers:?}"
            );
            assert!(
                headers[CONTENT_SECURITY_POLICY]
                    .to_str()
                    .is_ok_and(|v| v.starts_with("default-src 'self'")),
                "{path}: {headers:?}"
            );
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert!(
                String::from_utf8_lossy(&body).contains(needle),
                "{path} lacks {needle}"
            );
        }
    }
}
