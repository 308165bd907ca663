//! `FilterCriteria`, applied as Lambda applies it to Kinesis records.
//!
//! - Up to five patterns, ORed: a record goes to the function if any pattern matches.
//! - A pattern names the record's `data` (the decoded record, read as JSON) and, on older
//!   mappings, metadata such as `partitionKey`. Within a pattern every named field must match.
//! - A record whose data is not JSON matches no pattern that names `data`.
//! - A record that matches no pattern is dropped for good: never delivered, counted as processed.
//!
//! The rule syntax is EventBridge's: a list of values (any may match) of exact values (strings,
//! numbers, `null`), and `{"prefix"}`, `{"suffix"}`, `{"equals-ignore-case"}`, `{"anything-but"}`,
//! `{"numeric": [op, n, ...]}` and `{"exists": bool}`; nested objects name nested fields; `$or`
//! holds alternative sub-patterns.

use serde_json::{Map, Value};

/// The record as the filters see it.
pub struct Candidate<'a> {
    /// The partition key.
    pub partition_key: &'a str,
    /// The sequence number.
    pub sequence_number: &'a str,
    /// The data.
    pub data: &'a [u8],
}

/// Whether the record passes the filters (no filters: everything passes).
pub fn passes(filters: &[Value], record: &Candidate<'_>) -> bool {
    if filters.is_empty() {
        return true;
    }
    let data: Option<Value> = serde_json::from_slice(record.data).ok();
    let mut fields = Map::new();
    fields.insert("partitionKey".into(), record.partition_key.into());
    fields.insert("sequenceNumber".into(), record.sequence_number.into());
    fields.insert("kinesisSchemaVersion".into(), "1.0".into());
    match data {
        Some(d) => {
            fields.insert("data".into(), d);
        }
        None => {
            // Non-JSON data: a pattern naming `data` cannot match.
            if filters.iter().all(|f| f.get("data").is_some()) {
                return false;
            }
        }
    }
    let record = Value::Object(fields);
    filters.iter().any(|f| {
        if f.get("data").is_some() && record.get("data").is_none() {
            return false;
        }
        object_matches(f, Some(&record))
    })
}

fn object_matches(pattern: &Value, value: Option<&Value>) -> bool {
    let Some(pattern) = pattern.as_object() else {
        return false;
    };
    pattern.iter().all(|(key, rule)| {
        if key == "$or" {
            return rule
                .as_array()
                .is_some_and(|alts| alts.iter().any(|alt| object_matches(alt, value)));
        }
        let field = value.and_then(|v| v.get(key));
        match rule {
            Value::Object(_) => object_matches(rule, field),
            Value::Array(matchers) => matchers.iter().any(|m| matches(m, field)),
            _ => false,
        }
    })
}

/// One matcher against a field (absent: `None`). A field holding an array matches when any of
/// its elements does.
fn matches(matcher: &Value, field: Option<&Value>) -> bool {
    if let Some(Value::Array(items)) = field {
        return items.iter().any(|i| matches(matcher, Some(i)));
    }
    let Value::Object(rule) = matcher else {
        // An exact value.
        return field == Some(matcher);
    };
    let Some((op, arg)) = rule.iter().next() else {
        return false;
    };
    match op.as_str() {
        "exists" => arg.as_bool() == Some(field.is_some()),
        "prefix" => text(field)
            .zip(arg.as_str())
            .is_some_and(|(f, p)| f.starts_with(p)),
        "suffix" => text(field)
            .zip(arg.as_str())
            .is_some_and(|(f, s)| f.ends_with(s)),
        "equals-ignore-case" => text(field)
            .zip(arg.as_str())
            .is_some_and(|(f, s)| f.eq_ignore_ascii_case(s)),
        "anything-but" => match field {
            None => false,
            Some(f) => match arg {
                Value::Array(values) => !values.contains(f),
                Value::Object(inner) => match inner.get("prefix").and_then(Value::as_str) {
                    Some(p) => text(field).is_some_and(|t| !t.starts_with(p)),
                    None => false,
                },
                single => f != single,
            },
        },
        "numeric" => {
            let (Some(n), Some(conds)) = (field.and_then(Value::as_f64), arg.as_array()) else {
                return false;
            };
            conds.chunks(2).all(|c| {
                let bound = c.get(1).and_then(Value::as_f64);
                match (c[0].as_str(), bound) {
                    (Some("="), Some(b)) => n == b,
                    (Some("<"), Some(b)) => n < b,
                    (Some("<="), Some(b)) => n <= b,
                    (Some(">"), Some(b)) => n > b,
                    (Some(">="), Some(b)) => n >= b,
                    _ => false,
                }
            })
        }
        _ => false,
    }
}

fn text(field: Option<&Value>) -> Option<&str> {
    field.and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filters: &[Value], data: &str) -> bool {
        passes(
            filters,
            &Candidate {
                partition_key: "k",
                sequence_number: "1",
                data: data.as_bytes(),
            },
        )
    }

    /// The template's own filters: the wanted types, and JSON with no eventType.
    #[test]
    fn the_templates_filters() {
        let f = [
            json!({"data": {"eventType": ["ORDER_PLACED"]}}),
            json!({"data": {"eventType": [{"exists": false}]}}),
        ];
        assert!(check(&f, r#"{"eventType":"ORDER_PLACED"}"#));
        assert!(!check(&f, r#"{"eventType":"ORDER_CANCELLED"}"#));
        assert!(check(&f, r#"{"eventId":"e1"}"#), "no eventType passes");
        assert!(!check(&f, "not json"), "non-JSON data is dropped");
        assert!(check(&[], "not json"), "no filters, everything passes");
    }

    #[test]
    fn operators() {
        let d = r#"{"a": "us-east-1", "n": 15, "tags": ["x", "y"], "o": {"p": null}}"#;
        let yes = [
            json!({"data": {"a": [{"prefix": "us-"}]}}),
            json!({"data": {"a": [{"suffix": "-1"}]}}),
            json!({"data": {"a": [{"equals-ignore-case": "US-EAST-1"}]}}),
            json!({"data": {"a": [{"anything-but": ["eu-west-1"]}]}}),
            json!({"data": {"n": [{"numeric": [">", 10, "<=", 15]}]}}),
            json!({"data": {"tags": ["y"]}}),
            json!({"data": {"o": {"p": [null]}}}),
            json!({"partitionKey": ["k"]}),
            json!({"data": {"$or": [{"a": ["nope"]}, {"n": [15]}]}}),
        ];
        for p in &yes {
            assert!(check(std::slice::from_ref(p), d), "{p}");
        }
        let no = [
            json!({"data": {"a": [{"prefix": "eu-"}]}}),
            json!({"data": {"a": [{"anything-but": "us-east-1"}]}}),
            json!({"data": {"n": [{"numeric": ["<", 10]}]}}),
            json!({"data": {"missing": [{"exists": true}]}}),
            json!({"data": {"a": ["us-east-1"], "n": [16]}}),
        ];
        for p in &no {
            assert!(!check(std::slice::from_ref(p), d), "{p}");
        }
    }
}
