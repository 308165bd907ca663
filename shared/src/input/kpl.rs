//! KPL aggregation: one Kinesis record that carries many user records.
//!
//! The Kinesis Producer Library (and compatible aggregators) write records laid out as the 4 magic
//! bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the 16-byte MD5 of the protobuf bytes.
//! Like the KPL's own consumers, we treat data without the magic prefix, with a digest that does
//! not match, or whose protobuf does not parse, as a plain record. So does an aggregate that names a
//! partition key its table does not hold: the whole record is then plain data, which is not an
//! order event and is captured, payload and all, as poison.

use md5::{Digest, Md5};
use prost::Message;

/// The 4 bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

const DIGEST_LEN: usize = 16;

/// The aggregate, as the KPL's `messages.proto` defines it (proto2).
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    /// The partition keys the records refer to by index.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// The explicit hash keys the records refer to by index.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// One user record of an aggregate.
#[derive(Clone, PartialEq, Message)]
pub struct Record {
    /// Index into the partition key table.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index into the explicit hash key table.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The user record's data.
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    /// Tags (unused by Kinesis).
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// A tag of a user record.
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    /// The key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// One user record taken out of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Its own partition key.
    pub partition_key: String,
    /// Its position in the aggregate: with the parent's sequence number, its identity.
    pub sub_sequence_number: u64,
    /// Its data.
    pub data: Vec<u8>,
}

/// Whether `data` starts like an aggregate (a cheap test, before any work).
pub fn looks_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + DIGEST_LEN && data[..MAGIC.len()] == MAGIC
}

/// The user records of an aggregate, or `None` when `data` is a plain record (see the module docs).
pub fn deaggregate(data: &[u8]) -> Option<Vec<UserRecord>> {
    if !looks_aggregated(data) {
        return None;
    }
    let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
    if Md5::digest(body).as_slice() != digest {
        return None;
    }
    let aggregate = AggregatedRecord::decode(body).ok()?;
    let keys = &aggregate.partition_key_table;
    aggregate
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = usize::try_from(r.partition_key_index)
                .ok()
                .and_then(|k| keys.get(k))?;
            Some(UserRecord {
                partition_key: key.clone(),
                sub_sequence_number: i as u64,
                data: r.data,
            })
        })
        .collect()
}

/// Frames protobuf bytes as an aggregate: the magic prefix, the bytes, their MD5. For tests and
/// fuzzing, which need a valid digest around arbitrary bytes.
pub fn aggregate_raw(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out
}

/// Aggregates user records `(partition key, data)` the way the KPL does: for producers and tests.
pub fn aggregate<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut aggregate = AggregatedRecord::default();
    for (key, data) in records {
        let index = match aggregate.partition_key_table.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                aggregate.partition_key_table.push(key.to_owned());
                aggregate.partition_key_table.len() - 1
            }
        };
        aggregate.records.push(Record {
            partition_key_index: index as u64,
            explicit_hash_key_index: None,
            data: data.to_vec(),
            tags: Vec::new(),
        });
    }
    aggregate_raw(&aggregate.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our encoder's output deaggregates to the same records, keys and order.
    #[test]
    fn round_trip() {
        let agg = aggregate([("a", &b"one"[..]), ("b", b"two"), ("a", b"three")]);
        let users = deaggregate(&agg).unwrap();
        let got: Vec<_> = users
            .iter()
            .map(|u| {
                (
                    u.partition_key.as_str(),
                    u.data.as_slice(),
                    u.sub_sequence_number,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("a", &b"one"[..], 0), ("b", b"two", 1), ("a", b"three", 2)]
        );
    }

    /// Plain data, a bad digest, a protobuf that does not parse and a key index out of range all
    /// make a plain record.
    #[test]
    fn plain_when_not_a_valid_aggregate() {
        assert_eq!(deaggregate(b"{\"eventType\":\"ORDER_PLACED\"}"), None);
        let mut agg = aggregate([("a", &b"one"[..])]);
        let last = agg.len() - 1;
        agg[last] ^= 0xff;
        assert_eq!(deaggregate(&agg), None, "bad digest");

        assert_eq!(
            deaggregate(&aggregate_raw(&[0xff; 8])),
            None,
            "protobuf does not parse"
        );

        let body = AggregatedRecord {
            partition_key_table: vec!["a".into()],
            explicit_hash_key_table: vec![],
            records: vec![Record {
                partition_key_index: 7,
                explicit_hash_key_index: None,
                data: vec![1],
                tags: vec![],
            }],
        }
        .encode_to_vec();
        assert_eq!(
            deaggregate(&aggregate_raw(&body)),
            None,
            "key index out of range"
        );
    }
}
