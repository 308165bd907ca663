//! Logging: structured, JSON when Lambda's log format is JSON, never an email address, and
//! nothing per record on success.
//!
//! One writer of log lines: `tracing`'s fmt layer, with the line format of [`Lines`] and the
//! writer of [`Records`]. A line logged inside a record ([`in_record`]) carries the record's
//! identity, and is kept in the record's buffer; it is written, after the record's earlier lines,
//! only when the record logs at WARN or above (it failed, or was captured as poison), or when the
//! invocation is sampled (`LOG_SAMPLE_RATE`). Lines outside a record are written as they come.
//!
//! An order's address is a type whose `Debug` and `Display` hide it. That does not cover text we
//! do not write: an AWS error message ("MessageRejected: ... the following identities failed the
//! check: someone@example.com"), or the SDK's own debug logs of a request. So every line also
//! passes through [`redact_emails`] on its way out.

use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::config::{ConfigError, Env, Problems};

/// What replaces an email address in a log line.
pub const REDACTED: &str = "<redacted-email>";

/// At most this many lines are kept for one record.
pub const MAX_LINES_PER_RECORD: usize = 64;
/// At most this many bytes of lines are kept for one invocation's records together.
pub const MAX_BYTES_PER_INVOCATION: usize = 256 * 1024;

/// How the functions log, as Lambda sets it: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else
/// `info`; JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// The level (or `tracing` filter).
    pub level: String,
    /// Whether lines are JSON.
    pub json: bool,
    /// The share of invocations that log everything at DEBUG (`LOG_SAMPLE_RATE`, 0 to 1).
    pub sample_rate: f64,
}

impl LogSettings {
    /// Reads the settings. The logger starts before the other settings are read, so it takes
    /// what it can (`info`, no sampling, for a wrong value); [`Self::check`] then stops start-up
    /// on it.
    pub fn from_env(env: &Env) -> Self {
        Self {
            level: Self::level_setting(env).map_or_else(|| "info".to_owned(), |(_, v)| v),
            json: env
                .optional("AWS_LAMBDA_LOG_FORMAT")
                .is_some_and(|f| f.eq_ignore_ascii_case("json")),
            sample_rate: Self::sample_rate(env).ok().unwrap_or(0.0),
        }
    }

    /// The level's setting and value: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`.
    fn level_setting(env: &Env) -> Option<(&'static str, String)> {
        ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
            .into_iter()
            .find_map(|name| env.optional(name).map(|v| (name, v)))
    }

    fn sample_rate(env: &Env) -> Result<f64, ConfigError> {
        const EXPECTED: &str = "a number from 0 to 1 (the share of invocations logged at DEBUG)";
        let rate: f64 = env.parse_or("LOG_SAMPLE_RATE", 0.0, EXPECTED)?;
        if (0.0..=1.0).contains(&rate) {
            Ok(rate)
        } else {
            Err(ConfigError::Invalid {
                name: "LOG_SAMPLE_RATE",
                value: rate.to_string(),
                reason: format!("expected {EXPECTED}"),
            })
        }
    }

    /// Keeps in `problems` what is wrong with the log settings: a level that is no level or
    /// `tracing` filter, a sample rate outside 0 to 1.
    pub fn check(env: &Env, problems: &mut Problems) {
        if let Some((name, level)) = Self::level_setting(env) {
            if !valid_filter(&level) {
                problems.push(ConfigError::Invalid {
                    name,
                    value: level,
                    reason: "expected a level (error, warn, info, debug, trace) or a tracing \
                             filter such as info,aws_smithy_runtime=warn"
                        .into(),
                });
            }
        }
        problems.check(Self::sample_rate(env).map(drop), ());
    }
}

/// Installs the global subscriber on stdout, as [`LogSettings`] read from the process's
/// environment say. Calling it twice is harmless.
pub fn init() {
    let settings = LogSettings::from_env(&Env::process());
    // An error means a subscriber is already installed, which is fine.
    let _ = tracing::subscriber::set_global_default(subscriber(&settings, io::stdout));
}

/// Whether `filter` is a log level (`error`, `warn`, `info`, `debug`, `trace`, `off`, any case) or a
/// `tracing` filter of directives such as `info,aws_smithy_runtime=warn`. A bare word that is no
/// level (`verbose`) parses as "everything of target `verbose`", which nobody means: refused.
pub fn valid_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let filter = filter.to_lowercase();
    EnvFilter::try_new(&filter).is_ok()
        && filter
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .all(|d| LEVELS.contains(&d) || d.contains('='))
}

/// The subscriber [`init`] installs, writing to `writer`: one fmt layer, lines as [`Lines`]
/// formats them, written as [`Records`] routes them, each through [`redact_emails`].
pub fn subscriber<W>(settings: &LogSettings, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // A wrong filter stops start-up (`LogSettings::check`); until it does, `info`.
    let configured = Some(settings.level.to_lowercase())
        .filter(|l| valid_filter(l))
        .and_then(|l| EnvFilter::try_new(l).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let max = configured.max_level_hint().unwrap_or(LevelFilter::INFO);
    let rate = settings.sample_rate;
    // With sampling, DEBUG must reach the layer, which keeps it for sampled invocations only.
    let global = if rate > 0.0 && max < LevelFilter::DEBUG {
        EnvFilter::new("debug")
    } else {
        configured
    };
    let lines = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(Lines {
            json: settings.json,
        })
        .with_writer(Records {
            out: Redacting(writer),
            sample_rate: rate,
        })
        .with_filter(filter_fn(move |meta| *meta.level() <= max || sampled(rate)));
    Box::new(Registry::default().with(global).with(lines))
}

// ---------------------------------------------------------------------------------------------
// The scopes: an invocation's buffers, and a record's.

tokio::task_local! {
    static INVOCATION: InvocationLog;
    static RECORD: RecordLog;
}

/// One invocation's buffers: their size so far, the lines dropped, and whether it is sampled
/// (drawn once, by whoever asks first).
#[derive(Debug, Default)]
struct InvocationLog {
    sampled: OnceLock<bool>,
    bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// One record's identity and the lines kept for it.
#[derive(Debug)]
struct RecordLog {
    identity: RecordIdentity,
    lines: Mutex<Vec<Vec<u8>>>,
    dropped: AtomicU64,
}

/// The identity a record's lines carry (under `span`, as a span's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordIdentity {
    /// The Kinesis sequence number.
    pub sequence_number: Option<String>,
    /// The KPL sub-sequence number.
    pub sub_sequence_number: Option<u64>,
    /// The partition key.
    pub partition_key: Option<String>,
    /// The envelope's `eventId`.
    pub event_id: Option<String>,
    /// The envelope's `eventType`.
    pub event_type: Option<String>,
}

impl RecordIdentity {
    /// The identity as a span's fields, named `record`.
    fn to_json(&self) -> Value {
        let mut span = Map::new();
        span.insert("name".into(), "record".into());
        let fields = [
            (
                "sequence_number",
                self.sequence_number.clone().map(Value::from),
            ),
            (
                "sub_sequence_number",
                self.sub_sequence_number.map(Value::from),
            ),
            ("partition_key", self.partition_key.clone().map(Value::from)),
            ("event_id", self.event_id.clone().map(Value::from)),
            ("event_type", self.event_type.clone().map(Value::from)),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                span.insert(name.into(), value);
            }
        }
        Value::Object(span)
    }
}

/// Runs one invocation's processing with its own log buffers. Returns the output and the lines
/// its records' buffers dropped.
pub async fn in_invocation<F: Future>(fut: F) -> (F::Output, u64) {
    INVOCATION
        .scope(InvocationLog::default(), async {
            let out = fut.await;
            let dropped = INVOCATION.with(|i| i.dropped.load(Ordering::Relaxed));
            (out, dropped)
        })
        .await
}

/// Whether anything listens to this thread's logs: without a subscriber, records need no
/// identity and no buffer.
pub fn logging() -> bool {
    tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
}

/// Runs one record's handling with its own buffer: its DEBUG and INFO lines are kept, and written
/// (after its own identity) only if it logs at WARN or above. `None` (nothing logs, see
/// [`logging`]): no buffer.
pub async fn in_record<F: Future>(identity: Option<RecordIdentity>, fut: F) -> F::Output {
    let Some(identity) = identity else {
        return fut.await;
    };
    let record = RecordLog {
        identity,
        lines: Mutex::new(Vec::new()),
        dropped: AtomicU64::new(0),
    };
    RECORD.scope(record, fut).await
}

/// Whether this invocation logs everything at DEBUG: drawn once per invocation, with `rate`.
fn sampled(rate: f64) -> bool {
    INVOCATION
        .try_with(|i| {
            *i.sampled
                .get_or_init(|| rate > 0.0 && fastrand::f64() < rate)
        })
        .unwrap_or(false)
}

/// Whether a line of `level` is written at once from inside a record (it says something went
/// wrong, or the invocation is sampled), rather than kept.
fn flushes(level: &Level, rate: f64) -> bool {
    *level <= Level::WARN || sampled(rate)
}

// ---------------------------------------------------------------------------------------------
// The line format.

/// The format of every line: JSON (`timestamp`, `level`, `message`, the event's fields, and
/// `span`) or text (`<timestamp> <LEVEL> span{..}: message field=value`). `span` is the record's
/// identity inside a record, else the current span's fields. A record's line written after some
/// of its earlier lines were dropped says how many (`earlier_lines_dropped`).
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    json: bool,
}

impl<S> FormatEvent<S, JsonFields> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = RECORD.try_with(|r| {
            // Dropped lines are told on the line that writes the record's others.
            let dropped = if *event.metadata().level() <= Level::WARN {
                r.dropped.load(Ordering::Relaxed)
            } else {
                0
            };
            (r.identity.to_json(), dropped)
        });
        let span = match record {
            Ok((identity, dropped)) => {
                if dropped > 0 {
                    fields
                        .rest
                        .push(("earlier_lines_dropped".into(), dropped.into()));
                }
                Some(identity)
            }
            Err(_) => ctx.lookup_current().map(|span| {
                let mut object = span
                    .extensions()
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
                    .unwrap_or_default();
                object.insert("name".into(), span.name().into());
                Value::Object(object)
            }),
        };
        let timestamp = super::time::iso_millis(super::time::now_ms());
        let message = fields.message.take().unwrap_or_default();
        if self.json {
            let mut line = Map::new();
            line.insert("timestamp".into(), timestamp.into());
            line.insert("level".into(), level.as_str().into());
            line.insert("message".into(), message.into());
            line.extend(fields.rest);
            if let Some(span) = span {
                line.insert("span".into(), span);
            }
            writeln!(writer, "{}", Value::Object(line))
        } else {
            write!(writer, "{timestamp} {:>5} ", level.as_str())?;
            if let Some(Value::Object(span)) = span {
                let name = span.get("name").and_then(Value::as_str).unwrap_or("span");
                write!(writer, "{name}{{")?;
                let mut sep = "";
                for (k, v) in span.iter().filter(|(k, _)| *k != "name") {
                    write!(writer, "{sep}{k}={}", text(v))?;
                    sep = " ";
                }
                write!(writer, "}}: ")?;
            }
            write!(writer, "{message}")?;
            for (k, v) in &fields.rest {
                write!(writer, " {k}={}", text(v))?;
            }
            writeln!(writer)
        }
    }
}

/// A field's value in a text line: a string as it is, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An event's fields: its message, and the others as JSON values.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(String, Value)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

impl Fields {
    fn put(&mut self, field: &tracing::field::Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(text(&value));
        } else {
            self.rest.push((field.name().to_owned(), value));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// Where each formatted line goes: outside a record, out at once; inside one, into the record's
/// buffer (within [`MAX_LINES_PER_RECORD`] and [`MAX_BYTES_PER_INVOCATION`]), or, for a line that
/// flushes, out after the record's kept lines.
#[derive(Debug, Clone)]
pub struct Records<W> {
    out: Redacting<W>,
    sample_rate: f64,
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Records<W> {
    type Writer = RecordWriter<<Redacting<W> as MakeWriter<'a>>::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RecordWriter::Out(self.out.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        match RECORD.try_with(|_| ()) {
            Err(_) => RecordWriter::Out(self.out.make_writer()),
            Ok(()) if flushes(meta.level(), self.sample_rate) => {
                RecordWriter::Flush(self.out.make_writer())
            }
            Ok(()) => RecordWriter::Keep,
        }
    }
}

/// The writer of one line, as [`Records`] routed it.
#[derive(Debug)]
pub enum RecordWriter<W> {
    /// Written at once.
    Out(W),
    /// Kept in the record's buffer.
    Keep,
    /// Written after the record's kept lines.
    Flush(W),
}

impl<W: Write> Write for RecordWriter<W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match self {
            RecordWriter::Out(out) => out.write_all(line)?,
            RecordWriter::Keep => keep(line),
            RecordWriter::Flush(out) => {
                let kept = RECORD
                    .try_with(|r| {
                        r.dropped.store(0, Ordering::Relaxed);
                        std::mem::take(&mut *r.lines.lock().unwrap_or_else(PoisonError::into_inner))
                    })
                    .unwrap_or_default();
                for earlier in kept {
                    out.write_all(&earlier)?;
                }
                out.write_all(line)?;
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            RecordWriter::Out(out) | RecordWriter::Flush(out) => out.flush(),
            RecordWriter::Keep => Ok(()),
        }
    }
}

/// Keeps a record's line, within the bounds; a line past them is dropped and counted, for the
/// record and for the invocation.
fn keep(line: &[u8]) {
    let _ = RECORD.try_with(|record| {
        let fits = INVOCATION
            .try_with(|i| {
                let before = i.bytes.fetch_add(line.len(), Ordering::Relaxed);
                let fits = before + line.len() <= MAX_BYTES_PER_INVOCATION;
                if !fits {
                    i.bytes.fetch_sub(line.len(), Ordering::Relaxed);
                }
                fits
            })
            .unwrap_or(true);
        let mut lines = record.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if fits && lines.len() < MAX_LINES_PER_RECORD {
            lines.push(line.to_vec());
        } else {
            record.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = INVOCATION.try_with(|i| i.dropped.fetch_add(1, Ordering::Relaxed));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Redaction.

/// A writer maker whose writers redact email addresses from what passes through them.
#[derive(Debug, Clone)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

/// A writer that redacts email addresses. It is handed one whole line per write.
#[derive(Debug)]
pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) if text.contains('@') => self.0.write_all(redact_emails(text).as_bytes()),
            _ => self.0.write_all(buf),
        }?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `text` with every email address (`local@domain.tld`) replaced by [`REDACTED`].
pub fn redact_emails(text: &str) -> String {
    // Bytes of non-ASCII characters count as letters (internationalised addresses); a scan that
    // stops at an ASCII byte always stops on a character boundary.
    let is_local =
        |b: u8| !b.is_ascii() || b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b);
    let is_domain = |b: u8| !b.is_ascii() || b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = text[at..].find('@') {
        let pos = at + found;
        let start = (0..pos)
            .rev()
            .take_while(|&i| is_local(bytes[i]))
            .last()
            .unwrap_or(pos);
        let end = (pos + 1..bytes.len())
            .take_while(|&i| is_domain(bytes[i]))
            .last()
            .map_or(pos + 1, |i| i + 1);
        let domain = text[pos + 1..end].trim_end_matches(['.', '-']);
        let end = pos + 1 + domain.len();
        let looks_like_address = start < pos && start >= copied && domain.contains('.');
        if looks_like_address {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        at = end.max(pos + 1);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_redacted_wherever_they_are() {
        let cases = [
            ("to a@example.com now", "to <redacted-email> now"),
            (
                r#"{"error":"MessageRejected: identities failed the check: jo.doe+x@mail.example.co.uk"}"#,
                r#"{"error":"MessageRejected: identities failed the check: <redacted-email>"}"#,
            ),
            ("a@b.io,c@d.io.", "<redacted-email>,<redacted-email>."),
            ("no address here", "no address here"),
            (
                "@ alone, x@ and @y.com and user@localhost",
                "@ alone, x@ and @y.com and user@localhost",
            ),
            ("ünïcode ü@bücher.de", "ünïcode <redacted-email>"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_emails(text), want, "{text}");
        }
    }

    #[test]
    fn the_writer_redacts_whole_lines() {
        let mut out = Vec::new();
        RedactingWriter(&mut out)
            .write_all(b"sent to someone@example.com\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "sent to <redacted-email>\n"
        );
    }

    /// Lambda's log settings, with `RUST_LOG` and `info` behind them.
    #[test]
    fn log_settings() {
        let read = |pairs: &[(&str, &str)]| LogSettings::from_env(&Env::from_pairs(pairs.to_vec()));
        assert_eq!(
            read(&[]),
            LogSettings {
                level: "info".into(),
                json: false,
                sample_rate: 0.0,
            }
        );
        let set = read(&[
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "warn"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]);
        assert_eq!(
            set,
            LogSettings {
                level: "DEBUG".into(),
                json: true,
                sample_rate: 0.0,
            }
        );
        assert_eq!(read(&[("RUST_LOG", "warn")]).level, "warn");
        assert_eq!(read(&[("LOG_SAMPLE_RATE", "0.05")]).sample_rate, 0.05);
    }

    /// A wrong level or sample rate is a problem that names its setting.
    #[test]
    fn wrong_log_settings_are_problems() {
        for (pairs, name) in [
            (&[("RUST_LOG", "verbose")][..], "RUST_LOG"),
            (&[("LOG_SAMPLE_RATE", "1.5")][..], "LOG_SAMPLE_RATE"),
        ] {
            let err =
                Problems::collect(|p| LogSettings::check(&Env::from_pairs(pairs.to_vec()), p))
                    .unwrap_err();
            assert_eq!(err.names(), [name]);
        }
        for level in ["DEBUG", "info,aws_smithy_runtime=warn", "off"] {
            let env = Env::from_pairs([("RUST_LOG", level)]);
            assert!(
                Problems::collect(|p| LogSettings::check(&env, p)).is_ok(),
                "{level}"
            );
        }
    }

    /// A text line outside a record: the level, the message, the fields.
    #[test]
    fn text_lines() {
        let captured = crate::fakes::CapturedLog::default();
        let sink = captured.clone();
        let settings = LogSettings {
            level: "info".into(),
            json: false,
            sample_rate: 0.0,
        };
        let subscriber = subscriber(&settings, move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(n = 3, who = "x", "hello");
            tracing::debug!("not written");
        });
        let text = captured.text();
        assert!(text.ends_with(" INFO hello n=3 who=x\n"), "{text}");
        assert_eq!(text.lines().count(), 1);
    }
}
