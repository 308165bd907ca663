//! KPL aggregation by shard: user records packed into aggregates, each aggregate holding only
//! records whose own partition key hashes to one shard, and sent to that shard with an
//! `ExplicitHashKey`.
//!
//! Kinesis routes a record by the MD5 of its partition key (or by its explicit hash key). An
//! aggregate is one Kinesis record, so it is routed once, by its own key: if it held user records
//! of keys that hash to other shards, those records would land in the wrong shard, where a
//! consumer reading the other shard misses them and their per-key order is lost (the trap the
//! kinesis-aggregation project warns of). Grouping by shard first, from `ListShards`' hash
//! ranges, keeps every user record in the shard its key owns.
//!
//! The format is `shared::kpl`'s (the KPL's `messages.proto`), which the consumers read.

use prost::encoding::encoded_len_varint;
use prost::Message;
use shared::kpl::{aggregate_raw, AggregatedRecord, Record};

use crate::ports::{hash_key, Entry, Shard};

/// The stream's open shards, by hash key range.
#[derive(Debug, Clone)]
pub struct ShardMap {
    shards: Vec<Shard>,
}

impl ShardMap {
    /// The map of `shards` (the stream's open shards, which cover the whole hash key space).
    pub fn new(mut shards: Vec<Shard>) -> Self {
        shards.sort_by_key(|s| s.starting_hash_key);
        Self { shards }
    }

    /// The index of the shard `partition_key` hashes to.
    pub fn shard_for(&self, partition_key: &str) -> usize {
        let key = hash_key(partition_key);
        // The first shard whose range ends at or after the key; the last one if the ranges have
        // a gap (they do not, for open shards).
        self.shards
            .partition_point(|s| s.ending_hash_key < key)
            .min(self.shards.len().saturating_sub(1))
    }

    /// The shards.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
}

/// One Kinesis record the aggregator made: an aggregate, or a lone record sent as it is.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The record to send.
    pub entry: Entry,
    /// The shard it is for.
    pub shard: usize,
    /// The user records it carries (their indexes in the input), in order: its sub-sequence
    /// numbers are their positions here.
    pub members: Vec<usize>,
}

/// Packs user records into aggregates of at most `max_bytes` (data and partition key, as Kinesis
/// counts a record), grouped by the shard each one's partition key hashes to. Records keep their
/// input order within each shard. A shard with a single record left gets it as a plain record.
///
/// A user record too large to fit in an aggregate on its own is not packed: the caller refuses it.
pub fn pack(records: &[(usize, &Entry)], shards: &ShardMap, max_bytes: usize) -> Vec<Packed> {
    let mut open: Vec<Option<Builder>> = vec![None; shards.shards().len()];
    let mut out = Vec::new();
    for &(index, entry) in records {
        let shard = shards.shard_for(&entry.partition_key);
        let fits = open[shard]
            .as_ref()
            .is_some_and(|b| b.size_with(entry) <= max_bytes);
        if !fits {
            if let Some(full) = open[shard].take() {
                out.push(full.finish(shard, shards));
            }
            open[shard] = Some(Builder::default());
        }
        if let Some(b) = open[shard].as_mut() {
            b.push(index, entry);
        }
    }
    for (shard, b) in open.into_iter().enumerate() {
        if let Some(b) = b {
            out.push(b.finish(shard, shards));
        }
    }
    out
}

/// An aggregate being filled, with its encoded size kept as it grows.
#[derive(Debug, Clone, Default)]
struct Builder {
    aggregate: AggregatedRecord,
    members: Vec<usize>,
    /// The protobuf's encoded length so far.
    body: usize,
}

impl Builder {
    fn key_index(&self, key: &str) -> Option<usize> {
        self.aggregate
            .partition_key_table
            .iter()
            .position(|k| k == key)
    }

    /// The record's encoded length inside the aggregate, and the key table's growth.
    fn growth(&self, entry: &Entry) -> usize {
        let (index, table) = match self.key_index(&entry.partition_key) {
            Some(i) => (i, 0),
            None => {
                let n = entry.partition_key.len();
                (
                    self.aggregate.partition_key_table.len(),
                    1 + encoded_len_varint(n as u64) + n,
                )
            }
        };
        let data = entry.data.len();
        let inner =
            1 + encoded_len_varint(index as u64) + 1 + encoded_len_varint(data as u64) + data;
        table + 1 + encoded_len_varint(inner as u64) + inner
    }

    /// The size Kinesis would count for the aggregate with `entry` added.
    fn size_with(&self, entry: &Entry) -> usize {
        let key = self
            .aggregate
            .partition_key_table
            .first()
            .map_or(entry.partition_key.len(), String::len);
        shared::kpl::MAGIC.len() + self.body + self.growth(entry) + 16 + key
    }

    fn push(&mut self, index: usize, entry: &Entry) {
        self.body += self.growth(entry);
        let key = match self.key_index(&entry.partition_key) {
            Some(i) => i,
            None => {
                self.aggregate
                    .partition_key_table
                    .push(entry.partition_key.clone());
                self.aggregate.partition_key_table.len() - 1
            }
        };
        self.aggregate.records.push(Record {
            partition_key_index: key as u64,
            explicit_hash_key_index: None,
            data: entry.data.clone(),
            tags: Vec::new(),
        });
        self.members.push(index);
    }

    fn finish(self, shard: usize, shards: &ShardMap) -> Packed {
        let first = self
            .aggregate
            .partition_key_table
            .first()
            .cloned()
            .unwrap_or_default();
        let entry = if self.members.len() == 1 {
            // One record: no aggregate needed, and its own key routes it to this shard.
            Entry {
                partition_key: first,
                explicit_hash_key: None,
                data: self
                    .aggregate
                    .records
                    .into_iter()
                    .next()
                    .map(|r| r.data)
                    .unwrap_or_default(),
            }
        } else {
            Entry {
                partition_key: first,
                explicit_hash_key: shards
                    .shards()
                    .get(shard)
                    .map(|s| s.starting_hash_key.to_string()),
                data: aggregate_raw(&self.aggregate.encode_to_vec()),
            }
        };
        Packed {
            entry,
            shard,
            members: self.members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::fakes::FakeStream;

    fn entry(key: &str, data: &str) -> Entry {
        Entry {
            partition_key: key.into(),
            explicit_hash_key: None,
            data: data.as_bytes().to_vec(),
        }
    }

    /// Kinesis's hash: MD5 of the key, big-endian (the value AWS documents for "a").
    #[test]
    fn hash_key_is_md5_big_endian() {
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661_u128);
    }

    /// Every user record lands, in an aggregate routed to the shard its own key hashes to, in
    /// input order; the sizes are exact.
    #[test]
    fn packs_by_shard() {
        let stream = FakeStream::new(4);
        let map = ShardMap::new(stream.shards.clone());
        let input: Vec<Entry> = (0..200)
            .map(|i| entry(&format!("key-{}", i % 37), &format!("record {i}")))
            .collect();
        let indexed: Vec<(usize, &Entry)> = input.iter().enumerate().collect();
        let packed = pack(&indexed, &map, 1024);
        let mut seen = Vec::new();
        for p in &packed {
            assert!(p.entry.size() <= 1024, "{} bytes", p.entry.size());
            let shard = &map.shards()[p.shard];
            let routed = p
                .entry
                .explicit_hash_key
                .as_ref()
                .map(|k| k.parse::<u128>().unwrap())
                .unwrap_or_else(|| hash_key(&p.entry.partition_key));
            assert!((shard.starting_hash_key..=shard.ending_hash_key).contains(&routed));
            let users = shared::kpl::deaggregate(&p.entry.data).unwrap_or_else(|| {
                vec![shared::kpl::UserRecord {
                    partition_key: p.entry.partition_key.clone(),
                    sub_sequence_number: 0,
                    data: p.entry.data.clone(),
                }]
            });
            assert_eq!(users.len(), p.members.len());
            for (u, &m) in users.iter().zip(&p.members) {
                assert_eq!(map.shard_for(&u.partition_key), p.shard);
                assert_eq!(u.partition_key, input[m].partition_key);
                assert_eq!(u.data, input[m].data);
                seen.push(m);
            }
            // The size estimate is the real size.
            if p.members.len() > 1 {
                let b = p.members.iter().fold(Builder::default(), |mut b, &m| {
                    b.push(m, &input[m]);
                    b
                });
                assert_eq!(
                    4 + b.body + 16,
                    p.entry.data.len(),
                    "the running size is exact"
                );
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        assert!(packed.len() > 4, "1 KiB aggregates: several per shard");
    }
}
