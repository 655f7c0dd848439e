//! Streamed messages rendered as SSE frames once, and the renderings shared by every
//! stream of the gateway ([`Renderings`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use prost_reflect::{DynamicMessage, FieldDescriptor, MessageDescriptor, ReflectMessage, Value};

use crate::transcode::response_json;

/// A streamed message as its SSE frame, ready to be written to any client.
#[derive(Debug)]
pub struct Rendered {
    /// The event id as a number, if it is one: where a client's stream stands.
    pub order: Option<i64>,
    /// `event:`, `id:` and `data:` lines and the blank line that ends the event.
    pub frame: Bytes,
}

impl Rendered {
    fn new(id: Option<&str>, name: Option<&str>, data: &str) -> Self {
        let mut frame = String::with_capacity(data.len() + 64);
        if let Some(name) = name {
            frame.push_str("event: ");
            frame.push_str(name);
            frame.push('\n');
        }
        if let Some(id) = id {
            frame.push_str("id: ");
            frame.push_str(id);
            frame.push('\n');
        }
        for line in data.split('\n') {
            frame.push_str("data: ");
            frame.push_str(line);
            frame.push('\n');
        }
        frame.push('\n');
        Self {
            order: id.and_then(|id| id.parse().ok()),
            frame: Bytes::from(frame),
        }
    }
}

/// Renderings of recent stream messages by their encoded bytes, shared by every SSE
/// stream of the gateway. Bounded: it starts over when it holds too much.
#[derive(Debug, Default)]
pub struct Renderings {
    cache: RwLock<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<Bytes, Arc<Rendered>>,
    /// Bytes held by the entries (keys and JSON).
    bytes: usize,
}

/// Most renderings kept, and their most bytes (keys and JSON) in all.
const RENDERINGS_LIMIT: usize = 4096;
const RENDERINGS_BYTES_LIMIT: usize = 64 * 1024 * 1024;

impl Renderings {
    pub fn get_or_render(
        &self,
        encoded: Bytes,
        render: impl FnOnce(&[u8]) -> Result<Rendered, String>,
    ) -> Result<Arc<Rendered>, String> {
        let found = self
            .cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entries
            .get(&encoded)
            .cloned();
        if let Some(found) = found {
            return Ok(found);
        }
        let rendered = Arc::new(render(&encoded)?);
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.entries.len() >= RENDERINGS_LIMIT || cache.bytes >= RENDERINGS_BYTES_LIMIT {
            cache.entries.clear();
            cache.bytes = 0;
        }
        cache.bytes += encoded.len() + rendered.frame.len();
        cache.entries.insert(encoded, rendered.clone());
        Ok(rendered)
    }
}

pub fn render(
    message: &DynamicMessage,
    id_field: Option<&FieldDescriptor>,
) -> Result<Rendered, String> {
    let json = response_json(message, None)?;
    let data = String::from_utf8(json).map_err(|e| e.to_string())?;
    let id = id_field.and_then(|field| match message.get_field(field).as_ref() {
        Value::I64(v) => Some(v.to_string()),
        Value::U64(v) => Some(v.to_string()),
        Value::I32(v) => Some(v.to_string()),
        Value::U32(v) => Some(v.to_string()),
        Value::String(v) if !v.is_empty() => Some(v.clone()),
        _ => None,
    });
    let descriptor: MessageDescriptor = message.descriptor();
    let name = descriptor
        .oneofs()
        .filter(|oneof| !oneof.is_synthetic())
        .flat_map(|oneof| oneof.fields().collect::<Vec<_>>())
        .find(|field| message.has_field(field))
        .map(|field| field.json_name().to_owned());
    Ok(Rendered::new(id.as_deref(), name.as_deref(), &data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_rendered_once_however_many_streams_carry_it() {
        let renderings = Renderings::default();
        let mut renders = 0;
        let mut render = |bytes: &[u8]| {
            renders += 1;
            Ok(Rendered::new(
                Some("7"),
                None,
                &format!("{} bytes", bytes.len()),
            ))
        };
        let first = renderings
            .get_or_render(Bytes::from_static(b"abc"), &mut render)
            .expect("rendered");
        let again = renderings
            .get_or_render(Bytes::from_static(b"abc"), &mut render)
            .expect("rendered");
        let other = renderings
            .get_or_render(Bytes::from_static(b"abcd"), &mut render)
            .expect("rendered");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(other.frame, "id: 7\ndata: 4 bytes\n\n");
        assert_eq!(other.order, Some(7));
        assert_eq!(renders, 2);
    }

    #[test]
    fn a_frame_names_its_event_and_carries_each_data_line() {
        let rendered = Rendered::new(Some("12"), Some("changes"), "{\"a\":1}\n{\"b\":2}");
        assert_eq!(
            rendered.frame,
            "event: changes\nid: 12\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n"
        );
        assert_eq!(rendered.order, Some(12));
        assert_eq!(Rendered::new(Some("x-1"), None, "{}").order, None);
        assert_eq!(Rendered::new(None, None, "{}").frame, "data: {}\n\n");
    }
}
