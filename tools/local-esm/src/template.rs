//! The mapping settings, read from the SAM template: one source for the deployed mappings and the
//! local one.
//!
//! The template is read as CloudFormation reads it: the short tags (`!Ref`, `!If`, `!Sub`, ...)
//! become their long forms, parameters take their defaults (or the overrides given), conditions
//! are evaluated, and `AWS::NoValue` removes a property. Each `AWS::Serverless::Function` with an
//! event of type `Kinesis` gives one [`Mapping`], with Lambda's defaults for what the template
//! leaves out and the function's `Timeout` (or the `Globals`').

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a mapping starts reading a shard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartingPosition {
    /// The oldest record.
    TrimHorizon,
    /// Only records written after the mapping starts.
    Latest,
    /// Records written at or after a time (epoch seconds).
    AtTimestamp(f64),
}

/// Where the `OnFailure` invocation record goes, by the destination resource's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An SQS queue: the record's metadata only.
    Sqs {
        /// The template's logical id of the queue.
        resource: String,
    },
    /// An S3 bucket: the metadata and the batch's records.
    S3 {
        /// The template's logical id of the bucket.
        resource: String,
    },
    /// An SNS topic: the metadata only (not reproduced locally: logged).
    Sns {
        /// The template's logical id of the topic.
        resource: String,
    },
}

/// One function's Kinesis event source mapping, as the template sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// The function's logical id in the template.
    pub logical_id: String,
    /// The name to invoke: the function's binary (`Metadata.BuildProperties.Binary`), else its
    /// logical id.
    pub function: String,
    /// The event's name under `Events`.
    pub event: String,
    /// `BatchSize` (default 100).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub batching_window: Duration,
    /// `StartingPosition`.
    pub starting_position: StartingPosition,
    /// `ParallelizationFactor` (default 1).
    pub parallelization_factor: usize,
    /// `BisectBatchOnFunctionError` (default false).
    pub bisect_on_function_error: bool,
    /// `MaximumRetryAttempts` (-1, the default: until the records expire).
    pub maximum_retry_attempts: i64,
    /// `MaximumRecordAgeInSeconds` (`None` for -1, the default: the stream's retention).
    pub maximum_record_age: Option<Duration>,
    /// `FunctionResponseTypes` holds `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `FilterCriteria.Filters[].Pattern`, parsed.
    pub filters: Vec<Value>,
    /// `DestinationConfig.OnFailure.Destination`.
    pub on_failure: Option<Destination>,
    /// The function's `Timeout` (default 3 s).
    pub timeout: Duration,
    /// The function's `MemorySize` in MB (default 128).
    pub memory_mb: u32,
    /// The function's `Architectures[0]` (default `x86_64`).
    pub architecture: String,
    /// The function's `Environment.Variables` over the `Globals`', those that resolve to text or
    /// a number (a resource's `Ref` is left out).
    pub environment: BTreeMap<String, String>,
    /// `Enabled` (default true).
    pub enabled: bool,
}

impl Mapping {
    /// A mapping to `function` with Lambda's defaults (and `TRIM_HORIZON`, which Lambda requires
    /// to be named): batches of 100, no batching window, one batch per shard at a time, no
    /// bisection, retries until the records expire, no partial batch responses, no filters, no
    /// destination, a 3 s timeout, 128 MB, x86_64, no environment.
    pub fn defaults(function: &str) -> Self {
        Self {
            logical_id: function.to_owned(),
            function: function.to_owned(),
            event: "Stream".to_owned(),
            batch_size: 100,
            batching_window: Duration::ZERO,
            starting_position: StartingPosition::TrimHorizon,
            parallelization_factor: 1,
            bisect_on_function_error: false,
            maximum_retry_attempts: -1,
            maximum_record_age: None,
            report_batch_item_failures: false,
            filters: Vec::new(),
            on_failure: None,
            timeout: Duration::from_secs(3),
            memory_mb: 128,
            architecture: "x86_64".to_owned(),
            environment: BTreeMap::new(),
            enabled: true,
        }
    }
}

/// Reads the Kinesis mappings of the template `text`, with `overrides` for its parameters.
pub fn mappings(text: &str, overrides: &HashMap<String, String>) -> Result<Vec<Mapping>, String> {
    let template = load(text)?;
    let resolver = Resolver::new(&template, overrides)?;
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or("the template has no Resources")?;
    let globals = resolver.resolve(&template["Globals"]["Function"]);
    let mut out = Vec::new();
    for (logical_id, resource) in resources {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let properties = resolver.resolve(&resource["Properties"]);
        let events = properties
            .get("Events")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (event, spec) in events {
            if spec["Type"] != "Kinesis" {
                continue;
            }
            let at = format!("{logical_id}.Events.{event}");
            let p = &spec["Properties"];
            let timeout = number(&properties["Timeout"], &at, "Timeout")
                .or(number(&globals["Timeout"], "Globals.Function", "Timeout"))
                .transpose()?
                .unwrap_or(3.0);
            let memory = number(&properties["MemorySize"], &at, "MemorySize")
                .or(number(
                    &globals["MemorySize"],
                    "Globals.Function",
                    "MemorySize",
                ))
                .transpose()?
                .unwrap_or(128.0);
            let architecture = properties["Architectures"][0]
                .as_str()
                .or(globals["Architectures"][0].as_str())
                .unwrap_or("x86_64")
                .to_owned();
            let mut environment = BTreeMap::new();
            for variables in [
                &globals["Environment"]["Variables"],
                &properties["Environment"]["Variables"],
            ] {
                for (name, value) in variables.as_object().into_iter().flatten() {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    environment.insert(name.clone(), text);
                }
            }
            let function = resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or(logical_id)
                .to_owned();
            out.push(Mapping {
                logical_id: logical_id.clone(),
                function,
                event: event.clone(),
                batch_size: ranged(p, &at, "BatchSize", 1.0, 10_000.0, 100.0)? as usize,
                batching_window: Duration::from_secs_f64(ranged(
                    p,
                    &at,
                    "MaximumBatchingWindowInSeconds",
                    0.0,
                    300.0,
                    0.0,
                )?),
                starting_position: starting_position(p, &at)?,
                parallelization_factor: ranged(p, &at, "ParallelizationFactor", 1.0, 10.0, 1.0)?
                    as usize,
                bisect_on_function_error: boolean(p, &at, "BisectBatchOnFunctionError")?,
                maximum_retry_attempts: ranged(
                    p,
                    &at,
                    "MaximumRetryAttempts",
                    -1.0,
                    10_000.0,
                    -1.0,
                )? as i64,
                maximum_record_age: match ranged(
                    p,
                    &at,
                    "MaximumRecordAgeInSeconds",
                    -1.0,
                    604_800.0,
                    -1.0,
                )? {
                    age if age < 0.0 => None,
                    age if age < 60.0 => {
                        return Err(format!(
                            "{at}: MaximumRecordAgeInSeconds is {age}: -1, or 60 to 604800"
                        ))
                    }
                    age => Some(Duration::from_secs_f64(age)),
                },
                report_batch_item_failures: p["FunctionResponseTypes"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures")),
                filters: filters(p, &at)?,
                on_failure: destination(p, &at, resources)?,
                timeout: Duration::from_secs_f64(timeout),
                memory_mb: memory as u32,
                architecture,
                environment,
                enabled: p.get("Enabled").is_none() || boolean(p, &at, "Enabled")?,
            });
        }
    }
    Ok(out)
}

fn number(v: &Value, at: &str, name: &str) -> Option<Result<f64, String>> {
    match v {
        Value::Null => None,
        Value::Number(n) => n.as_f64().map(Ok),
        Value::String(s) => Some(
            s.trim()
                .parse()
                .map_err(|_| format!("{at}: {name} is {s:?}, not a number")),
        ),
        other => Some(Err(format!("{at}: {name} is {other}, not a number"))),
    }
}

fn ranged(
    p: &Value,
    at: &str,
    name: &str,
    min: f64,
    max: f64,
    default: f64,
) -> Result<f64, String> {
    let v = number(&p[name], at, name).transpose()?.unwrap_or(default);
    if v < min || v > max || v.fract() != 0.0 {
        return Err(format!(
            "{at}: {name} is {v}: a whole number from {min} to {max}"
        ));
    }
    Ok(v)
}

fn boolean(p: &Value, at: &str, name: &str) -> Result<bool, String> {
    match &p[name] {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(format!("{at}: {name} is {other}, not true or false")),
    }
}

fn starting_position(p: &Value, at: &str) -> Result<StartingPosition, String> {
    match p["StartingPosition"].as_str() {
        Some("TRIM_HORIZON") => Ok(StartingPosition::TrimHorizon),
        Some("LATEST") => Ok(StartingPosition::Latest),
        Some("AT_TIMESTAMP") => number(
            &p["StartingPositionTimestamp"],
            at,
            "StartingPositionTimestamp",
        )
        .transpose()?
        .map(StartingPosition::AtTimestamp)
        .ok_or_else(|| format!("{at}: AT_TIMESTAMP needs StartingPositionTimestamp")),
        other => Err(format!(
            "{at}: StartingPosition is {other:?}: TRIM_HORIZON, LATEST or AT_TIMESTAMP"
        )),
    }
}

fn filters(p: &Value, at: &str) -> Result<Vec<Value>, String> {
    let Some(filters) = p["FilterCriteria"]["Filters"].as_array() else {
        return Ok(Vec::new());
    };
    filters
        .iter()
        .map(|f| {
            let text = f["Pattern"]
                .as_str()
                .ok_or_else(|| format!("{at}: a filter without a Pattern string"))?;
            serde_json::from_str(text)
                .map_err(|e| format!("{at}: the filter pattern {text} is not JSON: {e}"))
        })
        .collect()
}

fn destination(
    p: &Value,
    at: &str,
    resources: &Map<String, Value>,
) -> Result<Option<Destination>, String> {
    let target = &p["DestinationConfig"]["OnFailure"]["Destination"];
    if target.is_null() {
        return Ok(None);
    }
    // `!GetAtt Queue.Arn` or `!Ref Topic`: the resource's type says which kind of destination.
    let resource = match target {
        Value::Object(o) => o
            .get("Fn::GetAtt")
            .and_then(|g| g.get(0))
            .and_then(Value::as_str)
            .map(str::to_owned),
        Value::String(s) if resources.contains_key(s) => Some(s.clone()),
        Value::String(arn) => {
            // A literal ARN: its service says which kind.
            let service = arn.split(':').nth(2).unwrap_or("");
            let name = arn.rsplit([':', '/']).next().unwrap_or(arn).to_owned();
            return match service {
                "sqs" => Ok(Some(Destination::Sqs { resource: name })),
                "s3" => Ok(Some(Destination::S3 { resource: name })),
                "sns" => Ok(Some(Destination::Sns { resource: name })),
                _ => Err(format!(
                    "{at}: OnFailure destination {arn} is not SQS, SNS or S3"
                )),
            };
        }
        _ => None,
    }
    .ok_or_else(|| format!("{at}: OnFailure destination {target} names no resource"))?;
    match resources
        .get(&resource)
        .and_then(|r| r["Type"].as_str())
    {
        Some("AWS::SQS::Queue") => Ok(Some(Destination::Sqs { resource })),
        Some("AWS::S3::Bucket") => Ok(Some(Destination::S3 { resource })),
        Some("AWS::SNS::Topic") => Ok(Some(Destination::Sns { resource })),
        other => Err(format!(
            "{at}: OnFailure destination {resource} is {other:?}, not an SQS queue, SNS topic or S3 bucket"
        )),
    }
}

/// Evaluates intrinsic functions with the parameters' values and the conditions.
struct Resolver {
    parameters: HashMap<String, Value>,
    conditions: HashMap<String, bool>,
}

const NO_VALUE: &str = "AWS::NoValue";

impl Resolver {
    fn new(template: &Value, overrides: &HashMap<String, String>) -> Result<Self, String> {
        let mut parameters = HashMap::new();
        if let Some(params) = template["Parameters"].as_object() {
            for (name, spec) in params {
                if let Some(v) = overrides.get(name) {
                    parameters.insert(name.clone(), Value::String(v.clone()));
                } else if let Some(v) = spec.get("Default") {
                    parameters.insert(name.clone(), v.clone());
                }
            }
        }
        for name in overrides.keys() {
            if !parameters.contains_key(name) {
                return Err(format!("the template has no parameter {name}"));
            }
        }
        for (name, value) in [
            ("AWS::Region", "us-east-1"),
            ("AWS::AccountId", "123456789012"),
            ("AWS::StackName", "local"),
            ("AWS::Partition", "aws"),
        ] {
            parameters.insert(name.to_owned(), Value::String(value.to_owned()));
        }
        let mut resolver = Self {
            parameters,
            conditions: HashMap::new(),
        };
        if let Some(conditions) = template["Conditions"].as_object() {
            // Conditions may refer to conditions defined earlier.
            for (name, expr) in conditions {
                let value = resolver.truth(expr, conditions)?;
                resolver.conditions.insert(name.clone(), value);
            }
        }
        Ok(resolver)
    }

    fn truth(&self, expr: &Value, all: &Map<String, Value>) -> Result<bool, String> {
        let args = |name: &str| expr.get(name).and_then(Value::as_array);
        if let Some(a) = args("Fn::Equals") {
            let (x, y) = (self.resolve(&a[0]), self.resolve(&a[1]));
            return Ok(scalar_text(&x) == scalar_text(&y));
        }
        if let Some(a) = args("Fn::Not") {
            return Ok(!self.truth(&a[0], all)?);
        }
        if let Some(a) = args("Fn::And") {
            return a
                .iter()
                .try_fold(true, |acc, e| Ok(acc && self.truth(e, all)?));
        }
        if let Some(a) = args("Fn::Or") {
            return a
                .iter()
                .try_fold(false, |acc, e| Ok(acc || self.truth(e, all)?));
        }
        if let Some(name) = expr.get("Condition").and_then(Value::as_str) {
            return match self.conditions.get(name) {
                Some(v) => Ok(*v),
                None => all
                    .get(name)
                    .ok_or_else(|| format!("no condition {name}"))
                    .and_then(|e| self.truth(e, all)),
            };
        }
        Err(format!(
            "a condition the local mapping cannot evaluate: {expr}"
        ))
    }

    /// `v` with its intrinsic functions evaluated; `AWS::NoValue` becomes `Null` and is dropped
    /// from objects and arrays.
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::Object(o) if o.len() == 1 => {
                let (k, arg) = o
                    .iter()
                    .next()
                    .map(|(k, a)| (k.as_str(), a))
                    .unwrap_or(("", v));
                match k {
                    "Ref" => {
                        let name = arg.as_str().unwrap_or_default();
                        if name == NO_VALUE {
                            return Value::Null;
                        }
                        self.parameters
                            .get(name)
                            .cloned()
                            .unwrap_or_else(|| Value::String(name.to_owned()))
                    }
                    "Fn::If" => {
                        let a = arg.as_array().cloned().unwrap_or_default();
                        let name = a.first().and_then(Value::as_str).unwrap_or_default();
                        let pick = if self.conditions.get(name).copied().unwrap_or(false) {
                            1
                        } else {
                            2
                        };
                        a.get(pick).map_or(Value::Null, |x| self.resolve(x))
                    }
                    "Fn::Sub" => {
                        let text = match arg {
                            Value::Array(a) => {
                                a.first().and_then(Value::as_str).unwrap_or_default()
                            }
                            other => other.as_str().unwrap_or_default(),
                        };
                        Value::String(self.substitute(text))
                    }
                    "Fn::GetAtt" => {
                        let parts: Vec<Value> = match arg {
                            Value::String(s) => s
                                .splitn(2, '.')
                                .map(|p| Value::String(p.to_owned()))
                                .collect(),
                            other => other.as_array().cloned().unwrap_or_default(),
                        };
                        serde_json::json!({ "Fn::GetAtt": parts })
                    }
                    _ => Value::Object(self.resolve_map(o)),
                }
            }
            Value::Object(o) => Value::Object(self.resolve_map(o)),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.resolve(x))
                    .filter(|x| !x.is_null())
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn resolve_map(&self, o: &Map<String, Value>) -> Map<String, Value> {
        o.iter()
            .map(|(k, v)| (k.clone(), self.resolve(v)))
            .filter(|(_, v)| !v.is_null())
            .collect()
    }

    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            match self.parameters.get(name) {
                Some(v) => out.push_str(&scalar_text(v)),
                None => out.push_str(name),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The template as JSON, with the short tags turned into their long forms (`!Ref X` becomes
/// `{"Ref": "X"}`, `!If [...]` becomes `{"Fn::If": [...]}`).
pub fn load(text: &str) -> Result<Value, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| format!("template.yaml is not YAML: {e}"))?;
    builder
        .root
        .ok_or_else(|| "template.yaml is empty".to_owned())
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<Tag>)>,
    root: Option<Value>,
}

enum Node {
    Seq(Vec<Value>),
    Map(Map<String, Value>, Option<String>),
}

fn tagged(tag: Option<Tag>, v: Value) -> Value {
    match tag {
        Some(t) if t.handle == "!" => {
            let name = match t.suffix.as_str() {
                "Ref" | "Condition" => t.suffix.clone(),
                other => format!("Fn::{other}"),
            };
            let mut m = Map::new();
            m.insert(name, v);
            Value::Object(m)
        }
        _ => v,
    }
}

fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match text.as_str() {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        "null" | "~" | "" => return Value::Null,
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Value::from(f),
        _ => Value::String(text),
    }
}

impl Builder {
    fn add(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some((Node::Seq(items), _)) => items.push(v),
            Some((Node::Map(map, key), _)) => match key.take() {
                Some(k) => {
                    map.insert(k, v);
                }
                None => *key = Some(scalar_text(&v)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, _mark: Marker) {
        match event {
            Event::Scalar(text, style, _, tag) => {
                let v = scalar(text, style);
                // A tagged scalar with no text (`!Ref` alone) is still the tag's function.
                self.add(tagged(tag, v));
            }
            Event::SequenceStart(_, tag) => self.stack.push((Node::Seq(Vec::new()), tag)),
            Event::MappingStart(_, tag) => self.stack.push((Node::Map(Map::new(), None), tag)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, tag)) = self.stack.pop() {
                    let v = match node {
                        Node::Seq(items) => Value::Array(items),
                        Node::Map(map, _) => Value::Object(map),
                    };
                    self.add(tagged(tag, v));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Size: {Type: Number, Default: 250}
  Filter: {Type: String, Default: "false"}
  Retries: {Type: Number, Default: 3}
Conditions:
  Filtering: !Equals [!Ref Filter, "true"]
  NotFiltering: !Not [!Condition Filtering]
Globals:
  Function:
    Timeout: 30
Resources:
  Dlq:
    Type: AWS::SQS::Queue
  Failures:
    Type: AWS::S3::Bucket
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: {Binary: my-fn}
    Properties:
      Events:
        Stream:
          Type: Kinesis
          Properties:
            StartingPosition: LATEST
            BatchSize: !Ref Size
            MaximumRetryAttempts: !Ref Retries
            BisectBatchOnFunctionError: true
            FunctionResponseTypes: [ReportBatchItemFailures]
            DestinationConfig:
              OnFailure:
                Destination: !If [Filtering, !GetAtt Failures.Arn, !GetAtt Dlq.Arn]
            FilterCriteria: !If
              - Filtering
              - Filters:
                  - Pattern: '{"data": {"eventType": ["A"]}}'
              - !Ref AWS::NoValue
  Other:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 7
      Events:
        S:
          Type: Kinesis
          Properties: {StartingPosition: TRIM_HORIZON}
"#;

    #[test]
    fn reads_with_defaults_and_overrides() {
        let m = mappings(TEMPLATE, &HashMap::new()).unwrap();
        assert_eq!(m.len(), 2);
        let f = &m[0];
        assert_eq!(
            (f.function.as_str(), f.batch_size, f.maximum_retry_attempts),
            ("my-fn", 250, 3)
        );
        assert_eq!(f.starting_position, StartingPosition::Latest);
        assert!(f.bisect_on_function_error && f.report_batch_item_failures && f.enabled);
        assert_eq!(f.timeout, Duration::from_secs(30));
        assert!(f.filters.is_empty());
        assert_eq!(
            f.on_failure,
            Some(Destination::Sqs {
                resource: "Dlq".into()
            })
        );
        let o = &m[1];
        assert_eq!(
            (o.function.as_str(), o.batch_size, o.parallelization_factor),
            ("Other", 100, 1)
        );
        assert_eq!((o.maximum_retry_attempts, o.maximum_record_age), (-1, None));
        assert_eq!(o.timeout, Duration::from_secs(7));

        let overrides = HashMap::from([("Filter".to_owned(), "true".to_owned())]);
        let f = &mappings(TEMPLATE, &overrides).unwrap()[0];
        assert_eq!(
            f.filters,
            [serde_json::json!({"data": {"eventType": ["A"]}})]
        );
        assert_eq!(
            f.on_failure,
            Some(Destination::S3 {
                resource: "Failures".into()
            })
        );
    }

    #[test]
    fn refuses_bad_settings_by_name() {
        let bad = HashMap::from([("Size".to_owned(), "20000".to_owned())]);
        let err = mappings(TEMPLATE, &bad).unwrap_err();
        assert!(
            err.contains("Fn.Events.Stream: BatchSize is 20000"),
            "{err}"
        );
        let unknown = HashMap::from([("Nope".to_owned(), "1".to_owned())]);
        assert!(mappings(TEMPLATE, &unknown)
            .unwrap_err()
            .contains("no parameter Nope"));
    }

    /// The project's own template: its three stream consumers, with the parameters' defaults.
    /// The read API (`order-status-api`, a function URL and no Kinesis event) has no mapping.
    #[test]
    fn the_project_template() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
                .unwrap();
        let m = mappings(&text, &HashMap::new()).unwrap();
        let names: Vec<_> = m.iter().map(|m| m.function.as_str()).collect();
        assert_eq!(
            names,
            ["email-notifier", "inventory-updater", "order-status"]
        );
        for m in &m {
            assert_eq!(m.batch_size, 100);
            assert_eq!(m.batching_window, Duration::from_secs(1));
            assert_eq!(m.parallelization_factor, 2);
            assert!(m.bisect_on_function_error && m.report_batch_item_failures);
            assert_eq!(m.maximum_retry_attempts, 10);
            assert_eq!(m.maximum_record_age, Some(Duration::from_secs(21600)));
            assert_eq!(m.timeout, Duration::from_secs(60));
            assert_eq!((m.memory_mb, m.architecture.as_str()), (256, "arm64"));
            assert_eq!(m.environment["MAX_CONCURRENCY"], "64");
            assert!(m.filters.is_empty(), "FilterAtSource is off by default");
            assert_eq!(
                m.on_failure,
                Some(Destination::S3 {
                    resource: "FailureBucket".into()
                }),
                "FailureDestination is s3 by default"
            );
        }
        let on = HashMap::from([("FilterAtSource".to_owned(), "true".to_owned())]);
        assert_eq!(mappings(&text, &on).unwrap()[0].filters.len(), 2);
        let sqs = HashMap::from([("FailureDestination".to_owned(), "sqs".to_owned())]);
        assert_eq!(
            mappings(&text, &sqs).unwrap()[0].on_failure,
            Some(Destination::Sqs {
                resource: "DeadLetterQueue".into()
            })
        );
    }
}
