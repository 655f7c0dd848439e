//! `google.api.http` path templates and a matcher for them.
//!
//! Supports the subset of the grammar Marquee uses and grpc-gateway users expect:
//! literal segments, `*`, `{field}`, `{field=*}`, dotted field paths (`{a.b}`) and a
//! `:verb` suffix on the last segment (`/v1/bookings/{booking_id}:cancel`). Multi-segment
//! captures (`**`, `{name=shelves/*}`) are refused when the route table is built, so an
//! annotation the gateway cannot serve fails at start-up rather than at request time.

use std::fmt;

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: one segment, not bound to a field.
    Wildcard,
    /// `{field}` or `{field=*}`: one segment bound to a (possibly dotted) field path.
    Variable(String),
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    raw: String,
    segments: Vec<Segment>,
    verb: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("path template {0:?} must start with '/'")]
    NoLeadingSlash(String),
    #[error("path template {template:?}: {reason}")]
    Unsupported { template: String, reason: String },
}

/// Why a request path did not bind to a template it matched structurally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path segment for {field} is not valid percent-encoded UTF-8")]
pub struct DecodeError {
    pub field: String,
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let unsupported = |reason: &str| TemplateError::Unsupported {
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| TemplateError::NoLeadingSlash(template.to_owned()))?;
        // The verb is whatever follows the last ':' that is not inside braces.
        let (path, verb) = split_verb(rest);
        if verb.is_some_and(|v| v.is_empty() || v.contains('/')) {
            return Err(unsupported("empty or malformed verb"));
        }
        let mut segments = Vec::new();
        for part in split_segments(path) {
            let segment = if part == "*" {
                Segment::Wildcard
            } else if part == "**" {
                return Err(unsupported("'**' is not supported"));
            } else if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (field, pattern) = match inner.split_once('=') {
                    Some((field, pattern)) => (field, Some(pattern)),
                    None => (inner, None),
                };
                if pattern.is_some_and(|p| p != "*") {
                    return Err(unsupported(
                        "only {field} and {field=*} variables are supported",
                    ));
                }
                let valid = !field.is_empty()
                    && field.split('.').all(|p| {
                        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                if !valid {
                    return Err(unsupported("invalid field path in variable"));
                }
                Segment::Variable(field.to_owned())
            } else if part.is_empty() || part.contains(['{', '}']) {
                return Err(unsupported("empty segment or stray brace"));
            } else {
                Segment::Literal(part.to_owned())
            };
            segments.push(segment);
        }
        if segments.is_empty() && verb.is_some() {
            return Err(unsupported("verb without a path"));
        }
        Ok(Self {
            raw: template.to_owned(),
            segments,
            verb: verb.map(str::to_owned),
        })
    }

    /// The template as written in the annotation.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// Field paths bound by the template, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Variable(f) => Some(f.as_str()),
            _ => None,
        })
    }

    /// How specific the template is, for choosing between several that match one path:
    /// more literal segments win, then having a verb.
    pub fn specificity(&self) -> (usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (literals, self.verb.is_some())
    }

    /// Matches a request path (still percent-encoded, no query). `None` when the shape
    /// differs; `Some(Err)` when it matches but a variable is not valid UTF-8 once decoded.
    pub fn matches(&self, path: &str) -> Option<Result<Vec<(String, String)>, DecodeError>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => {
                let (head, tail) = rest.rsplit_once(':')?;
                // The verb belongs to the last segment only.
                if tail != verb || head.ends_with('/') {
                    return None;
                }
                head
            }
            None => rest,
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut bindings = Vec::new();
        for (segment, part) in self.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(lit) => {
                    if lit != part {
                        return None;
                    }
                }
                Segment::Wildcard => {
                    if part.is_empty() {
                        return None;
                    }
                }
                Segment::Variable(field) => {
                    if part.is_empty() {
                        return None;
                    }
                    match percent_decode_str(part).decode_utf8() {
                        Ok(value) => bindings.push((field.clone(), value.into_owned())),
                        Err(_) => {
                            return Some(Err(DecodeError {
                                field: field.clone(),
                            }));
                        }
                    }
                }
            }
        }
        Some(Ok(bindings))
    }

    /// The template with each variable renamed by `rename` (OpenAPI wants `{eventId}`).
    pub fn render_with(&self, rename: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(lit) => out.push_str(lit),
                Segment::Wildcard => out.push('*'),
                Segment::Variable(field) => {
                    out.push('{');
                    out.push_str(&rename(field));
                    out.push('}');
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn split_verb(path: &str) -> (&str, Option<&str>) {
    let mut depth = 0usize;
    let mut colon = None;
    for (i, c) in path.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colon = Some(i),
            _ => {}
        }
    }
    match colon {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    }
}

/// Splits on '/' outside braces (so `{name=a/*}` stays whole and is refused later).
fn split_segments(path: &str) -> Vec<&str> {
    if path.is_empty() {
        return Vec::new();
    }
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in path.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '/' if depth == 0 => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    parts
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathTemplate::parse(template)
            .expect("template parses")
            .matches(path)
            .map(|r| r.expect("decodes"))
    }

    #[test]
    fn literal_and_variable_segments() {
        assert_eq!(bind("/v1/events", "/v1/events"), Some(vec![]));
        assert_eq!(bind("/v1/events", "/v1/events/"), None);
        assert_eq!(bind("/v1/events", "/v1/event"), None);
        assert_eq!(
            bind("/v1/events/{event_id}/seats", "/v1/events/e-1/seats"),
            Some(vec![("event_id".into(), "e-1".into())])
        );
        assert_eq!(
            bind("/v1/events/{event_id}/seats", "/v1/events//seats"),
            None
        );
        assert_eq!(bind("/v1/events/{event_id}/seats", "/v1/events/e-1"), None);
        assert_eq!(
            bind("/v1/things/{thing_id=*}", "/v1/things/x"),
            Some(vec![("thing_id".into(), "x".into())])
        );
    }

    #[test]
    fn custom_verb_on_last_segment() {
        let t = "/v1/bookings/{booking_id}:cancel";
        assert_eq!(
            bind(t, "/v1/bookings/b-42:cancel"),
            Some(vec![("booking_id".into(), "b-42".into())])
        );
        assert_eq!(bind(t, "/v1/bookings/b-42"), None);
        assert_eq!(bind(t, "/v1/bookings/b-42:refund"), None);
        assert_eq!(bind(t, "/v1/bookings/:cancel"), None);
        // An id that itself contains ':' still leaves the verb for the last colon.
        assert_eq!(
            bind(t, "/v1/bookings/a:b:cancel"),
            Some(vec![("booking_id".into(), "a:b".into())])
        );
        let parsed = PathTemplate::parse(t).expect("parses");
        assert_eq!(parsed.verb(), Some("cancel"));
        assert_eq!(parsed.variables().collect::<Vec<_>>(), vec!["booking_id"]);
    }

    #[test]
    fn percent_decoding_of_variables() {
        assert_eq!(
            bind("/v1/events/{event_id}", "/v1/events/a%20b%2Fc"),
            Some(vec![("event_id".into(), "a b/c".into())])
        );
        assert_eq!(
            bind(
                "/v1/events/{event_id}",
                "/v1/events/%EC%BD%98%EC%84%9C%ED%8A%B8"
            ),
            Some(vec![("event_id".into(), "콘서트".into())])
        );
        let t = PathTemplate::parse("/v1/events/{event_id}").expect("parses");
        assert!(matches!(t.matches("/v1/events/%FF"), Some(Err(_))));
    }

    #[test]
    fn unsupported_templates_are_refused() {
        assert!(PathTemplate::parse("v1/events").is_err());
        assert!(PathTemplate::parse("/v1/{name=shelves/*}").is_err());
        assert!(PathTemplate::parse("/v1/**").is_err());
        assert!(PathTemplate::parse("/v1/{}").is_err());
        assert!(PathTemplate::parse("/v1/x:").is_err());
    }

    #[test]
    fn renders_for_openapi() {
        let t = PathTemplate::parse("/v1/bookings/{booking_id}:cancel").expect("parses");
        assert_eq!(
            t.render_with(|f| f.to_uppercase()),
            "/v1/bookings/{BOOKING_ID}:cancel"
        );
        assert!(
            t.specificity()
                > PathTemplate::parse("/v1/bookings/{booking_id}")
                    .expect("parses")
                    .specificity()
        );
    }
}
