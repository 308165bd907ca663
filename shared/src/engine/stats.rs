//! What an invocation did, counted: [`BatchStats`], and the one list of the counts' names
//! ([`COUNTS`]), which the `batch done` log line, the metrics and the local tools all take.

use std::collections::BTreeMap;
use std::fmt;

/// The counts of one invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchStats {
    /// Records in the batch.
    pub received: u64,
    /// Effects applied.
    pub applied: u64,
    /// Events already applied before (redeliveries).
    pub duplicates: u64,
    /// Of the duplicates, records this warm container had finished itself: known without a call.
    pub remembered: u64,
    /// Business rejections, recorded and not retried.
    pub rejected: u64,
    /// Events that called for no effect.
    pub no_effect: u64,
    /// Unwanted event types, by type.
    pub skipped: BTreeMap<String, u64>,
    /// Records that can never succeed, captured and acknowledged.
    pub poison: u64,
    /// Records that failed retryably (reported).
    pub failed: u64,
    /// Records not run because an earlier record of their key failed (redelivered after it).
    pub blocked: u64,
    /// Records not started, or abandoned, because the deadline drew near (reported).
    pub unstarted: u64,
    /// Log lines the records' buffers dropped (full): see [`crate::platform::telemetry`].
    pub log_lines_dropped: u64,
}

/// One count: its name, its CloudWatch metric, and what it means to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The name, as the `batch done` line writes it (`applied`).
    pub name: &'static str,
    /// The metric (`RecordsApplied`), if it has one of its own.
    pub metric: Option<&'static str>,
    /// What it means, after its number ("3 applied").
    pub meaning: &'static str,
}

/// Every count, in the order a person reads them.
pub const COUNTS: [Count; 11] = [
    count("received", "RecordsReceived", "received"),
    count("applied", "RecordsApplied", "applied"),
    count(
        "duplicates",
        "RecordsDuplicate",
        "done before (duplicates: nothing done again)",
    ),
    count(
        "remembered",
        "RecordsRemembered",
        "of them known to this warm container (no call made)",
    ),
    count(
        "rejected",
        "RecordsRejected",
        "rejected (recorded, not retried)",
    ),
    Count {
        name: "no_effect",
        // Counted in `RecordsProcessed` only.
        metric: None,
        meaning: "needing no effect",
    },
    count(
        "skipped",
        SKIPPED_METRIC,
        "skipped (types this function does not handle)",
    ),
    count(
        "poison",
        "RecordsPoison",
        "poison (kept in the dead-letter queue, not retried)",
    ),
    count(
        "failed",
        "RecordsFailed",
        "failed (reported: Lambda retries from the first)",
    ),
    count(
        "blocked",
        "RecordsBlocked",
        "held back behind an earlier failure of their key",
    ),
    count(
        "unstarted",
        "RecordsUnstarted",
        "not started (the deadline was near)",
    ),
];

const fn count(name: &'static str, metric: &'static str, meaning: &'static str) -> Count {
    Count {
        name,
        metric: Some(metric),
        meaning,
    }
}

/// The metric of the skipped records, in all and by event type.
const SKIPPED_METRIC: &str = "RecordsSkipped";

/// The metric of the records that came to an outcome ([`BatchStats::processed`]).
pub const PROCESSED_METRIC: &str = "RecordsProcessed";

impl BatchStats {
    /// The value of each of [`COUNTS`], in its order (skipped types summed).
    pub fn values(&self) -> [u64; COUNTS.len()] {
        [
            self.received,
            self.applied,
            self.duplicates,
            self.remembered,
            self.rejected,
            self.no_effect,
            self.skipped.values().sum(),
            self.poison,
            self.failed,
            self.blocked,
            self.unstarted,
        ]
    }

    /// Each count with its value, in [`COUNTS`]' order.
    pub fn counts(&self) -> impl Iterator<Item = (&'static Count, u64)> {
        COUNTS.iter().zip(self.values())
    }

    /// Records that came to an outcome: applied, duplicates, rejected or with no effect.
    pub fn processed(&self) -> u64 {
        self.applied + self.duplicates + self.rejected + self.no_effect
    }

    /// Each count by its metric's name, in order, with [`PROCESSED_METRIC`] after the records
    /// received.
    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        let mut metrics: Vec<(&'static str, u64)> = self
            .counts()
            .filter_map(|(count, value)| Some((count.metric?, value)))
            .collect();
        metrics.insert(1, (PROCESSED_METRIC, self.processed()));
        metrics
    }

    /// The metric the skipped records are counted under by event type.
    pub fn skipped_metric() -> &'static str {
        SKIPPED_METRIC
    }

    /// The counts as the `batch done` line writes them: `received=8 applied=2 ...`, every count.
    pub fn line(&self) -> CountsLine<'_> {
        CountsLine(self)
    }

    /// Reads what [`Self::line`] wrote into counts by name (names it does not know are kept too,
    /// so a newer line reads in an older tool).
    pub fn parse_line(line: &str) -> BTreeMap<String, u64> {
        line.split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
            .collect()
    }
}

/// [`BatchStats::line`]'s text.
#[derive(Debug)]
pub struct CountsLine<'a>(&'a BatchStats);

impl fmt::Display for CountsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (count, value) in self.0.counts() {
            write!(f, "{sep}{}={value}", count.name)?;
            sep = " ";
        }
        Ok(())
    }
}

/// What `counts` (by name, as [`BatchStats::parse_line`] reads them) say to a person:
/// `8 records: 2 applied; 6 poison (kept in the dead-letter queue, not retried)`, the counts that
/// are not 0 in [`COUNTS`]' order.
pub fn describe(counts: &BTreeMap<String, u64>) -> String {
    let received = counts.get("received").copied().unwrap_or(0);
    // One outcome per event: a KPL aggregate is one Kinesis record holding several.
    let events: u64 = COUNTS
        .iter()
        .filter(|c| !matches!(c.name, "received" | "remembered"))
        .filter_map(|c| counts.get(c.name))
        .sum();
    let parts: Vec<String> = COUNTS
        .iter()
        .filter(|c| c.name != "received")
        .filter_map(|c| {
            let n = counts.get(c.name).copied().filter(|n| *n > 0)?;
            Some(format!("{n} {}", c.meaning))
        })
        .collect();
    let records = if received == 1 { "record" } else { "records" };
    let head = if events > received {
        format!("{received} Kinesis {records} holding {events} events (KPL aggregates opened)")
    } else {
        format!("{received} {records}")
    };
    if parts.is_empty() {
        head
    } else {
        format!("{head}: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> BatchStats {
        BatchStats {
            received: 8,
            applied: 2,
            remembered: 1,
            duplicates: 1,
            skipped: BTreeMap::from([("A".into(), 2), ("B".into(), 1)]),
            poison: 2,
            ..BatchStats::default()
        }
    }

    /// The line names every count, and reads back as written.
    #[test]
    fn the_line_reads_back() {
        let line = stats().line().to_string();
        assert_eq!(
            line,
            "received=8 applied=2 duplicates=1 remembered=1 rejected=0 no_effect=0 skipped=3 \
             poison=2 failed=0 blocked=0 unstarted=0"
        );
        let read = BatchStats::parse_line(&line);
        let names: Vec<&str> = COUNTS.iter().map(|c| c.name).collect();
        assert_eq!(read.keys().count(), names.len());
        for (count, value) in stats().counts() {
            assert_eq!(read[count.name], value, "{}", count.name);
        }
    }

    /// Every count has a metric but `no_effect`, which `RecordsProcessed` counts with the others.
    #[test]
    fn metrics() {
        let names: Vec<&str> = stats().metrics().iter().map(|(m, _)| *m).collect();
        assert_eq!(
            names,
            [
                "RecordsReceived",
                "RecordsProcessed",
                "RecordsApplied",
                "RecordsDuplicate",
                "RecordsRemembered",
                "RecordsRejected",
                "RecordsSkipped",
                "RecordsPoison",
                "RecordsFailed",
                "RecordsBlocked",
                "RecordsUnstarted"
            ]
        );
        assert_eq!(stats().metrics()[1], ("RecordsProcessed", 3));
        assert!(COUNTS
            .iter()
            .any(|c| c.metric == Some(BatchStats::skipped_metric())));
    }

    /// A person reads the counts that are not 0, in order.
    #[test]
    fn described_for_a_person() {
        let counts = BatchStats::parse_line(&stats().line().to_string());
        assert_eq!(
            describe(&counts),
            "8 records: 2 applied; 1 done before (duplicates: nothing done again); 1 of them known \
             to this warm container (no call made); 3 skipped (types this function does not \
             handle); 2 poison (kept in the dead-letter queue, not retried)"
        );
        let one = BatchStats::parse_line("received=1 applied=1");
        assert_eq!(describe(&one), "1 record: 1 applied");
        // Aggregates: the outcomes are the events', and say how many the records held.
        let kpl = BatchStats::parse_line("received=4 applied=4 skipped=1 poison=2");
        assert_eq!(
            describe(&kpl),
            "4 Kinesis records holding 7 events (KPL aggregates opened): 4 applied; 1 skipped \
             (types this function does not handle); 2 poison (kept in the dead-letter queue, not \
             retried)"
        );
        assert_eq!(describe(&BTreeMap::new()), "0 records");
    }
}
