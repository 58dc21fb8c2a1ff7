//! Items as DynamoDB JSON (`{"pk":{"S":"USER#1"},"n":{"N":"3"}}`), the format of DynamoDB's
//! own S3 export: every attribute keeps its type (a number stays a number with all its digits,
//! a binary stays binary, a set stays a set), so a restore writes back exactly what was read.

use aws_sdk_dynamodb::{primitives::Blob, types::AttributeValue};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Map, Value};

use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not DynamoDB JSON: {0}")]
pub struct FormatError(pub String);

pub fn item_to_json(item: &Item) -> Value {
    // Sorted keys: the same item always gives the same line (checksums compare runs).
    let mut keys: Vec<&String> = item.keys().collect();
    keys.sort();
    let map: Map<String, Value> = keys
        .into_iter()
        .map(|k| (k.clone(), value_to_json(&item[k])))
        .collect();
    Value::Object(map)
}

pub fn item_from_json(value: &Value) -> Result<Item, FormatError> {
    let map = value
        .as_object()
        .ok_or_else(|| FormatError("an item must be an object".into()))?;
    map.iter()
        .map(|(k, v)| Ok((k.clone(), value_from_json(v)?)))
        .collect()
}

fn value_to_json(value: &AttributeValue) -> Value {
    let (tag, inner) = match value {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", Value::String(STANDARD.encode(b.as_ref()))),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        AttributeValue::Null(_) => ("NULL", Value::Bool(true)),
        AttributeValue::Ss(items) => ("SS", strings(items)),
        AttributeValue::Ns(items) => ("NS", strings(items)),
        AttributeValue::Bs(items) => (
            "BS",
            Value::Array(
                items
                    .iter()
                    .map(|b| Value::String(STANDARD.encode(b.as_ref())))
                    .collect(),
            ),
        ),
        AttributeValue::L(items) => ("L", Value::Array(items.iter().map(value_to_json).collect())),
        AttributeValue::M(map) => ("M", item_to_json(map)),
        // A type newer than this code: kept visible rather than dropped silently.
        _ => ("UNKNOWN", Value::Null),
    };
    let mut out = Map::new();
    out.insert(tag.into(), inner);
    Value::Object(out)
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

fn value_from_json(value: &Value) -> Result<AttributeValue, FormatError> {
    let map = value
        .as_object()
        .filter(|m| m.len() == 1)
        .ok_or_else(|| FormatError(format!("an attribute must be {{\"T\": value}}: {value}")))?;
    let Some((tag, inner)) = map.iter().next() else {
        return Err(FormatError("empty attribute".into()));
    };
    let text = || {
        inner
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| FormatError(format!("{tag} takes a string")))
    };
    let texts = || -> Result<Vec<String>, FormatError> {
        inner
            .as_array()
            .ok_or_else(|| FormatError(format!("{tag} takes a list")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| FormatError(format!("{tag} holds strings")))
            })
            .collect()
    };
    let binary = |text: &str| {
        STANDARD
            .decode(text)
            .map(Blob::new)
            .map_err(|e| FormatError(format!("bad base64: {e}")))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "B" => AttributeValue::B(binary(&text()?)?),
        "BOOL" => AttributeValue::Bool(
            inner
                .as_bool()
                .ok_or_else(|| FormatError("BOOL takes true or false".into()))?,
        ),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(texts()?),
        "NS" => AttributeValue::Ns(texts()?),
        "BS" => AttributeValue::Bs(
            texts()?
                .iter()
                .map(|t| binary(t))
                .collect::<Result<_, _>>()?,
        ),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .ok_or_else(|| FormatError("L takes a list".into()))?
                .iter()
                .map(value_from_json)
                .collect::<Result<_, _>>()?,
        ),
        "M" => AttributeValue::M(item_from_json(inner)?),
        other => return Err(FormatError(format!("unknown type {other}"))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_type_survives_the_round_trip() {
        let item: Item = HashMap::from([
            ("s".into(), AttributeValue::S("héllo".into())),
            (
                "n".into(),
                AttributeValue::N("12345678901234567890.5".into()),
            ),
            ("b".into(), AttributeValue::B(Blob::new(vec![0, 255, 7]))),
            ("t".into(), AttributeValue::Bool(true)),
            ("z".into(), AttributeValue::Null(true)),
            (
                "ss".into(),
                AttributeValue::Ss(vec!["a".into(), "b".into()]),
            ),
            (
                "ns".into(),
                AttributeValue::Ns(vec!["1".into(), "2.5".into()]),
            ),
            ("bs".into(), AttributeValue::Bs(vec![Blob::new(vec![1])])),
            (
                "l".into(),
                AttributeValue::L(vec![
                    AttributeValue::N("1".into()),
                    AttributeValue::S("x".into()),
                ]),
            ),
            (
                "m".into(),
                AttributeValue::M(HashMap::from([("k".into(), AttributeValue::Bool(false))])),
            ),
        ]);
        let json = item_to_json(&item);
        assert_eq!(json["n"]["N"], "12345678901234567890.5", "all the digits");
        let line = json.to_string();
        let back = item_from_json(&serde_json::from_str(&line).unwrap()).unwrap();
        assert_eq!(back, item);
        assert_eq!(
            item_to_json(&back).to_string(),
            line,
            "the same line every time"
        );
    }

    #[test]
    fn malformed_items_are_errors_not_panics() {
        for bad in [
            r#"[]"#,
            r#"{"a":"plain"}"#,
            r#"{"a":{"S":1}}"#,
            r#"{"a":{"Q":"x"}}"#,
            r#"{"a":{"S":"x","N":"1"}}"#,
            r#"{"a":{"B":"!!"}}"#,
            r#"{"a":{"L":[{"S":2}]}}"#,
        ] {
            let value: Value = serde_json::from_str(bad).unwrap();
            assert!(item_from_json(&value).is_err(), "{bad}");
        }
    }
}
