//! Streamed messages rendered as SSE events once, and the renderings shared by every
//! stream of the gateway ([`Renderings`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::response::sse::Event;
use bytes::Bytes;
use prost_reflect::{DynamicMessage, FieldDescriptor, MessageDescriptor, ReflectMessage, Value};

use crate::transcode::response_json;

/// A streamed message as an SSE event, before it is written.
#[derive(Debug)]
pub struct Rendered {
    id: Option<String>,
    name: Option<String>,
    data: String,
}

impl Rendered {
    pub fn event(&self) -> Event {
        let mut event = Event::default().data(&self.data);
        if let Some(id) = &self.id {
            event = event.id(id);
        }
        if let Some(name) = &self.name {
            event = event.event(name);
        }
        event
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
        cache.bytes += encoded.len() + rendered.data.len();
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
    Ok(Rendered { id, name, data })
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
            Ok(Rendered {
                id: Some("7".into()),
                name: None,
                data: format!("{} bytes", bytes.len()),
            })
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
        assert_eq!(other.data, "4 bytes");
        assert_eq!(renders, 2);
    }
}
