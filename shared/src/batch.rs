//! The Lambda Kinesis event, read leniently in one pass.
//!
//! Deserialising the whole event into strict types means one record with an odd field fails the
//! whole invocation, and Lambda then retries the batch until the shard's records expire. So this
//! reader never fails on a record: every field it wants is read as "a string, or nothing", every
//! other field is skipped, and the record's `data` is base64-decoded on the spot into one buffer
//! shared by the whole batch. What is wrong with a record is kept beside it, for the engine to
//! capture it as poison.
//!
//! The strings of a record (partition key, sequence number, shard) go into one text arena, and the
//! decoded data into one byte arena, so a batch of thousands of records makes a handful of
//! allocations, not several per record; the arenas of the last batch are reused by the next.
//!
//! Two readers share these rules. The fast one ([`crate::json::Cursor`]) reads the common case,
//! strings without escapes, in one pass over the bytes, and checks what it skips against the JSON
//! grammar; on anything else it gives up and the `serde_json` visitor reads the same text, with the
//! same result or the precise error. Tests hold the two to the same answers.
//!
//! The functions read the body's bytes with [`KinesisBatch::from_slice`], from a layer of the
//! runtime (`crate::runtime`). The batch also deserialises through serde (for a handler that takes
//! `LambdaEvent<KinesisBatch>`): the body is then first taken whole as a borrowed raw JSON value, so
//! `lambda_runtime`'s path-tracking wrapper stays out of the per-field work, at the price of a scan.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::json::{self, Cursor};

/// The visitor methods that accept every scalar that is not a string, and any array, and yield
/// `$none`: a field of the wrong type is "absent", never an error for the batch.
macro_rules! lenient_scalars_and_seqs {
    ($none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_seq(seq)?;
            Ok($none)
        }
    };
}

/// [`lenient_scalars_and_seqs`], plus objects: for fields that want a string.
macro_rules! lenient_non_strings {
    ($none:expr) => {
        lenient_scalars_and_seqs!($none);
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_map(map)?;
            Ok($none)
        }
    };
}

/// A span of one of the batch's arenas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Why a record's `data` could not be taken as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataFault {
    /// The record has no `kinesis.data` field, or it is not a string.
    #[error("the record has no kinesis.data string")]
    Missing,
    /// `kinesis.data` is a string but not valid standard base64.
    #[error("kinesis.data is not valid base64")]
    NotBase64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    /// Decoded bytes, in the byte arena.
    Decoded(Span),
    /// The raw field as it came, in the text arena, with what is wrong with it.
    Faulty(Span, DataFault),
}

impl Default for Data {
    fn default() -> Self {
        Data::Faulty(Span::default(), DataFault::Missing)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RawRecord {
    partition_key: Option<Span>,
    sequence_number: Option<Span>,
    shard_id: Option<Span>,
    data: Data,
    is_object: bool,
}

impl RawRecord {
    /// A record that is an object, its fields not read yet.
    fn object() -> Self {
        Self {
            is_object: true,
            ..Self::default()
        }
    }
}

/// One Lambda Kinesis invocation payload, decoded in a single pass.
///
/// It deserialises from the event JSON exactly as the event source mapping sends it (so
/// `lambda_runtime` can hand it to the handler), and never fails because of one record.
#[derive(Debug, Default)]
pub struct KinesisBatch {
    records: Vec<RawRecord>,
    text: String,
    /// The byte arena while it is filled, and after, when it is not all UTF-8.
    bytes: Vec<u8>,
    /// The byte arena, when it is all UTF-8 (checked at once, far faster than record by record):
    /// each record's data is then also text at no further cost.
    utf8: String,
    event_source_arn: Option<Span>,
}

/// A view of one record of a [`KinesisBatch`].
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    batch: &'a KinesisBatch,
    index: usize,
    raw: RawRecord,
}

impl<'a> RecordView<'a> {
    /// The record's position in the batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `kinesis.partitionKey`, when it is present and a string.
    pub fn partition_key(&self) -> Option<&'a str> {
        self.raw.partition_key.map(|s| self.batch.text(s))
    }

    /// `kinesis.sequenceNumber`, when it is present and a string.
    pub fn sequence_number(&self) -> Option<&'a str> {
        self.raw.sequence_number.map(|s| self.batch.text(s))
    }

    /// The shard, from the `eventID` (`shardId-…:<sequence number>`).
    pub fn shard_id(&self) -> Option<&'a str> {
        self.raw.shard_id.map(|s| self.batch.text(s))
    }

    /// The decoded data, or what is wrong with it.
    pub fn data(&self) -> Result<&'a [u8], DataFault> {
        match self.raw.data {
            Data::Decoded(span) => Ok(&self.batch.arena()[span.range()]),
            Data::Faulty(_, fault) => Err(fault),
        }
    }

    /// The decoded data as text, when it is UTF-8.
    pub fn data_str(&self) -> Option<&'a str> {
        match self.raw.data {
            Data::Decoded(span) if !self.batch.utf8.is_empty() => self.batch.utf8.get(span.range()),
            Data::Decoded(span) => std::str::from_utf8(&self.batch.bytes[span.range()]).ok(),
            Data::Faulty(..) => None,
        }
    }

    /// Whether the record was a JSON object at all.
    pub fn is_object(&self) -> bool {
        self.raw.is_object
    }

    /// The record's data as base64, as it came on the wire: for capturing a record with its payload.
    pub fn data_base64(&self) -> String {
        match self.raw.data {
            Data::Decoded(span) => {
                base64_simd::STANDARD.encode_to_string(&self.batch.arena()[span.range()])
            }
            Data::Faulty(span, _) => self.batch.text(span).to_owned(),
        }
    }
}

impl KinesisBatch {
    /// The number of records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The `eventSourceARN` of the batch (every record of a batch comes from the same stream).
    pub fn event_source_arn(&self) -> Option<&str> {
        self.event_source_arn.map(|s| self.text(s))
    }

    /// The records, in the order the event source mapping delivered them.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordView<'_>> + '_ {
        self.records
            .iter()
            .enumerate()
            .map(|(index, raw)| RecordView {
                batch: self,
                index,
                raw: *raw,
            })
    }

    /// The record at `index`.
    pub fn record(&self, index: usize) -> Option<RecordView<'_>> {
        self.records.get(index).map(|raw| RecordView {
            batch: self,
            index,
            raw: *raw,
        })
    }

    /// Reads a batch from the event JSON.
    pub fn from_slice(json: &[u8]) -> Result<Self, serde_json::Error> {
        // The body is mostly base64 and JSON punctuation: checked with SIMD (the standard
        // library's check is a word at a time).
        match simdutf8::basic::from_utf8(json) {
            Ok(text) => Self::from_text(text),
            // Not UTF-8: the byte deserializer names where.
            Err(_) => read_event(
                &mut serde_json::Deserializer::from_slice(json),
                Builder::default(),
            ),
        }
    }

    /// Reads a batch from the event JSON as text: the fast reader, else the serde reader.
    fn from_text(json: &str) -> Result<Self, serde_json::Error> {
        let mut builder = Builder::default();
        if scan(json, &mut builder).is_some() {
            return Ok(builder.finish());
        }
        builder.clear();
        read_event(&mut serde_json::Deserializer::from_str(json), builder)
    }

    fn arena(&self) -> &[u8] {
        if self.utf8.is_empty() {
            &self.bytes
        } else {
            self.utf8.as_bytes()
        }
    }

    fn text(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or_default()
    }
}

/// Appends `s` to the text arena, reusing the previous span when the text repeats (the stream ARN
/// and the shard id are the same on every record).
fn push_text(text: &mut String, last: &mut Option<Span>, s: &str) -> Option<Span> {
    if let Some(prev) = *last {
        if text.get(prev.range()) == Some(s) {
            return Some(prev);
        }
    }
    let span = push_str(text, s)?;
    *last = Some(span);
    Some(span)
}

fn push_str(text: &mut String, s: &str) -> Option<Span> {
    let start = u32::try_from(text.len()).ok()?;
    text.push_str(s);
    let end = u32::try_from(text.len()).ok()?;
    Some(Span { start, end })
}

/// The mutable state the one-pass reader fills.
struct Builder {
    batch: KinesisBatch,
    last_shard: Option<Span>,
}

impl Builder {
    /// The batch, its byte arena kept as text when it is all UTF-8.
    fn finish(mut self) -> KinesisBatch {
        let bytes = std::mem::take(&mut self.batch.bytes);
        match String::from_utf8(bytes) {
            Ok(text) => self.batch.utf8 = text,
            Err(not_text) => self.batch.bytes = not_text.into_bytes(),
        }
        self.batch
    }

    /// Empties what a reader that gave up had filled, keeping the buffers.
    fn clear(&mut self) {
        self.batch.records.clear();
        self.batch.text.clear();
        self.batch.bytes.clear();
        self.batch.event_source_arn = None;
        self.last_shard = None;
    }

    /// `eventID` is `shardId-000000000006:<sequence number>`: keeps the shard.
    fn shard(&mut self, event_id: &str) -> Option<Span> {
        // Most likely the shard of the record before: then no search for the colon.
        if let Some(last) = self.last_shard {
            let shard = self.batch.text(last);
            if event_id.as_bytes().get(shard.len()) == Some(&b':') && event_id.starts_with(shard) {
                return Some(last);
            }
        }
        let shard = memchr::memchr(b':', event_id.as_bytes())
            .and_then(|colon| event_id.get(..colon))
            .unwrap_or(event_id);
        push_text(&mut self.batch.text, &mut self.last_shard, shard)
    }

    /// The batch's `eventSourceARN`: the first record's.
    fn arn(&mut self, arn: &str) {
        if self.batch.event_source_arn.is_none() {
            self.batch.event_source_arn = push_str(&mut self.batch.text, arn);
        }
    }
}

impl Default for Builder {
    fn default() -> Self {
        let (records, text, bytes) = lock_spare().take().unwrap_or_default();
        Self {
            batch: KinesisBatch {
                records,
                text,
                bytes,
                utf8: String::new(),
                event_source_arn: None,
            },
            last_shard: None,
        }
    }
}

/// The buffers of the last batch dropped, emptied, for the next batch to fill. A warm Lambda
/// container handles one batch after another: reusing the arenas spares the allocator and the
/// kernel some megabytes of fresh pages per invocation. At most one set is kept, and none over
/// [`SPARE_LIMIT`] bytes, so the memory held between invocations stays bounded.
type Buffers = (Vec<RawRecord>, String, Vec<u8>);
static SPARE: std::sync::Mutex<Option<Buffers>> = std::sync::Mutex::new(None);

/// The largest byte arena kept for reuse (Lambda's payload limit is 6 MB of base64).
const SPARE_LIMIT: usize = 8 << 20;

fn lock_spare() -> std::sync::MutexGuard<'static, Option<Buffers>> {
    SPARE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for KinesisBatch {
    fn drop(&mut self) {
        let mut bytes = match self.utf8.capacity() {
            0 => std::mem::take(&mut self.bytes),
            _ => std::mem::take(&mut self.utf8).into_bytes(),
        };
        if bytes.capacity() > SPARE_LIMIT || bytes.capacity() == 0 {
            return;
        }
        let mut spare = lock_spare();
        if spare.is_none() {
            let mut records = std::mem::take(&mut self.records);
            let mut text = std::mem::take(&mut self.text);
            records.clear();
            text.clear();
            bytes.clear();
            *spare = Some((records, text, bytes));
        }
    }
}

impl<'de> Deserialize<'de> for KinesisBatch {
    /// Reads the event from a `serde_json` deserializer over a slice or a string (as
    /// `lambda_runtime` and [`KinesisBatch::from_slice`] do).
    ///
    /// `lambda_runtime` reads every event through `serde_path_to_error`, which wraps each of the
    /// tens of thousands of calls a 6,000-record batch makes to track the field path, and
    /// `serde_json` over a slice checks each string's UTF-8 again. So the body is first taken as one
    /// borrowed raw value (one scan; its UTF-8 checked once), and read from that text by a plain
    /// `serde_json` string deserializer.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(deserializer)?;
        KinesisBatch::from_text(raw.get()).map_err(de::Error::custom)
    }
}

/// The fast reader: the event read with [`Cursor`], which takes the common case (no escapes in the
/// strings it reads) and checks everything it skips. `None` leaves the event to [`read_event`],
/// which reads every valid event, the same way, and names what is wrong with an invalid one.
fn scan(json: &str, b: &mut Builder) -> Option<()> {
    let mut c = Cursor::new(json);
    let mut shape = Shape::default();
    c.members(|c, key| match key {
        "Records" => c.elements(|c| {
            let start = c.mark();
            let record = match shape.scan_like(c, b) {
                Some(record) => record,
                None => {
                    c.rewind(start);
                    shape.scan(c, b)?
                }
            };
            b.batch.records.push(record);
            Some(())
        }),
        _ => c.skip_value(),
    })?;
    c.at_end().then_some(())
}

/// The fields the event source mapping writes the same on every record of a batch: the versions,
/// the source, the role, the region and the stream. Reading them has no effect (the stream's ARN
/// is taken from the first record that has one).
fn same_every_record(key: &str) -> bool {
    matches!(
        key,
        "kinesisSchemaVersion"
            | "encryptionType"
            | "eventSource"
            | "eventVersion"
            | "eventName"
            | "invokeIdentityArn"
            | "awsRegion"
            | "eventSourceARN"
    )
}

/// The shape of the last record read field by field: its text cut at each value that varies from
/// record to record (the partition key, the sequence number, the data, the arrival time, the event
/// id). The event source mapping writes every record of a batch the same way, so the next record
/// is most likely the same text around different values: it is read by comparing that text and
/// reading only the values, each with its field's own reader.
///
/// That reads exactly what reading field by field reads: the text that is compared is the same
/// keys, punctuation, whitespace and unchanging values that were checked against the grammar in
/// the record the shape came from, and reading them had no effect; each value is read by the same
/// code, under the same key. Any difference, anywhere, and the record is read field by field,
/// and becomes the shape.
#[derive(Default)]
struct Shape<'a> {
    /// Each varying value: the text before it (from the end of the one before), its key, and
    /// whether it is a field of `kinesis` (else of the record).
    parts: Vec<(&'a str, &'a str, bool)>,
    /// The text after the last varying value, to the end of the record; `None` until a record
    /// was read.
    tail: Option<&'a str>,
    /// While a record is read field by field: where each varying value starts and ends.
    spans: Vec<(usize, usize, &'a str, bool)>,
}

impl<'a> Shape<'a> {
    /// The record at the cursor, read as one of this shape; `None` when it is not one (the cursor
    /// is then anywhere in it).
    fn scan_like(&self, c: &mut Cursor<'a>, b: &mut Builder) -> Option<RawRecord> {
        let tail = self.tail?;
        let mut record = RawRecord::object();
        for &(before, key, in_kinesis) in &self.parts {
            c.eat_exact(before)?;
            field(c, b, &mut record, key, in_kinesis)?;
        }
        c.eat_exact(tail)?;
        Some(record)
    }

    /// The record at the cursor, read field by field (by the same rules as [`RecordSeed`]; a
    /// record that is not an object is left to it); it becomes the shape.
    fn scan(&mut self, c: &mut Cursor<'a>, b: &mut Builder) -> Option<RawRecord> {
        let start = c.mark();
        let spans = &mut self.spans;
        spans.clear();
        let mut record = RawRecord::object();
        // Reads one field and notes where its value is, when it varies from record to record.
        let mut read = |c: &mut Cursor<'a>, record: &mut RawRecord, key: &'a str, in_kinesis| {
            let at = c.mark();
            field(c, b, record, key, in_kinesis)?;
            if !same_every_record(key) {
                spans.push((at, c.position(), key, in_kinesis));
            }
            Some(())
        };
        c.members(|c, key| {
            if key == "kinesis" && c.peek()? == b'{' {
                c.members(|c, key| read(c, &mut record, key, true))
            } else {
                read(c, &mut record, key, false)
            }
        })?;
        self.parts.clear();
        let mut from = start;
        for &(at, end, key, in_kinesis) in &self.spans {
            self.parts.push((c.slice(from, at)?, key, in_kinesis));
            from = end;
        }
        self.tail = Some(c.slice(from, c.position())?);
        Some(record)
    }
}

/// One field of a record's `kinesis` object, or of the record.
fn field(
    c: &mut Cursor<'_>,
    b: &mut Builder,
    record: &mut RawRecord,
    key: &str,
    in_kinesis: bool,
) -> Option<()> {
    if in_kinesis {
        kinesis_field(c, b, record, key)
    } else {
        record_field(c, b, record, key)
    }
}

/// One field of a record's `kinesis` object.
fn kinesis_field(
    c: &mut Cursor<'_>,
    b: &mut Builder,
    record: &mut RawRecord,
    key: &str,
) -> Option<()> {
    let batch = &mut b.batch;
    match key {
        "partitionKey" => record.partition_key = scan_text(c, &mut batch.text)?,
        "sequenceNumber" => record.sequence_number = scan_text(c, &mut batch.text)?,
        "data" if c.peek()? == b'"' => {
            record.data = push_data(batch, c.long_str_unchecked()?, json::is_plain)?;
        }
        "data" => {
            c.skip_value()?;
            record.data = Data::default();
        }
        _ => c.skip_value()?,
    }
    Some(())
}

/// One field of a record.
fn record_field(
    c: &mut Cursor<'_>,
    b: &mut Builder,
    record: &mut RawRecord,
    key: &str,
) -> Option<()> {
    match key {
        "kinesis" if c.peek()? == b'{' => c.members(|c, key| kinesis_field(c, b, record, key)),
        "eventID" if c.peek()? == b'"' => {
            record.shard_id = b.shard(c.str()?);
            Some(())
        }
        // Only the first record's is kept.
        "eventSourceARN" if b.batch.event_source_arn.is_none() && c.peek()? == b'"' => {
            b.arn(c.str()?);
            Some(())
        }
        _ => c.skip_value(),
    }
}

/// A field that is kept when it is a string (as [`TextSeed`]).
fn scan_text(c: &mut Cursor<'_>, text: &mut String) -> Option<Option<Span>> {
    if c.peek()? == b'"' {
        Some(push_str(text, c.str()?))
    } else {
        c.skip_value()?;
        Some(None)
    }
}

/// Decodes `kinesis.data` into the byte arena; when it is not base64, keeps it as text, if
/// `is_string` holds for it (the fast reader checks only then that it was a valid JSON string).
fn push_data(batch: &mut KinesisBatch, v: &str, is_string: fn(&str) -> bool) -> Option<Data> {
    let bytes = &mut batch.bytes;
    // Grow by doubling: the decoder itself reserves exactly, which would copy the arena on
    // every record.
    bytes.reserve(v.len() / 4 * 3 + 3);
    let start = bytes.len();
    let decoded = base64_simd::STANDARD.decode_append(v, bytes);
    let end = bytes.len();
    match (decoded, u32::try_from(start), u32::try_from(end)) {
        (Ok(()), Ok(start), Ok(end)) => Some(Data::Decoded(Span { start, end })),
        _ => {
            bytes.truncate(start);
            if !is_string(v) {
                return None;
            }
            let raw = push_str(&mut batch.text, v).unwrap_or_default();
            Some(Data::Faulty(raw, DataFault::NotBase64))
        }
    }
}

/// Reads the event with any deserializer: the one-pass lenient reader.
fn read_event<'de, D: Deserializer<'de>>(
    deserializer: D,
    builder: Builder,
) -> Result<KinesisBatch, D::Error> {
    struct EventVisitor(Builder);
    impl<'de> Visitor<'de> for EventVisitor {
        type Value = KinesisBatch;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a Lambda Kinesis event object with a Records array")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KinesisBatch, A::Error> {
            let mut builder = self.0;
            while let Some(key) = map.next_key::<EventField>()? {
                match key {
                    EventField::Records => map.next_value_seed(RecordsSeed(&mut builder))?,
                    EventField::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(builder.finish())
        }
    }
    deserializer.deserialize_map(EventVisitor(builder))
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum EventField {
    Records,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum RecordField {
    #[serde(rename = "kinesis")]
    Kinesis,
    #[serde(rename = "eventID")]
    EventId,
    #[serde(rename = "eventSourceARN")]
    EventSourceArn,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum KinesisField {
    #[serde(rename = "partitionKey")]
    PartitionKey,
    #[serde(rename = "sequenceNumber")]
    SequenceNumber,
    #[serde(rename = "data")]
    Data,
    #[serde(other)]
    Other,
}

struct RecordsSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Kinesis records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.batch.records.reserve(n);
        }
        while let Some(record) = seq.next_element_seed(RecordSeed(self.0))? {
            self.0.batch.records.push(record);
        }
        Ok(())
    }
}

struct RecordSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = RawRecord;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawRecord, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = RawRecord;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kinesis event record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecord, A::Error> {
        let b = self.0;
        let mut record = RawRecord::object();
        while let Some(key) = map.next_key::<RecordField>()? {
            match key {
                RecordField::Kinesis => map.next_value_seed(KinesisSeed {
                    builder: b,
                    record: &mut record,
                })?,
                RecordField::EventId => {
                    if let LenientStr(Some(id)) = map.next_value()? {
                        record.shard_id = b.shard(&id);
                    }
                }
                RecordField::EventSourceArn => {
                    if let LenientStr(Some(arn)) = map.next_value()? {
                        b.arn(&arn);
                    }
                }
                RecordField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(record)
    }

    // A record that is not an object is kept as an empty record, for the engine to capture.
    lenient_scalars_and_seqs!(RawRecord::default());
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawRecord, E> {
        Ok(RawRecord::default())
    }
}

struct KinesisSeed<'b> {
    builder: &'b mut Builder,
    record: &'b mut RawRecord,
}

impl<'de> DeserializeSeed<'de> for KinesisSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KinesisSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the kinesis object of a record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let batch = &mut self.builder.batch;
        while let Some(key) = map.next_key::<KinesisField>()? {
            match key {
                KinesisField::PartitionKey => {
                    let v = map.next_value_seed(TextSeed(&mut batch.text))?;
                    self.record.partition_key = v;
                }
                KinesisField::SequenceNumber => {
                    let v = map.next_value_seed(TextSeed(&mut batch.text))?;
                    self.record.sequence_number = v;
                }
                KinesisField::Data => {
                    self.record.data = map.next_value_seed(DataSeed(batch))?;
                }
                KinesisField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    lenient_scalars_and_seqs!(());
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// Any JSON value, kept when it is a string. It never fails on a well-formed value.
struct LenientStr(Option<String>);

impl<'de> Deserialize<'de> for LenientStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            lenient_non_strings!(None);
        }
        deserializer.deserialize_any(V).map(LenientStr)
    }
}

/// Any JSON value; a string goes into the text arena.
struct TextSeed<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = Option<Span>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Span>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed<'_> {
    type Value = Option<Span>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(push_str(self.0, v))
    }
    lenient_non_strings!(None);
}

/// `kinesis.data`: a base64 string, decoded straight into the byte arena.
struct DataSeed<'b>(&'b mut KinesisBatch);

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = Data;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Data, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = Data;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Data, E> {
        Ok(push_data(self.0, v, |_| true).unwrap_or_default())
    }
    lenient_non_strings!(Data::default());
}

/// Compares two Kinesis sequence numbers numerically. They are decimal strings of up to 128 digits,
/// too long for any integer type; a longer number (ignoring leading zeros) is the larger one.
pub fn compare_sequence_numbers(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Seen = (
        Option<String>,
        Option<String>,
        Option<String>,
        Result<Vec<u8>, DataFault>,
        bool,
        String,
    );

    fn seen(batch: &KinesisBatch) -> (Option<String>, Vec<Seen>) {
        let records = batch
            .records()
            .map(|r| {
                (
                    r.partition_key().map(str::to_owned),
                    r.sequence_number().map(str::to_owned),
                    r.shard_id().map(str::to_owned),
                    r.data().map(<[u8]>::to_vec),
                    r.is_object(),
                    r.data_base64(),
                )
            })
            .collect();
        (batch.event_source_arn().map(str::to_owned), records)
    }

    /// The serde reader alone: what the fast reader must agree with.
    fn by_serde(json: &[u8]) -> Result<KinesisBatch, serde_json::Error> {
        read_event(
            &mut serde_json::Deserializer::from_slice(json),
            Builder::default(),
        )
    }

    fn by_scan(json: &[u8]) -> Option<KinesisBatch> {
        let mut builder = Builder::default();
        scan(std::str::from_utf8(json).ok()?, &mut builder).map(|()| builder.batch)
    }

    fn sample(name: &str) -> Vec<u8> {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_fast_reader_takes_the_samples_and_agrees_with_serde() {
        for name in [
            "mixed-batch.json",
            "poison-batch.json",
            "kpl-aggregated.json",
            "order-placed.json",
            "order-cancelled.json",
        ] {
            let json = sample(name);
            let fast = by_scan(&json).unwrap_or_else(|| panic!("{name}: not the fast case"));
            assert_eq!(seen(&fast), seen(&by_serde(&json).unwrap()), "{name}");
        }
    }

    #[test]
    fn odd_shapes_agree_with_serde() {
        for json in [
            r#"{"Records":[]}"#,
            r#"{}"#,
            r#"{"other":[1,{"a":null}],"Records":[{"kinesis":"x"},{"kinesis":{"data":7,"partitionKey":["k"]}}]}"#,
            r#"{"Records":[{"kinesis":{"data":"!!","partitionKey":"k","sequenceNumber":"1"},"eventID":5}]}"#,
            r#"{"Records":[{"kinesis":{"data":"aGk=","data":"aGVsbG8="},"eventSourceARN":"a"},{"eventSourceARN":"b","eventID":"s:1"}]}"#,
            r#"{"Records":[{"kinesis":{"partitionKey":"k","partitionKey":null}}],"Records":[{}]}"#,
            r#"{"Records":[7, "x", null, {"kinesis":{"data":"a\u0047k="}}]}"#,
            r#"{"Records":[{"kinesis":{"partitionKey":"caf\u00e9","data":"aGk="}}]}"#,
            r#"{"Records":[{"kinesis":{"partitionKey":"café ☕","data":"aGk="}}]}"#,
            "{\"Records\":[{\"kinesis\":{\"data\":\"a\u{1}Gk=\"}}]}",
            r#"{"Records":{}}"#,
            r#"[]"#,
            r#"{"Records":[]} trailing"#,
        ] {
            let serde = by_serde(json.as_bytes()).map(|b| seen(&b)).ok();
            // When the fast reader leaves it, serde's answer above is the answer.
            if let Some(fast) = by_scan(json.as_bytes()) {
                assert_eq!(Some(seen(&fast)), serde, "{json}");
            }
            let read = KinesisBatch::from_slice(json.as_bytes())
                .map(|b| seen(&b))
                .ok();
            assert_eq!(read, serde, "{json}");
        }
    }

    /// A record written like the one before it is read by its shape; one written differently is
    /// read field by field and becomes the shape.
    #[test]
    fn records_of_one_shape_are_read_by_it() {
        let first = r#"{"kinesis": {"partitionKey": "a", "data": "aGk=", "x": 1}, "eventID": "s-1:1", "awsRegion": "r"}"#;
        let same = r#"{"kinesis": {"partitionKey": "bb", "data": "aGVsbG8=", "x": [2]}, "eventID": "s-2:2", "awsRegion": "r"}"#;
        let region = r#"{"kinesis": {"partitionKey": "c", "data": "aGk=", "x": 3}, "eventID": "s-1:3", "awsRegion": "q"}"#;
        let mut b = Builder::default();
        let mut shape = Shape::default();
        let mut c = Cursor::new(first);
        assert!(shape.scan_like(&mut c, &mut b).is_none(), "no shape yet");
        c.rewind(0);
        shape.scan(&mut c, &mut b).unwrap();
        assert!(c.at_end());
        let mut c = Cursor::new(same);
        let record = shape.scan_like(&mut c, &mut b).expect("the same shape");
        assert!(c.at_end());
        b.batch.records.push(record);
        let view = b.batch.records().next().unwrap();
        assert_eq!(view.partition_key(), Some("bb"));
        assert_eq!(view.data(), Ok(&b"hello"[..]));
        assert_eq!(view.shard_id(), Some("s-2"));
        assert!(
            shape.scan_like(&mut Cursor::new(region), &mut b).is_none(),
            "an unchanging field changed"
        );
    }

    /// One value of the records the shape test writes (JSON text).
    fn value() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            r#""k""#,
            r#""k2""#,
            r#""""#,
            r#""aGk=""#,
            r#""aGVsbG8=""#,
            r#""!!""#,
            r#""shardId-1:5""#,
            r#""shardId-2""#,
            r#""é☕""#,
            r#""caf\u00e9""#,
            "7",
            "1.5e9",
            "null",
            r#"[1,"a"]"#,
            r#"{"a":null}"#,
            r#"{"data":"aGk=","partitionKey":"p","sequenceNumber":"9"}"#,
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Batches of records in a few layouts, with any values and spacing, where records repeat
        /// the layout of the one before or not: both readers agree, and the fast one takes every
        /// event without escapes.
        #[test]
        fn records_read_by_shape_agree_with_serde(
            records in prop::collection::vec(
                (
                    0..3usize,
                    prop::array::uniform8(value()),
                    // The fields that are the same on every record from the event source
                    // mapping: here from a small pool, so that records repeat them or not.
                    prop::array::uniform3(prop::sample::select(vec![r#""arn""#, "null"])),
                    any::<bool>(),
                ),
                0..10,
            )
        ) {
            let recs: Vec<String> = records
                .iter()
                .map(|(layout, v, same, spaced)| {
                    let text = match layout {
                        0 => format!(
                            r#"{{"kinesis":{{"kinesisSchemaVersion":{},"partitionKey":{},"sequenceNumber":{},"data":{},"approximateArrivalTimestamp":{}}},"eventSource":"aws:kinesis","eventID":{},"eventSourceARN":{},"awsRegion":{}}}"#,
                            same[0], v[1], v[2], v[3], v[4], v[5], same[1], same[2]
                        ),
                        1 => format!(
                            r#"{{"eventSourceARN":{},"kinesis":{{"data":{},"partitionKey":{},"data":{}}},"eventID":{},"kinesis":{}}}"#,
                            same[1], v[3], v[1], v[2], v[5], v[0]
                        ),
                        _ => format!(r#"{{"kinesis":{},"eventID":{}}}"#, v[0], v[5]),
                    };
                    if *spaced { text.replace(":", ": ").replace(",", " , ") } else { text }
                })
                .collect();
            let json = format!(r#"{{"Records":[{}]}}"#, recs.join(","));
            let serde = seen(&by_serde(json.as_bytes()).unwrap());
            match by_scan(json.as_bytes()) {
                Some(fast) => prop_assert_eq!(seen(&fast), serde),
                None => prop_assert!(json.contains('\\'), "plain event not taken: {}", json),
            }
        }
    }

    proptest! {
        /// Events built from arbitrary fields read the same through both readers, and the fast
        /// one takes every event without escapes.
        #[test]
        fn fast_and_serde_agree(
            records in prop::collection::vec(
                (
                    prop::option::of("[a-zé☕ \"\\\\]{0,8}"),
                    prop::option::of("[0-9]{1,30}"),
                    prop::option::of("[A-Za-z0-9+/=!]{0,24}"),
                    prop::option::of("shardId-[0-9]{3}(:[0-9]{1,5})?"),
                    any::<bool>(),
                ),
                0..8,
            )
        ) {
            let recs: Vec<serde_json::Value> = records
                .iter()
                .map(|(key, seq, data, id, extra)| {
                    let mut kinesis = serde_json::Map::new();
                    if let Some(k) = key { kinesis.insert("partitionKey".into(), k.clone().into()); }
                    if let Some(s) = seq { kinesis.insert("sequenceNumber".into(), s.clone().into()); }
                    if let Some(d) = data { kinesis.insert("data".into(), d.clone().into()); }
                    if *extra { kinesis.insert("approximateArrivalTimestamp".into(), 1.5e9.into()); }
                    let mut record = serde_json::Map::new();
                    record.insert("kinesis".into(), kinesis.into());
                    if let Some(i) = id { record.insert("eventID".into(), i.clone().into()); }
                    record.insert("eventSourceARN".into(), "arn:aws:kinesis:x".into());
                    record.into()
                })
                .collect();
            let json = serde_json::to_vec(&serde_json::json!({ "Records": recs })).unwrap();
            let serde = seen(&by_serde(&json).unwrap());
            match by_scan(&json) {
                Some(fast) => prop_assert_eq!(seen(&fast), serde),
                None => prop_assert!(json.contains(&b'\\'), "plain event not taken"),
            }
        }
    }
}
