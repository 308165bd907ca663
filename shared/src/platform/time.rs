//! Timestamps as AWS writes them: RFC 3339, UTC, with exactly three fraction digits
//! (`2026-11-30T04:24:16.120Z`), as in envelopes and Lambda's failure records.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_smithy_types::date_time::{DateTime, Format};

/// `epoch_ms` (milliseconds since the Unix epoch) in RFC 3339 with milliseconds.
pub fn iso_millis(epoch_ms: i64) -> String {
    let (secs, millis) = (epoch_ms.div_euclid(1000), epoch_ms.rem_euclid(1000));
    let whole = DateTime::from_secs(secs)
        .fmt(Format::DateTime)
        .unwrap_or_default();
    // `2026-11-30T04:24:16Z` -> `2026-11-30T04:24:16.120Z`
    let stem = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{stem}.{millis:03}Z")
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_digits_always() {
        assert_eq!(iso_millis(1_795_000_000_250), "2026-11-18T11:06:40.250Z");
        assert_eq!(iso_millis(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
        assert_eq!(iso_millis(1_795_000_000_007), "2026-11-18T11:06:40.007Z");
    }
}
