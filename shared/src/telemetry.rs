//! Logging: structured, JSON when Lambda's log format is JSON, never an email address, and
//! nothing per record on success.
//!
//! The order's address is an [`Email`](crate::order::Email), whose `Debug` and `Display` hide it. That
//! does not cover text we do not write: an AWS error message ("MessageRejected: ... the following
//! identities failed the check: someone@example.com"), or the SDK's own debug logs of a request.
//! So every formatted line also passes through [`redact_emails`] on its way out.

use std::future::Future;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::{EnvFilter, Registry};

/// What replaces an email address in a log line.
pub const REDACTED: &str = "<redacted-email>";

/// Installs the global subscriber on stdout, as [`LogSettings`](crate::config::LogSettings) say.
/// Calling it twice is harmless.
pub fn init() {
    let settings = crate::config::LogSettings::from_env(&crate::config::Env::process());
    set_sample_rate(settings.sample_rate);
    let subscriber = subscriber(&settings.level, settings.json, io::stdout);
    // An error means a subscriber is already installed, which is fine.
    let _ = tracing::subscriber::set_global_default(subscriber);
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

/// Sets the share of invocations (0 to 1) that log everything at DEBUG (`LOG_SAMPLE_RATE`). It
/// takes effect for subscribers made after it.
pub fn set_sample_rate(rate: f64) {
    SAMPLE_RATE.store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

/// The subscriber [`init`] installs, writing to `writer`: every line goes through
/// [`redact_emails`]. Lines logged inside a record ([`in_record`]) are kept in its buffer and
/// written, with the record's context under `span` (sequence number, sub-sequence number,
/// partition key, eventId, eventType), only when the record logs at WARN or above; the others are
/// written as they come.
pub fn subscriber<W>(
    level: &str,
    json: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Clone + Send + Sync + 'static,
{
    // A wrong filter stops start-up (`LogSettings::check`); until it does, `info`.
    let configured = Some(level.to_lowercase())
        .filter(|l| valid_filter(l))
        .and_then(|l| EnvFilter::try_new(l).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let max = configured.max_level_hint().unwrap_or(LevelFilter::INFO);
    let sampling = f64::from_bits(SAMPLE_RATE.load(Ordering::Relaxed)) > 0.0;
    // With sampling, DEBUG must reach the layers, which keep it for sampled invocations only.
    let global = if sampling && max < LevelFilter::DEBUG {
        EnvFilter::new("debug")
    } else {
        configured
    };
    let wanted = move |meta: &tracing::Metadata<'_>| *meta.level() <= max || sampled();
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .with_writer(Redacting(writer.clone()));
    let outside = filter_fn(move |meta| !in_a_record() && wanted(meta));
    let fmt: Box<dyn Layer<tracing_subscriber::layer::Layered<EnvFilter, Registry>> + Send + Sync> =
        if json {
            fmt.json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_filter(outside)
                .boxed()
        } else {
            fmt.with_filter(outside).boxed()
        };
    let records = RecordLines {
        json,
        writer: Redacting(writer),
    }
    .with_filter(filter_fn(move |meta| {
        meta.is_event() && in_a_record() && wanted(meta)
    }));
    Box::new(Registry::default().with(global).with(fmt).with(records))
}

/// A writer maker whose writers redact email addresses from what passes through them.
#[derive(Debug, Clone)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

/// A writer that redacts email addresses. The formatter hands it one whole line per write.
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

// ---------------------------------------------------------------------------------------------
// Log buffering: nothing per record on success, everything on failure.

/// At most this many lines are kept for one record.
pub const MAX_LINES_PER_RECORD: usize = 64;
/// At most this many bytes of lines are kept for one invocation's records together.
pub const MAX_BYTES_PER_INVOCATION: usize = 256 * 1024;

tokio::task_local! {
    static INVOCATION: InvocationLog;
    static RECORD: RecordLog;
}

/// The share of invocations that log everything at DEBUG (`LOG_SAMPLE_RATE`), as `f64` bits.
static SAMPLE_RATE: AtomicU64 = AtomicU64::new(0);

/// One invocation's buffers: their size so far, the lines dropped, and whether it is sampled.
#[derive(Debug, Default)]
struct InvocationLog {
    sampled: bool,
    bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// One record's identity and the lines kept for it.
#[derive(Debug)]
struct RecordLog {
    identity: RecordIdentity,
    lines: Mutex<Vec<String>>,
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
    fn to_json(&self) -> Value {
        let mut span = Map::new();
        span.insert("name".into(), "record".into());
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                span.insert(k.into(), v);
            }
        };
        put(
            "sequence_number",
            self.sequence_number.clone().map(Value::from),
        );
        put(
            "sub_sequence_number",
            self.sub_sequence_number.map(Value::from),
        );
        put("partition_key", self.partition_key.clone().map(Value::from));
        put("event_id", self.event_id.clone().map(Value::from));
        put("event_type", self.event_type.clone().map(Value::from));
        Value::Object(span)
    }

    fn to_text(&self) -> String {
        let mut out = String::from("record{");
        let mut sep = "";
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push_str(sep);
                out.push_str(k);
                out.push('=');
                out.push_str(&v);
                sep = " ";
            }
        };
        put("sequence_number", self.sequence_number.clone());
        put(
            "sub_sequence_number",
            self.sub_sequence_number.map(|s| s.to_string()),
        );
        put("partition_key", self.partition_key.clone());
        put("event_id", self.event_id.clone());
        put("event_type", self.event_type.clone());
        out.push('}');
        out
    }
}

/// Runs one invocation's processing with its own log buffers; whether it is sampled (logs at
/// DEBUG) is drawn here from `LOG_SAMPLE_RATE`. Returns the output and the lines dropped.
pub async fn in_invocation<F: Future>(fut: F) -> (F::Output, u64) {
    let rate = f64::from_bits(SAMPLE_RATE.load(Ordering::Relaxed));
    let log = InvocationLog {
        sampled: rate > 0.0 && fastrand_unit() < rate,
        ..InvocationLog::default()
    };
    INVOCATION
        .scope(log, async {
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
    RECORD
        .scope(
            RecordLog {
                identity,
                lines: Mutex::new(Vec::new()),
                dropped: AtomicU64::new(0),
            },
            fut,
        )
        .await
}

/// Whether this invocation was drawn to log everything at DEBUG.
fn sampled() -> bool {
    INVOCATION.try_with(|i| i.sampled).unwrap_or(false)
}

fn in_a_record() -> bool {
    RECORD.try_with(|_| ()).is_ok()
}

/// A number in [0, 1) from the clock and a counter: enough to draw sampled invocations.
fn fastrand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = foldhash::fast::RandomState::default().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The layer that keeps and writes the lines logged inside a record (the fmt layer writes the
/// others).
struct RecordLines<W> {
    json: bool,
    writer: Redacting<W>,
}

impl<S, W> Layer<S> for RecordLines<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let _ = RECORD.try_with(|record| {
            let level = *event.metadata().level();
            let line = self.render(event);
            if level <= Level::WARN || sampled() {
                // Something went wrong (or this invocation is sampled): what the record logged
                // so far, then this line.
                let kept = std::mem::take(
                    &mut *record.lines.lock().unwrap_or_else(PoisonError::into_inner),
                );
                let dropped = record.dropped.swap(0, Ordering::Relaxed);
                let mut out = Vec::new();
                if dropped > 0 {
                    let note = format!(
                        "{dropped} earlier lines of this record were dropped (buffer full)"
                    );
                    out.push(self.line(Level::WARN, &note, &record.identity, None));
                }
                for l in kept {
                    out.push(self.with_identity(l, &record.identity));
                }
                out.push(self.with_identity(line, &record.identity));
                let mut w = self.writer.make_writer();
                for l in out {
                    let _ = w.write_all(l.as_bytes());
                }
            } else {
                // Kept, within the bounds.
                let fits = INVOCATION
                    .try_with(|i| {
                        let before = i.bytes.fetch_add(line.len(), Ordering::Relaxed);
                        let fits = before + line.len() <= MAX_BYTES_PER_INVOCATION;
                        if !fits {
                            i.bytes.fetch_sub(line.len(), Ordering::Relaxed);
                            i.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        fits
                    })
                    .unwrap_or(true);
                let mut lines = record.lines.lock().unwrap_or_else(PoisonError::into_inner);
                if fits && lines.len() < MAX_LINES_PER_RECORD {
                    lines.push(line);
                } else {
                    record.dropped.fetch_add(1, Ordering::Relaxed);
                    if fits {
                        let _ = INVOCATION.try_with(|i| i.dropped.fetch_add(1, Ordering::Relaxed));
                    }
                }
            }
        });
    }
}

impl<W> RecordLines<W> {
    /// The line without its identity: JSON (an object missing its closing brace, so the identity
    /// can be added), or text.
    fn render(&self, event: &tracing::Event<'_>) -> String {
        let level = *event.metadata().level();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.message.take().unwrap_or_default();
        self.line(
            level,
            &message,
            &RecordIdentity::default(),
            Some(fields.rest),
        )
        .trim_end()
        .to_owned()
    }

    fn line(
        &self,
        level: Level,
        message: &str,
        identity: &RecordIdentity,
        fields: Option<Vec<(String, Value)>>,
    ) -> String {
        let timestamp = crate::time::iso_millis(crate::time::now_ms());
        if self.json {
            let mut m = Map::new();
            m.insert("timestamp".into(), timestamp.into());
            m.insert("level".into(), level.as_str().into());
            m.insert("message".into(), message.into());
            for (k, v) in fields.unwrap_or_default() {
                m.insert(k, v);
            }
            if *identity != RecordIdentity::default() {
                m.insert("span".into(), identity.to_json());
            }
            let mut s = Value::Object(m).to_string();
            s.push('\n');
            s
        } else {
            let mut s = format!("{timestamp} {:>5} ", level.as_str());
            if *identity != RecordIdentity::default() {
                s.push_str(&identity.to_text());
                s.push_str(": ");
            }
            s.push_str(message);
            for (k, v) in fields.unwrap_or_default() {
                s.push(' ');
                s.push_str(&k);
                s.push('=');
                match v {
                    Value::String(t) => s.push_str(&t),
                    other => s.push_str(&other.to_string()),
                }
            }
            s.push('\n');
            s
        }
    }

    /// A rendered line with the record's identity added.
    fn with_identity(&self, line: String, identity: &RecordIdentity) -> String {
        if self.json {
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(mut m)) => {
                    m.insert("span".into(), identity.to_json());
                    let mut s = Value::Object(m).to_string();
                    s.push('\n');
                    s
                }
                _ => format!("{line}\n"),
            }
        } else {
            // `<timestamp> <LEVEL> rest` -> `<timestamp> <LEVEL> record{..}: rest`
            let mut parts = line.splitn(3, ' ');
            let (ts, lvl, rest) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            format!("{ts} {lvl} {}: {rest}\n", identity.to_text())
        }
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
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

impl Fields {
    fn put(&mut self, field: &tracing::field::Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.push((field.name().to_owned(), value));
        }
    }
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
}
