//! Typed request parameters: a bad value is refused while the request is
//! deserialised, with a message that starts with "must …" (the server puts
//! the parameter's name in front).

use serde::{Deserialize, Serialize};

fn parse_err(msg: String) -> serde::de::value::Error {
    serde::de::Error::custom(msg)
}

/// A model folder's name as it appears in URLs: a folder directly under the models dir.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl TryFrom<String> for ModelName {
    type Error = serde::de::value::Error;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        if valid_model_name(&s) {
            Ok(ModelName(s))
        } else {
            Err(parse_err(format!(
                "must name a model folder (letters, digits, - _ .), got {s:?}"
            )))
        }
    }
}

impl From<ModelName> for String {
    fn from(m: ModelName) -> String {
        m.0
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content id of the store (an image or a set): 64 lowercase hex digits,
/// so it can never name anything outside the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentId(String);

impl ContentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContentId {
    type Error = serde::de::value::Error;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        if crate::store::valid_id(&s) {
            Ok(ContentId(s))
        } else {
            Err(parse_err(format!(
                "must be a content id of 64 hex digits, got {s:?}"
            )))
        }
    }
}

impl From<ContentId> for String {
    fn from(m: ContentId) -> String {
        m.0
    }
}

impl std::fmt::Display for ContentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A comma-separated list of maps and ranges, e.g. `0-7,12` (at most 65 a range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MapList(Vec<i64>);

impl MapList {
    pub fn maps(&self) -> &[i64] {
        &self.0
    }
}

impl Default for MapList {
    fn default() -> Self {
        MapList((0..8).collect())
    }
}

impl TryFrom<String> for MapList {
    type Error = serde::de::value::Error;
    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        let bad = || parse_err(format!("must look like 0-7,12,20, got {s:?}"));
        let num = |v: &str| v.trim().parse::<i64>().map_err(|_| bad());
        let mut out = vec![];
        for part in s.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if b < a || b - a > 64 {
                        return Err(bad());
                    }
                    out.extend(a..=b);
                }
                None => out.push(num(part)?),
            }
        }
        Ok(MapList(out))
    }
}

impl From<MapList> for String {
    fn from(m: MapList) -> String {
        m.0.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
