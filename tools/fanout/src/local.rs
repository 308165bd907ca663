//! On the local stack (`make up`): invoking a function with a sample event through the Lambda
//! Invoke API that `cargo lambda watch` serves, as AWS does, and saying what it did, from the
//! function's own log; and the functions' counts over a stretch of their log.
//!
//! The function's log is its JSON lines, as `cargo lambda watch` writes them to
//! `<state>/watch.log`. The counts are read by the one list of their names
//! (`shared::engine::stats`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_lambda::operation::RequestId;
use aws_smithy_types::Blob;
use serde_json::{Map, Value};
use shared::engine::stats::{describe, BatchStats};
use shared::input::batch::compare_sequence_numbers;

/// Counts by name.
type Counts = BTreeMap<String, u64>;
/// A log line's fields.
type Line = Map<String, Value>;

/// What a command says when the stack is not running.
const DOWN: &str = "the local stack is down: start it with 'make up', then 'make invoke' again";

/// The JSON lines of a function's log, each as its fields (with `level` and `span`); other lines
/// are skipped. The one reader of that log.
pub fn log_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Line> {
    lines
        .into_iter()
        .filter_map(|line| {
            let start = line.find('{')?;
            let Ok(Value::Object(value)) = serde_json::from_str::<Value>(&line[start..]) else {
                return None;
            };
            let mut fields = match value.get("fields") {
                Some(Value::Object(fields)) => fields.clone(),
                _ => value.clone(),
            };
            for key in ["level", "span"] {
                if let Some(v) = value.get(key) {
                    fields.entry(key).or_insert_with(|| v.clone());
                }
            }
            Some(fields)
        })
        .collect()
}

/// The counts of a `batch done` line, by name.
fn counts_of(line: &Line) -> Option<Counts> {
    (line.get("message")?.as_str()? == "batch done")
        .then(|| BatchStats::parse_line(line.get("counts").and_then(Value::as_str).unwrap_or("")))
}

/// Why the function whose log goes on after `offset` could not start: its `start-up failed`
/// message, once `cargo lambda watch` says its process exited. `None` while it has not.
pub fn startup_failure(log: &Path, offset: u64) -> Option<String> {
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    if !text.contains("command exited code=") {
        return None;
    }
    let said = log_lines(text.lines())
        .into_iter()
        .filter_map(|l| l.get("message")?.as_str().map(str::to_owned))
        .rfind(|m| m.starts_with("start-up failed"));
    Some(said.unwrap_or_else(|| "its process exited before it answered".to_owned()))
}

/// `fanout counts`: the counts of every `batch done` line of `log` from line `from` on, summed.
pub fn counts(log: &Path, from: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut per_function: BTreeMap<String, Counts> = BTreeMap::new();
    for line in log_lines(text.lines().skip(from)) {
        let Some(counts) = counts_of(&line) else {
            continue;
        };
        let function = line.get("function").and_then(Value::as_str).unwrap_or("?");
        let total = per_function.entry(function.to_owned()).or_default();
        for (name, n) in counts {
            *total.entry(name).or_default() += n;
        }
    }
    println!("  what each function did (its `batch done` lines; one outcome per event, an aggregate's events each counted):");
    for (function, counts) in &per_function {
        println!("    {function}: {}", describe(counts));
    }
    Ok(())
}

/// Where the local stack keeps its state, and its samples.
pub struct Local {
    /// The state folder (`LOCAL_STATE`, `.local`): the ports, the process ids, the logs.
    pub state: PathBuf,
    /// The samples' folder (`events`).
    pub events: PathBuf,
    /// The SAM template (`template.yaml`): which functions the stack serves.
    pub template: PathBuf,
}

impl Local {
    /// The sample's path: `name` as a path, or a sample's name with or without `.json`.
    fn event_path(&self, name: &str) -> Result<PathBuf, String> {
        let tried: Vec<PathBuf> = if name.contains(std::path::MAIN_SEPARATOR) {
            vec![PathBuf::from(name)]
        } else if name.ends_with(".json") {
            vec![self.events.join(name)]
        } else {
            vec![
                self.events.join(name),
                self.events.join(format!("{name}.json")),
            ]
        };
        if let Some(found) = tried.iter().find(|p| p.is_file()) {
            return Ok(found.clone());
        }
        let mut samples: Vec<String> = std::fs::read_dir(&self.events)
            .map(|dir| {
                dir.filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".json")
                        .map(str::to_owned)
                })
                .collect()
            })
            .unwrap_or_default();
        samples.sort();
        let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        Err(format!(
            "no event file {}; the samples are: {}",
            tried.join(" or "),
            samples.join(", ")
        ))
    }

    /// The port `cargo lambda watch` serves, while it runs.
    /// The functions `cargo lambda watch` serves: the binaries of the template's functions.
    fn functions(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.template).unwrap_or_default();
        let mut names: Vec<String> = local_esm::template::load(&text)
            .ok()
            .and_then(|t| t.get("Resources").cloned())
            .and_then(|r| r.as_object().cloned())
            .into_iter()
            .flatten()
            .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
            .map(|(id, r)| {
                r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .map_or(id, str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    fn watch_port(&self) -> Result<u16, String> {
        let read = |name: &str| std::fs::read_to_string(self.state.join(name)).ok();
        let pid = read("watch.pid").and_then(|p| p.trim().parse::<u32>().ok());
        let port = read("watch.port").and_then(|p| p.trim().parse::<u16>().ok());
        match (pid, port) {
            (Some(pid), Some(port)) if Path::new(&format!("/proc/{pid}")).exists() => Ok(port),
            _ => Err(DOWN.into()),
        }
    }

    /// `fanout invoke`: invokes `function` with the sample `event`, prints the response, then
    /// (unless `json`) what the invocation did.
    pub async fn invoke(
        &self,
        sdk: &aws_config::SdkConfig,
        function: &str,
        event: &str,
        json: bool,
    ) -> Result<(), String> {
        let path = self.event_path(event)?;
        let port = self.watch_port()?;
        let log = self.state.join("watch.log");
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
        let payload = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let client =
            local_esm::adapters::lambda_client(sdk, Some(&format!("http://127.0.0.1:{port}")));
        let call = client
            .invoke()
            .function_name(function)
            .payload(Blob::new(payload))
            .send();
        // A function that cannot start never answers: its start-up error, in the log, says why.
        let exited = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(why) = startup_failure(&log, offset) {
                    return why;
                }
            }
        };
        let out = tokio::select! {
            out = call => out.map_err(|e| {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                if not_found {
                    format!(
                        "there is no function {function} on the local stack; its functions are: {}",
                        self.functions().join(", ")
                    )
                } else {
                    format!("invoking {function} failed: {}", shared::error::chain(&e))
                }
            })?,
            why = exited => {
                return Err(format!(
                    "{function} cannot start: {why}\n(fix the setting in local.env, then 'make down' and 'make up'; its log: {})",
                    log.display()
                ))
            }
        };
        let body = out
            .payload()
            .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
            .unwrap_or_default();
        println!("{body}");
        if let Some(error) = out.function_error() {
            return Err(format!(
                "{function} failed as a whole ({error}); see {}",
                log.display()
            ));
        }
        if json {
            return Ok(());
        }
        let response: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let (done, warnings) = invocation_lines(&log, offset, function, out.request_id()).await;
        println!();
        let Some(counts) = done else {
            println!(
                "{function} wrote no `batch done` line within 10 s; see {}",
                log.display()
            );
            return Ok(());
        };
        println!("{function}, {}: {}", path.display(), describe(&counts));
        for w in warnings {
            println!("  {}", warning(&w));
        }
        for failure in response["batchItemFailures"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = failure["itemIdentifier"].as_str().unwrap_or("?");
            println!("  Lambda retries from {id}");
        }
        Ok(())
    }
}

/// The invocation's counts (its `batch done` line) and the WARN and ERROR lines before it, in
/// stream order, once written (waiting up to 10 s).
async fn invocation_lines(
    log: &Path,
    offset: u64,
    function: &str,
    request_id: Option<&str>,
) -> (Option<Counts>, Vec<Line>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // The log from `offset` on, read as it grows.
    let mut file = None;
    let mut written = Vec::new();
    loop {
        if file.is_none() {
            file = std::fs::File::open(log)
                .and_then(|mut f| f.seek(SeekFrom::Start(offset)).map(|_| f))
                .ok();
        }
        if let Some(f) = file.as_mut() {
            let _ = f.read_to_end(&mut written);
        }
        let lines = log_lines(String::from_utf8_lossy(&written).lines());
        let is = |line: &Map<String, Value>, key: &str, want: Option<&str>| match (
            line.get(key).and_then(Value::as_str),
            want,
        ) {
            (Some(have), Some(want)) => have == want,
            _ => true,
        };
        let done = lines.iter().position(|l| {
            counts_of(l).is_some()
                && is(l, "request_id", request_id)
                && is(l, "function", Some(function))
        });
        if let Some(i) = done {
            let mut warnings: Vec<Map<String, Value>> = lines[..i]
                .iter()
                .filter(|l| {
                    matches!(
                        l.get("level").and_then(Value::as_str),
                        Some("WARN" | "ERROR")
                    )
                })
                .cloned()
                .collect();
            // Records of different keys log as they finish: in stream order here.
            let seq = |w: &Line| identity(w, "sequence_number").unwrap_or_default();
            warnings.sort_by(|a, b| compare_sequence_numbers(&seq(a), &seq(b)));
            return (counts_of(&lines[i]), warnings);
        }
        if Instant::now() > deadline {
            return (None, Vec::new());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A field of a line's record identity: on the line, or in its `record` span.
fn identity(line: &Map<String, Value>, name: &str) -> Option<String> {
    let value = line
        .get(name)
        .or_else(|| line.get("span").and_then(|s| s.get(name)))?;
    Some(match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A WARN or ERROR line of a record, for a person: what happened to which record, and why.
fn warning(line: &Map<String, Value>) -> String {
    let text = |key: &str| line.get(key).and_then(Value::as_str);
    let message = text("message").unwrap_or("");
    let reason = text("reason").or(text("error")).unwrap_or(message);
    let mut place = format!(
        "seq {}",
        identity(line, "sequence_number").unwrap_or_else(|| "?".into())
    );
    if let Some(sub) = identity(line, "sub_sequence_number") {
        place.push_str(&format!("/{sub}"));
    }
    if let Some(key) = identity(line, "partition_key") {
        place.push_str(&format!(" (key {key})"));
    }
    if message.contains("poison") {
        format!("poison {place}: {reason}")
    } else if message.contains("failed") {
        format!("failed {place}: {reason}")
    } else if reason == message {
        format!("{} {place}: {message}", text("level").unwrap_or(""))
    } else {
        format!(
            "{} {place}: {message}: {reason}",
            text("level").unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function that cannot start is told by its start-up error, once watch says its process
    /// exited; before that, or after an earlier offset, nothing is said.
    #[test]
    fn a_function_that_cannot_start() {
        let dir = std::env::temp_dir().join(format!("fanout-startup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("watch.log");
        let before = " INFO spawning function instance function=\"email-notifier\"\n";
        std::fs::write(&log, before).unwrap();
        let offset = before.len() as u64;
        let failed = concat!(
            r#"{"level":"ERROR","message":"start-up failed: MAX_CONCURRENCY=abc is not valid: expected a whole number from 1 to 1024","timestamp":"t"}"#,
            "\n"
        );
        std::fs::write(&log, format!("{before}{failed}")).unwrap();
        assert_eq!(startup_failure(&log, offset), None, "still running");
        std::fs::write(
            &log,
            format!("{before}{failed} ERROR command exited code=1\n"),
        )
        .unwrap();
        assert_eq!(
            startup_failure(&log, offset).as_deref(),
            Some(
                "start-up failed: MAX_CONCURRENCY=abc is not valid: expected a whole number from 1 to 1024"
            )
        );
        let exited = format!("{before}{failed} ERROR command exited code=1\n");
        assert_eq!(
            startup_failure(&log, exited.len() as u64),
            None,
            "an earlier exit"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The log's JSON lines are read whatever comes before them; a record's place comes from its
    /// span; a `batch done` line's counts read by their names.
    #[test]
    fn reading_the_log() {
        let log = concat!(
            "INFO cargo_lambda: starting\n",
            r#"[email-notifier] {"timestamp":"t","level":"WARN","message":"poison record sent to the dead-letter queue","reason":"not an event envelope","span":{"name":"record","sequence_number":"12","partition_key":"k"}}"#,
            "\n",
            r#"{"timestamp":"t","level":"INFO","message":"batch done","request_id":"r-1","function":"email-notifier","counts":"received=2 applied=1 poison=1"}"#,
            "\n"
        );
        let lines = log_lines(log.lines());
        assert_eq!(lines.len(), 2);
        assert_eq!(
            warning(&lines[0]),
            "poison seq 12 (key k): not an event envelope"
        );
        let counts = counts_of(&lines[1]).unwrap();
        assert_eq!(
            describe(&counts),
            "2 records: 1 applied; 1 poison (kept in the dead-letter queue, not retried)"
        );
        assert!(counts_of(&lines[0]).is_none());
    }
}
