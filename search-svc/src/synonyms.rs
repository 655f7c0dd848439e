//! Synonym groups loaded from a text file kept with the index (`synonyms.txt`): one
//! group per line, comma-separated, `#` starts a comment.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Every term of every group, lower-cased, mapped to the other terms of its groups.
#[derive(Debug, Clone, Default)]
pub struct Synonyms {
    map: HashMap<String, Arc<[String]>>,
}

impl Synonyms {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading synonyms {}: {e}", path.display()))?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let terms: Vec<String> = line
                .split(',')
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            for term in &terms {
                let others = groups.entry(term.clone()).or_default();
                for other in &terms {
                    if other != term && !others.contains(other) {
                        others.push(other.clone());
                    }
                }
            }
        }
        Self {
            map: groups.into_iter().map(|(k, v)| (k, v.into())).collect(),
        }
    }

    /// The other terms of `word`'s groups (`word` lower-cased), if any.
    pub fn of(&self, word: &str) -> Option<&[String]> {
        self.map.get(word).map(|v| &v[..])
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_symmetric() {
        let s = Synonyms::parse("# c\n축제, 페스티벌, Festival\n");
        assert_eq!(s.of("festival").map(<[String]>::len), Some(2));
        assert!(
            s.of("축제")
                .is_some_and(|o| o.contains(&"festival".to_owned()))
        );
        assert!(s.of("concert").is_none());
    }
}
