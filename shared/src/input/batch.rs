//! The Lambda Kinesis event, read leniently in one pass: its one reader.
//!
//! Deserialising the whole event into strict types means one record with an odd field fails the
//! whole invocation, and Lambda then retries the batch until the shard's records expire. So this
//! reader never fails on a record: every field it wants is read as "a string, or nothing", every
//! other field is skipped (checked against the JSON grammar), and the record's `data` is
//! base64-decoded on the spot into one buffer shared by the whole batch. What is wrong with a
//! record is kept beside it, for the engine to capture it as poison. Only a body that is not a
//! JSON object, or whose `Records` is there and not an array, fails the invocation (an object
//! with no `Records` is an empty batch).
//!
//! The strings of a record (partition key, sequence number, shard) go into one text arena, and the
//! decoded data into one byte arena, so a batch of thousands of records makes a handful of
//! allocations, not several per record. [`KinesisBatch::read`] reads another event into the same
//! arenas, reusing them.
//!
//! The reader is hand-written (on [`super::json::Cursor`]) because this is the one big, hot input:
//! a full batch is 6 MB. The tests hold it to `serde_json` on generated events.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Deserializer};

use super::json::{has_control, Cursor};

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

/// The body of an invocation is not a Lambda Kinesis event (not JSON, or not an object whose
/// `Records`, if there, is an array).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Lambda Kinesis event: {what} (at byte {at})")]
pub struct InvalidEvent {
    what: &'static str,
    at: usize,
}

/// One Lambda Kinesis invocation payload, decoded in a single pass.
#[derive(Debug, Default)]
pub struct KinesisBatch {
    records: Vec<RawRecord>,
    text: String,
    /// The byte arena while it is filled, and after, when it is not all UTF-8.
    bytes: Vec<u8>,
    /// The byte arena, when it is all UTF-8 (checked at once, far faster than record by record):
    /// each record's data is then text at no further cost.
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

    /// The decoded data as text, when the batch's data is all UTF-8 (and the record's own is).
    pub fn data_str(&self) -> Option<&'a str> {
        match self.raw.data {
            Data::Decoded(span) => self.batch.utf8.get(span.range()),
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
    pub fn from_slice(json: &[u8]) -> Result<Self, InvalidEvent> {
        let mut batch = Self::default();
        batch.read(json)?;
        Ok(batch)
    }

    /// Reads the event JSON into this batch, in place of what it held, reusing its buffers. On an
    /// error the batch is empty.
    pub fn read(&mut self, json: &[u8]) -> Result<(), InvalidEvent> {
        self.records.clear();
        self.text.clear();
        if self.utf8.capacity() > self.bytes.capacity() {
            self.bytes = std::mem::take(&mut self.utf8).into_bytes();
        }
        self.utf8.clear();
        self.bytes.clear();
        self.event_source_arn = None;
        // The body is mostly base64: its UTF-8 is checked once, with SIMD.
        let text = match simdutf8::basic::from_utf8(json) {
            Ok(text) => text,
            // Checked again only to say where.
            Err(_) => {
                let at = std::str::from_utf8(json)
                    .err()
                    .map_or(0, |e| e.valid_up_to());
                return Err(InvalidEvent {
                    what: "the body is not UTF-8",
                    at,
                });
            }
        };
        let mut c = Cursor::new(text);
        let read = Reader {
            batch: self,
            last_shard: None,
        }
        .event(&mut c);
        if let Err(what) = read {
            self.records.clear();
            return Err(InvalidEvent {
                what,
                at: c.position(),
            });
        }
        match String::from_utf8(std::mem::take(&mut self.bytes)) {
            Ok(text) => self.utf8 = text,
            Err(not_text) => self.bytes = not_text.into_bytes(),
        }
        Ok(())
    }

    /// The byte arena, wherever it is.
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

impl<'de> Deserialize<'de> for KinesisBatch {
    /// How the runtime reads an invocation's body (`LambdaEvent<KinesisBatch>`): taken whole as
    /// raw JSON (one call of the deserializer, so `lambda_runtime`'s path-tracking deserializer
    /// does not wrap every field), then read by [`KinesisBatch::from_slice`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(deserializer)?;
        KinesisBatch::from_slice(raw.get().as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// The mutable state of one reading.
struct Reader<'b> {
    batch: &'b mut KinesisBatch,
    /// The shard of the record before: the next is most likely the same.
    last_shard: Option<Span>,
}

/// What a reading step answers: `Err` names what the event is not.
type Step = Result<(), &'static str>;

const NOT_JSON: &str = "not valid JSON";

impl Reader<'_> {
    /// `{"Records": [record, ...], ...}`: other fields are skipped; a second `Records` replaces
    /// the first, as in any JSON reader.
    fn event(&mut self, c: &mut Cursor<'_>) -> Step {
        if c.peek() != Some(b'{') {
            return Err("the body is not a JSON object");
        }
        let mut shape = Ok(());
        c.members(|c, key| {
            if key != "Records" {
                return c.skip_value();
            }
            if c.peek()? != b'[' {
                shape = Err("Records is not an array");
                return None;
            }
            self.batch.records.clear();
            self.batch.event_source_arn = None;
            c.elements(|c| {
                let record = self.record(c)?;
                self.batch.records.push(record);
                Some(())
            })
        })
        .ok_or(NOT_JSON)
        .or(shape.and(Err(NOT_JSON)))?;
        if c.at_end() {
            Ok(())
        } else {
            Err("trailing characters after the event")
        }
    }

    /// One record, field by field; a record that is not an object is kept as an empty one, for
    /// the engine to capture. Of repeated fields the last counts, as in any JSON reader.
    fn record(&mut self, c: &mut Cursor<'_>) -> Option<RawRecord> {
        if c.peek()? != b'{' {
            c.skip_value()?;
            return Some(RawRecord::default());
        }
        let mut record = RawRecord {
            is_object: true,
            ..RawRecord::default()
        };
        let mut arn = None;
        c.members(|c, key| match &*key {
            "kinesis" => {
                (record.partition_key, record.sequence_number, record.data) =
                    (None, None, Data::default());
                if c.peek()? != b'{' {
                    return c.skip_value();
                }
                c.members(|c, key| self.field(c, &mut record, &key, true))
            }
            "eventSourceARN" => {
                arn = None;
                if c.peek()? != b'"' {
                    return c.skip_value();
                }
                arn = Some(c.string()?);
                Some(())
            }
            _ => self.field(c, &mut record, &key, false),
        })?;
        // The batch's stream is the first record's (every record of a batch has the same).
        if let (None, Some(arn)) = (self.batch.event_source_arn, arn) {
            self.batch.event_source_arn = push_str(&mut self.batch.text, &arn);
        }
        Some(record)
    }

    /// One field of a record (`in_kinesis`: of its `kinesis` object), other than `kinesis` and
    /// `eventSourceARN`, which [`Reader::record`] reads.
    fn field(
        &mut self,
        c: &mut Cursor<'_>,
        record: &mut RawRecord,
        key: &str,
        in_kinesis: bool,
    ) -> Option<()> {
        match (in_kinesis, key) {
            (true, "partitionKey") => self.text_field(c).map(|v| record.partition_key = v),
            (true, "sequenceNumber") => self.text_field(c).map(|v| record.sequence_number = v),
            (true, "data") => self.data(c).map(|v| record.data = v),
            (false, "eventID") => {
                record.shard_id = None;
                if c.peek()? != b'"' {
                    return c.skip_value();
                }
                record.shard_id = self.shard(&c.string()?);
                Some(())
            }
            _ => c.skip_value(),
        }
    }

    /// A field kept when it is a string.
    fn text_field(&mut self, c: &mut Cursor<'_>) -> Option<Option<Span>> {
        if c.peek()? != b'"' {
            c.skip_value()?;
            return Some(None);
        }
        Some(push_str(&mut self.batch.text, &c.string()?))
    }

    /// `kinesis.data`: a base64 string decoded into the byte arena; a string that is not base64
    /// is kept as it came, in the text arena; any other value is no data.
    fn data(&mut self, c: &mut Cursor<'_>) -> Option<Data> {
        if c.peek()? != b'"' {
            c.skip_value()?;
            return Some(Data::default());
        }
        let v = c.long_string_unchecked()?;
        let bytes = &mut self.batch.bytes;
        // Grow by doubling: the decoder itself reserves exactly, which would copy the arena on
        // every record.
        bytes.reserve(v.len() / 4 * 3 + 3);
        let start = bytes.len();
        let decoded = base64_simd::STANDARD.decode_append(v.as_bytes(), bytes);
        match (decoded, u32::try_from(start), u32::try_from(bytes.len())) {
            (Ok(()), Ok(start), Ok(end)) => Some(Data::Decoded(Span { start, end })),
            _ => {
                bytes.truncate(start);
                if matches!(&v, Cow::Borrowed(raw) if has_control(raw)) {
                    return None; // a raw control character: not a JSON string at all
                }
                let raw = push_str(&mut self.batch.text, &v).unwrap_or_default();
                Some(Data::Faulty(raw, DataFault::NotBase64))
            }
        }
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
        let shard = match memchr::memchr(b':', event_id.as_bytes()) {
            Some(colon) => event_id.get(..colon)?,
            None => event_id,
        };
        self.last_shard = push_str(&mut self.batch.text, shard);
        self.last_shard
    }
}

fn push_str(text: &mut String, s: &str) -> Option<Span> {
    let start = u32::try_from(text.len()).ok()?;
    text.push_str(s);
    let end = u32::try_from(text.len()).ok()?;
    Some(Span { start, end })
}

/// Compares two Kinesis sequence numbers numerically. They are decimal strings of up to 128 digits,
/// too long for any integer type; a longer number (ignoring leading zeros) is the larger one.
pub fn compare_sequence_numbers(a: &str, b: &str) -> std::cmp::Ordering {
    sequence_order(a).cmp(&sequence_order(b))
}

/// What a sequence number sorts by, in stream order ([`compare_sequence_numbers`]): its digits
/// without leading zeros, counted, then themselves.
pub fn sequence_order(seq: &str) -> (usize, &str) {
    let digits = seq.trim_start_matches('0');
    (digits.len(), digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What a reading finds: the stream, then per record its partition key, sequence number,
    /// shard, data (or fault), whether it was an object, and its data as base64.
    type Seen = (
        Option<String>,
        Vec<(
            Option<String>,
            Option<String>,
            Option<String>,
            Result<Vec<u8>, DataFault>,
            bool,
            String,
        )>,
    );

    fn seen(batch: &KinesisBatch) -> Seen {
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

    /// The reference reading: `serde_json`'s own, into a `Value`, then the documented rules.
    fn reference(json: &[u8]) -> Option<Seen> {
        let Value::Object(event) = serde_json::from_slice::<Value>(json).ok()? else {
            return None;
        };
        let records = match event.get("Records") {
            None => Vec::new(),
            Some(Value::Array(records)) => records.clone(),
            Some(_) => return None,
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let mut arn = None;
        let records = records
            .iter()
            .map(|r| {
                let Value::Object(r) = r else {
                    let fault = Err(DataFault::Missing);
                    return (None, None, None, fault, false, String::new());
                };
                let kinesis = r.get("kinesis").and_then(Value::as_object);
                let field = |name: &str| kinesis.and_then(|k| k.get(name));
                let (data, b64) = match text(field("data")) {
                    None => (Err(DataFault::Missing), String::new()),
                    Some(b64) => match base64_simd::STANDARD.decode_to_vec(&b64) {
                        Ok(bytes) => (Ok(bytes), b64),
                        Err(_) => (Err(DataFault::NotBase64), b64),
                    },
                };
                let shard = text(r.get("eventID"))
                    .map(|id| id.split_once(':').map_or(id.clone(), |(s, _)| s.to_owned()));
                if arn.is_none() {
                    arn = text(r.get("eventSourceARN"));
                }
                let b64 = match &data {
                    // Written back by the encoder: padding and such come out canonical.
                    Ok(bytes) => base64_simd::STANDARD.encode_to_string(bytes),
                    Err(_) => b64,
                };
                (
                    text(field("partitionKey")),
                    text(field("sequenceNumber")),
                    shard,
                    data,
                    true,
                    b64,
                )
            })
            .collect();
        Some((arn, records))
    }

    fn ours(json: &[u8]) -> Option<Seen> {
        KinesisBatch::from_slice(json).ok().map(|b| seen(&b))
    }

    fn sample(name: &str) -> Vec<u8> {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_samples_read_as_serde_reads_them() {
        for name in [
            "mixed-batch.json",
            "poison-batch.json",
            "kpl-aggregated.json",
            "order-placed.json",
            "order-cancelled.json",
            "real-producers.json",
            "cancel-before-order.json",
        ] {
            let json = sample(name);
            assert!(ours(&json).is_some(), "{name}");
            assert_eq!(ours(&json), reference(&json), "{name}");
        }
    }

    #[test]
    fn odd_shapes_read_as_serde_reads_them() {
        for json in [
            r#"{"Records":[]}"#,
            r#"{}"#,
            r#"{"other":[1,{"a":null}],"Records":[{"kinesis":"x"},{"kinesis":{"data":7,"partitionKey":["k"]}}]}"#,
            r#"{"Records":[{"kinesis":{"data":"!!","partitionKey":"k","sequenceNumber":"1"},"eventID":5}]}"#,
            r#"{"Records":[{"kinesis":{"data":"aGk=","data":"aGVsbG8="},"eventSourceARN":"a"},{"eventSourceARN":"b","eventID":"s:1"}]}"#,
            r#"{"Records":[{"kinesis":{"partitionKey":"k","partitionKey":null}}],"Records":[{}]}"#,
            r#"{"Records":[{"kinesis":{"data":"aGk="},"kinesis":{"partitionKey":"p"}}]}"#,
            r#"{"Records":[7, "x", null, {"kinesis":{"data":"a\u0047k="}}]}"#,
            r#"{"Records":[{"kinesis":{"partitionKey":"caf\u00e9","data":"aGk="}}]}"#,
            r#"{"Records":[{"kinesis":{"partitionKey":"café ☕","data":"aGk="}}]}"#,
            r#"{"Records":[{"kinesis":{"data":"\/\/\/\/"},"eventID":"shardId-1:\u0031"}]}"#,
            "{\"Records\":[{\"kinesis\":{\"data\":\"a\u{1}Gk=\"}}]}",
            r#"{"Records":{}}"#,
            r#"[]"#,
            r#"{"Records":[]} trailing"#,
            r#"{"Records":[{"eventSourceARN":"a"}],"Records":[{"eventSourceARN":"b"}]}"#,
            "{\"Records\":[{\"kinesis\":{\"data\":\"\u{ff}\"}}]}",
        ] {
            assert_eq!(ours(json.as_bytes()), reference(json.as_bytes()), "{json}");
        }
        assert!(KinesisBatch::from_slice(b"{\"Records\":[\"\xff\"]}").is_err());
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = KinesisBatch::from_slice(br#"{"Records":{}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a Lambda Kinesis event: Records is not an array (at byte 11)"
        );
        let err = KinesisBatch::from_slice(br#"{"Records":[{"kinesis":}]}"#).unwrap_err();
        assert!(
            err.to_string().contains("not valid JSON (at byte 23)"),
            "{err}"
        );
    }

    /// A batch read into the buffers of the one before holds only the new records.
    #[test]
    fn a_batch_is_read_again_in_place() {
        let mut batch = KinesisBatch::from_slice(&sample("mixed-batch.json")).unwrap();
        batch.read(&sample("order-placed.json")).unwrap();
        assert_eq!(Some(seen(&batch)), reference(&sample("order-placed.json")));
        assert!(batch.read(b"not json").is_err());
        assert!(batch.is_empty());
    }

    /// One value of the records the property writes (JSON text).
    fn value() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            r#""k""#,
            r#""k2""#,
            r#""""#,
            r#""aGk=""#,
            r#""aGVsbG8=""#,
            r#""aGVs\/G8=""#,
            r#""!!""#,
            r#""shardId-1:5""#,
            r#""shardId-2""#,
            r#""shard\u0049d-2:7""#,
            r#""é☕""#,
            r#""caf\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""tab\tx""#,
            "7",
            "1.5e9",
            "null",
            "true",
            r#"[1,"a"]"#,
            r#"{"a":null}"#,
            r#"{"data":"aGk=","partitionKey":"p","sequenceNumber":"9"}"#,
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Events of records in a few layouts, with any values (escaped or not, of any type),
        /// repeated fields and any spacing: the reader finds what serde_json's reading finds,
        /// whether it reads a record by the shape of the one before (records of the first layout,
        /// unspaced, one after another) or field by field.
        #[test]
        fn the_reader_agrees_with_serde(
            records in prop::collection::vec(
                (0..3usize, prop::array::uniform8(value()), any::<bool>()),
                0..10,
            ),
            other in prop::sample::select(vec!["", r#""other":{"Records":7},"#]),
        ) {
            let recs: Vec<String> = records
                .iter()
                .map(|(layout, v, spaced)| {
                    let text = match layout {
                        0 => format!(
                            r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":{},"sequenceNumber":{},"data":{},"approximateArrivalTimestamp":{}}},"eventSource":"aws:kinesis","eventID":{},"eventSourceARN":"arn","awsRegion":"r"}}"#,
                            v[1], v[2], v[3], v[4], v[5]
                        ),
                        1 => format!(
                            r#"{{"eventSourceARN":{},"kinesis":{{"data":{},"partitionKey":{},"data":{}}},"eventID":{},"kinesis":{}}}"#,
                            v[6], v[3], v[1], v[2], v[5], v[0]
                        ),
                        _ => format!(r#"{{"kinesis":{},"eventID":{}}}"#, v[0], v[5]),
                    };
                    if *spaced { text.replace(":", ": ").replace(",", " , ") } else { text }
                })
                .collect();
            let json = format!(r#"{{{other}"Records":[{}]}}"#, recs.join(","));
            let reference = reference(json.as_bytes());
            prop_assert!(reference.is_some(), "{}", json);
            prop_assert_eq!(ours(json.as_bytes()), reference, "{}", json);
        }
    }
}
