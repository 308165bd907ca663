//! CloudWatch metrics, one set per invocation, in the Embedded Metric Format (EMF).
//!
//! Each invocation writes its counts as EMF lines straight to stdout, one JSON object a line, and
//! CloudWatch Logs turns them into metrics. They bypass `tracing` on purpose: a log formatter
//! (or Lambda's JSON log format) would wrap them, and a wrapped line is no longer EMF.
//!
//! - one line with the dimension `Function`: every count of the invocation and `BatchDuration`;
//! - one line per skipped event type with the dimensions `Function` and `EventType`: the count
//!   of skipped records for that type (no such line when nothing was skipped).
//!
//! The counts and their metrics' names are the engine's (`crate::engine::stats`); this module
//! only writes them.
//!
//! The format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::config::{ConfigError, Env, Problems};

/// The namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "kinesis-fanout";

/// Where the metrics go.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `METRICS_NAMESPACE` | `kinesis-fanout` | the CloudWatch namespace of the EMF metrics |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The CloudWatch namespace.
    pub namespace: String,
}

impl Default for MetricsSettings {
    /// The default namespace.
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }
}

impl MetricsSettings {
    /// Reads the settings, keeping each problem in `problems`.
    pub fn read(env: &Env, problems: &mut Problems) -> Self {
        let namespace = env
            .optional("METRICS_NAMESPACE")
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        if !valid_namespace(&namespace) {
            problems.push(ConfigError::Invalid {
                name: "METRICS_NAMESPACE",
                value: namespace.clone(),
                reason: "expected 1 to 255 letters, digits, spaces or . - _ / # :, not starting \
                         with ':' or 'AWS/'"
                    .into(),
            });
        }
        Self { namespace }
    }
}

/// One invocation's metrics: the counts, by metric name, and one count by event type.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The function (the `Function` dimension).
    pub function: &'a str,
    /// Each count, by its metric's name, in order.
    pub counts: &'a [(&'static str, u64)],
    /// The metric counted by event type (the `EventType` dimension), and its counts.
    pub by_type: (&'static str, &'a BTreeMap<String, u64>),
    /// How long the batch took.
    pub duration: Duration,
}

/// The dimension value that stands for an event type CloudWatch would not accept as one (blank,
/// longer than 1024 characters, or not printable ASCII).
pub const INVALID_EVENT_TYPE: &str = "(invalid)";

/// The unit of the counts.
const COUNT: &str = "Count";
/// The unit of `BatchDuration`.
const MILLISECONDS: &str = "Milliseconds";

/// Whether `namespace` is one CloudWatch accepts: 1 to 255 characters among letters, digits,
/// `. - _ / # :` and space, not starting with `:` nor with the reserved `AWS/`.
pub fn valid_namespace(namespace: &str) -> bool {
    (1..=255).contains(&namespace.len())
        && !namespace.starts_with(':')
        && !namespace.starts_with("AWS/")
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
}

/// The EMF lines of one invocation, without trailing newlines: the function's line, then one line
/// per event type of `by_type`. `timestamp_ms` is the time of the metrics, in milliseconds since
/// the epoch.
pub fn emf_lines(namespace: &str, invocation: &Invocation<'_>, timestamp_ms: u64) -> Vec<String> {
    // Milliseconds, to the microsecond.
    let duration_ms = invocation.duration.as_micros() as f64 / 1000.0;
    let mut metrics: Vec<(&str, &str, Value)> = invocation
        .counts
        .iter()
        .map(|&(name, value)| (name, COUNT, Value::from(value)))
        .collect();
    metrics.push(("BatchDuration", MILLISECONDS, Value::from(duration_ms)));
    let function = invocation.function;
    let mut lines = vec![line(
        namespace,
        timestamp_ms,
        &[("Function", function)],
        &metrics,
    )];

    // Event types CloudWatch would refuse as dimension values are counted together.
    let (metric, counts) = invocation.by_type;
    let mut by_type: Vec<(&str, u64)> = Vec::new();
    for (event_type, &count) in counts {
        let name = if valid_dimension_value(event_type) {
            event_type.as_str()
        } else {
            INVALID_EVENT_TYPE
        };
        match by_type.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += count,
            None => by_type.push((name, count)),
        }
    }
    for (event_type, count) in by_type {
        lines.push(line(
            namespace,
            timestamp_ms,
            &[("Function", function), ("EventType", event_type)],
            &[(metric, COUNT, Value::from(count))],
        ));
    }
    lines
}

/// Writes the EMF lines of one invocation to `out` (the functions give stdout), timestamped now.
/// Write errors are ignored: metrics never fail an invocation.
pub fn emit(out: &mut impl Write, namespace: &str, invocation: &Invocation<'_>) {
    let now_ms = u64::try_from(super::time::now_ms()).unwrap_or(0);
    let lines = emf_lines(namespace, invocation, now_ms);
    write_lines(out, &lines);
}

/// Writes the lines, each with a newline, to `out` in one write, then flushes; errors are ignored.
pub fn write_lines(out: &mut impl Write, lines: &[String]) {
    // One write: stdout is locked per write, so another thread's log line never lands between.
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    if out.write_all(text.as_bytes()).is_ok() {
        let _ = out.flush();
    }
}

/// Whether CloudWatch accepts `value` as a dimension value: 1 to 1024 printable ASCII characters,
/// not all spaces.
fn valid_dimension_value(value: &str) -> bool {
    value.len() <= 1024
        && !value.trim().is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// One EMF document: the dimensions and metrics as top-level members, and the `_aws` directive
/// that names them.
fn line(
    namespace: &str,
    timestamp_ms: u64,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, Value)],
) -> String {
    let dimension_set: Vec<&str> = dimensions.iter().map(|&(name, _)| name).collect();
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit }))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimension_set],
                "Metrics": definitions,
            }],
        }),
    );
    for &(name, value) in dimensions {
        root.insert(name.into(), Value::from(value));
    }
    for (name, _, value) in metrics {
        root.insert((*name).into(), value.clone());
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: u64 = 1_700_000_000_123;

    /// Distinct numbers in every count.
    const COUNTS: [(&str, u64); 4] = [
        ("RecordsReceived", 100),
        ("RecordsApplied", 11),
        ("RecordsSkipped", 30),
        ("RecordsPoison", 2),
    ];

    fn skipped() -> BTreeMap<String, u64> {
        BTreeMap::from([("ORDER_SHIPPED".to_owned(), 13), ("PING".to_owned(), 17)])
    }

    fn invocation<'a>(by_type: &'a BTreeMap<String, u64>, duration: Duration) -> Invocation<'a> {
        Invocation {
            function: "email-notifier",
            counts: &COUNTS,
            by_type: ("RecordsSkipped", by_type),
            duration,
        }
    }

    fn parse(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| {
                assert!(!l.contains('\n'), "one line each: {l}");
                serde_json::from_str(l).unwrap()
            })
            .collect()
    }

    /// Checks a document against the EMF specification and returns its one directive's namespace,
    /// dimension set and (metric, unit) pairs.
    fn directive(doc: &Value) -> (String, Vec<String>, Vec<(String, String)>) {
        let aws = doc["_aws"].as_object().unwrap();
        assert!(aws["Timestamp"].is_u64(), "Timestamp is an integer: {doc}");
        assert_eq!(aws["Timestamp"].as_u64(), Some(TS));
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = directives[0].as_object().unwrap();
        let mut keys: Vec<&String> = d.keys().collect();
        keys.sort();
        assert_eq!(keys, ["Dimensions", "Metrics", "Namespace"]);
        let namespace = d["Namespace"].as_str().unwrap().to_owned();
        assert!(valid_namespace(&namespace));

        let sets = d["Dimensions"].as_array().unwrap();
        assert_eq!(sets.len(), 1);
        let set: Vec<String> = sets[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        assert!(!set.is_empty() && set.len() <= 30);
        for name in &set {
            assert!(
                doc[name].is_string(),
                "dimension {name} is a top-level string"
            );
        }

        let metrics = d["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        let mut seen = Vec::new();
        for m in metrics {
            let m = m.as_object().unwrap();
            let name = m["Name"].as_str().unwrap().to_owned();
            let unit = m["Unit"].as_str().unwrap().to_owned();
            assert!(
                doc[&name].is_number(),
                "metric {name} is a top-level number"
            );
            assert!(!seen.iter().any(|(n, _)| *n == name), "{name} once");
            seen.push((name, unit));
        }
        (namespace, set, seen)
    }

    /// The function's line: valid EMF, every count as given, the duration in milliseconds.
    #[test]
    fn function_line_is_valid_emf_with_the_counts() {
        let skipped = skipped();
        let lines = emf_lines(
            "ns/x",
            &invocation(&skipped, Duration::from_micros(12_345)),
            TS,
        );
        let docs = parse(&lines);
        assert_eq!(
            docs.len(),
            3,
            "the function's line and one per skipped type"
        );
        let doc = &docs[0];
        let (namespace, dims, metrics) = directive(doc);
        assert_eq!(namespace, "ns/x");
        assert_eq!(dims, ["Function"]);
        assert_eq!(doc["Function"], "email-notifier");
        assert_eq!(metrics.len(), COUNTS.len() + 1);
        for (name, value) in COUNTS {
            assert_eq!(doc[name].as_u64(), Some(value), "{name}");
            assert!(
                metrics.contains(&(name.into(), "Count".into())),
                "{name} is a Count"
            );
        }
        assert_eq!(doc["BatchDuration"].as_f64(), Some(12.345));
        assert!(metrics.contains(&("BatchDuration".into(), "Milliseconds".into())));
    }

    /// One line per skipped type, with both dimensions and that type's count.
    #[test]
    fn one_line_per_skipped_type() {
        let skipped = skipped();
        let lines = emf_lines("ns", &invocation(&skipped, Duration::ZERO), TS);
        let docs = parse(&lines);
        let mut seen = BTreeMap::new();
        for doc in &docs[1..] {
            let (namespace, dims, metrics) = directive(doc);
            assert_eq!(namespace, "ns");
            assert_eq!(dims, ["Function", "EventType"]);
            assert_eq!(metrics, [("RecordsSkipped".into(), "Count".into())]);
            assert_eq!(doc["Function"], "email-notifier");
            let t = doc["EventType"].as_str().unwrap().to_owned();
            seen.insert(t, doc["RecordsSkipped"].as_u64().unwrap());
        }
        assert_eq!(seen, skipped);
    }

    /// No per-type line when nothing was skipped.
    #[test]
    fn no_type_line_without_skips() {
        let none = BTreeMap::new();
        let docs = parse(&emf_lines("ns", &invocation(&none, Duration::ZERO), TS));
        assert_eq!(docs.len(), 1);
        directive(&docs[0]);
        assert_eq!(docs[0]["BatchDuration"].as_f64(), Some(0.0));
    }

    /// Event types CloudWatch would refuse as dimension values are counted under one name, and
    /// names that need escaping stay valid JSON.
    #[test]
    fn odd_event_types() {
        let skipped = BTreeMap::from([
            (String::new(), 1),
            ("   ".to_owned(), 2),
            ("x".repeat(1025), 4),
            ("TYPE\u{7}".to_owned(), 8),
            ("ÉVÉNEMENT".to_owned(), 16),
            (r#"quote"back\slash"#.to_owned(), 32),
        ]);
        let docs = parse(&emf_lines("ns", &invocation(&skipped, Duration::ZERO), TS));
        let mut seen = BTreeMap::new();
        for doc in &docs[1..] {
            directive(doc);
            let t = doc["EventType"].as_str().unwrap().to_owned();
            seen.insert(t, doc["RecordsSkipped"].as_u64().unwrap());
        }
        let expected = BTreeMap::from([
            (INVALID_EVENT_TYPE.to_owned(), 1 + 2 + 4 + 8 + 16),
            (r#"quote"back\slash"#.to_owned(), 32),
        ]);
        assert_eq!(seen, expected);
    }

    /// Lines are written each with a newline; a failing writer is ignored, not a panic.
    #[test]
    fn writes_lines_and_ignores_errors() {
        let skipped = skipped();
        let lines = emf_lines("ns", &invocation(&skipped, Duration::ZERO), TS);
        let mut out = Vec::new();
        write_lines(&mut out, &lines);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, lines.join("\n") + "\n");

        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("closed"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::Error::other("closed"))
            }
        }
        write_lines(&mut Broken, &lines);
    }

    /// `METRICS_NAMESPACE` sets the namespace; unset or blank means the default; an invalid one
    /// stops start-up, naming the setting.
    #[test]
    fn namespace_from_env() {
        let read = |pairs: &[(&str, &str)]| {
            Problems::collect(|p| MetricsSettings::read(&Env::from_pairs(pairs.to_vec()), p))
        };
        assert_eq!(read(&[]).unwrap().namespace, DEFAULT_NAMESPACE);
        assert_eq!(DEFAULT_NAMESPACE, "kinesis-fanout");
        assert_eq!(
            read(&[("METRICS_NAMESPACE", " ")]).unwrap().namespace,
            DEFAULT_NAMESPACE
        );
        let set = read(&[("METRICS_NAMESPACE", "Shop/Orders")]).unwrap();
        assert_eq!(set.namespace, "Shop/Orders");
        for bad in ["AWS/Lambda", ":x", "a\u{e9}", &"n".repeat(256)] {
            let err = read(&[("METRICS_NAMESPACE", bad)]).unwrap_err();
            assert!(err.to_string().contains("METRICS_NAMESPACE"), "{err}");
        }
    }

    /// The namespace rule.
    #[test]
    fn namespaces() {
        for ok in [
            "kinesis-fanout",
            "a",
            "Shop/Orders #1:v2_x.y",
            &"n".repeat(255),
        ] {
            assert!(valid_namespace(ok), "{ok}");
        }
        for bad in ["", ":a", "AWS/Lambda", "tab\there", "é", &"n".repeat(256)] {
            assert!(!valid_namespace(bad), "{bad}");
        }
    }
}
