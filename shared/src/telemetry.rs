//! Logging: structured, JSON when Lambda's log format is JSON, and never an email address.
//!
//! The order's address is an [`Email`](crate::order::Email), whose `Debug` and `Display` hide it. That
//! does not cover text we do not write: an AWS error message ("MessageRejected: ... the following
//! identities failed the check: someone@example.com"), or the SDK's own debug logs of a request.
//! So every formatted line also passes through [`redact_emails`] on its way out.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// What replaces an email address in a log line.
pub const REDACTED: &str = "<redacted-email>";

/// Installs the global subscriber on stdout, as [`LogSettings`](crate::config::LogSettings) say.
/// Calling it twice is harmless.
pub fn init() {
    let settings = crate::config::LogSettings::from_env(&crate::config::Env::process());
    let subscriber = subscriber(&settings.level, settings.json, io::stdout);
    // An error means a subscriber is already installed, which is fine.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The subscriber [`init`] installs, writing to `writer`: every line goes through
/// [`redact_emails`]. Each record's context (sequence number, partition key, eventId, eventType)
/// is the current span, which JSON lines carry as `span`.
pub fn subscriber<W>(
    level: &str,
    json: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(Redacting(writer));
    if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        )
    } else {
        Box::new(builder.finish())
    }
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
