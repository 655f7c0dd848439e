//! Property tests of path templates: any template the grammar allows parses back to
//! itself, a path built from a template binds exactly the values it was built from,
//! and nothing (template or path) makes the parser or the matcher panic.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use proptest::prelude::*;

use super::*;

/// What a client must escape in a path segment: the separators, `%` itself, and what
/// ends a path (`?`, `#`). A `:` is left as is, to exercise "the verb is after the last
/// colon".
const SEGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'/').add(b'%').add(b'?').add(b'#');

fn literal() -> impl Strategy<Value = String> {
    "[a-z0-9_.~-]{1,8}".prop_filter("a literal is not a wildcard", |s| s != "*")
}

fn field_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z_][a-z0-9_]{0,6}", 1..=3).prop_map(|parts| parts.join("."))
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        3 => literal().prop_map(Segment::Literal),
        1 => Just(Segment::Wildcard),
        2 => field_path().prop_map(Segment::Variable),
    ]
}

/// A template the gateway serves, and how it is written (`{f}` or `{f=*}` at random).
fn template() -> impl Strategy<Value = (Vec<Segment>, Option<String>, String)> {
    (
        prop::collection::vec((segment(), any::<bool>()), 0..6),
        prop::option::of("[a-z][a-zA-Z0-9]{0,7}"),
    )
        .prop_filter("a verb needs a path", |(segments, verb)| {
            !(segments.is_empty() && verb.is_some())
        })
        .prop_map(|(segments, verb)| {
            let mut raw = String::new();
            for (segment, long_form) in &segments {
                raw.push('/');
                match segment {
                    Segment::Literal(lit) => raw.push_str(lit),
                    Segment::Wildcard => raw.push('*'),
                    Segment::Variable(field) if *long_form => {
                        raw.push_str(&format!("{{{field}=*}}"));
                    }
                    Segment::Variable(field) => raw.push_str(&format!("{{{field}}}")),
                }
            }
            if raw.is_empty() {
                raw.push('/');
            }
            if let Some(verb) = &verb {
                raw.push(':');
                raw.push_str(verb);
            }
            (segments.into_iter().map(|(s, _)| s).collect(), verb, raw)
        })
}

/// A template, a request path built from it (each wildcard and variable filled with a
/// non-empty value, escaped as a client would) and the bindings the path must yield.
fn template_and_path() -> impl Strategy<Value = (PathTemplate, String, Vec<(String, String)>)> {
    template().prop_flat_map(|(segments, _, raw)| {
        let values = prop::collection::vec("\\PC{1,6}", segments.len());
        (Just(raw), Just(segments), values).prop_map(|(raw, segments, values)| {
            let template = PathTemplate::parse(&raw).expect("generated templates parse");
            let mut path = String::new();
            let mut bindings = Vec::new();
            for (segment, value) in segments.iter().zip(values) {
                path.push('/');
                match segment {
                    Segment::Literal(lit) => path.push_str(lit),
                    Segment::Wildcard => {
                        path.push_str(&utf8_percent_encode(&value, SEGMENT).to_string());
                    }
                    Segment::Variable(field) => {
                        path.push_str(&utf8_percent_encode(&value, SEGMENT).to_string());
                        bindings.push((field.clone(), value));
                    }
                }
            }
            if path.is_empty() {
                path.push('/');
            }
            if let Some(verb) = template.verb() {
                path.push(':');
                path.push_str(verb);
            }
            (template, path, bindings)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_supported_template_parses_to_what_was_written((segments, verb, raw) in template()) {
        let parsed = PathTemplate::parse(&raw);
        prop_assert!(parsed.is_ok(), "{raw:?} refused: {parsed:?}");
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.segments(), &segments[..]);
        prop_assert_eq!(parsed.verb(), verb.as_deref());
        prop_assert_eq!(parsed.as_str(), raw.as_str());
        // Rendering (as OpenAPI does) and parsing again gives the same template.
        let rendered = parsed.render_with(str::to_owned);
        let again = PathTemplate::parse(&rendered);
        prop_assert!(again.is_ok(), "{rendered:?} refused: {again:?}");
        let again = again.unwrap();
        prop_assert_eq!(again.segments(), parsed.segments());
        prop_assert_eq!(again.verb(), parsed.verb());
    }

    #[test]
    fn a_path_built_from_a_template_binds_the_values_it_was_built_from(
        (template, path, bindings) in template_and_path()
    ) {
        let matched = template.matches(&path);
        prop_assert_eq!(matched, Some(Ok(bindings)), "{} against {:?}", template, path);
    }

    #[test]
    fn a_path_with_a_segment_more_or_less_or_another_verb_does_not_match(
        (template, path, _) in template_and_path(),
        extra in "[a-z0-9]{1,5}",
    ) {
        // One segment more, before the verb.
        let (head, verb) = match template.verb() {
            Some(verb) => (path[..path.len() - verb.len() - 1].to_owned(), format!(":{verb}")),
            None => (path.clone(), String::new()),
        };
        let longer = if head == "/" { format!("/{extra}{verb}") } else { format!("{head}/{extra}{verb}") };
        prop_assert_eq!(template.matches(&longer), None, "{} against {:?}", template, longer);
        // One segment less.
        if let Some((shorter, _)) = head.rsplit_once('/') {
            let shorter = format!("{shorter}{verb}");
            if !template.segments().is_empty() && shorter != path {
                prop_assert_eq!(template.matches(&shorter), None, "{} against {:?}", template, shorter);
            }
        }
        // Another verb, or none where one is required.
        if let Some(v) = template.verb() {
            prop_assert_eq!(template.matches(&head), None, "{} against {:?}", template, head);
            let other = format!("{head}:{v}x");
            prop_assert_eq!(template.matches(&other), None, "{} against {:?}", template, other);
        }
    }

    #[test]
    fn parsing_and_matching_never_panic(
        raw in prop_oneof![any::<String>(), "[/{}=*:.a-z_%]{0,24}"],
        path in prop_oneof![any::<String>(), "[/{}:%a-f0-9]{0,24}"],
    ) {
        if let Ok(template) = PathTemplate::parse(&raw) {
            // What parses renders and parses again.
            let rendered = template.render_with(str::to_owned);
            prop_assert!(PathTemplate::parse(&rendered).is_ok(), "{raw:?} rendered as {rendered:?}");
            if let Some(Ok(bindings)) = template.matches(&path) {
                let fields: Vec<&str> = template.variables().collect();
                let bound: Vec<&str> = bindings.iter().map(|(f, _)| f.as_str()).collect();
                prop_assert_eq!(bound, fields);
            }
        }
    }
}
