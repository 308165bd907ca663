//! Property tests: the engine's rules and the KPL format, on generated batches.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use proptest::prelude::*;
use shared::fakes::FakePoisonSink;
use shared::input::batch::compare_sequence_numbers;
use shared::kpl;
use shared::{
    BatchEngine, Consumer, EffectError, EngineConfig, Event, EventTypeSet, KinesisBatch, Outcome,
};
use support::*;

/// Records every call as (partition key, order id); fails the orders it is told to.
struct Rule {
    calls: Mutex<Vec<(String, String)>>,
    fail: HashSet<String>,
}

impl Consumer for Rule {
    type Payload<'a> = TestEvent;

    async fn handle(&self, event: &Event<'_, Self>) -> Result<Outcome, EffectError> {
        let order = event.payload.order_id().to_owned();
        // Yield, so keys interleave as they would on real I/O.
        tokio::time::sleep(Duration::from_micros(order.len() as u64 % 3)).await;
        self.calls
            .lock()
            .unwrap()
            .push((event.record.partition_key.to_owned(), order.clone()));
        if self.fail.contains(&order) {
            Err(EffectError::retryable("planned"))
        } else {
            Ok(Outcome::Applied)
        }
    }
}

/// One generated user record: its key, whether it fails, whether it is poison.
#[derive(Debug, Clone)]
struct Gen {
    key: u8,
    fails: bool,
    poison: bool,
}

/// A generated record: one user record, or a KPL aggregate of several.
fn records() -> impl Strategy<Value = Vec<Vec<Gen>>> {
    let gen = (
        0u8..5,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(key, fails, poison)| Gen { key, fails, poison });
    prop::collection::vec(prop::collection::vec(gen, 1..4), 0..40)
}

/// The order id of user record `sub` of record `i`: sortable in stream order.
fn order_id(i: usize, sub: usize) -> String {
    format!("o{i:03}-{sub}")
}

fn batch_of(recs: &[Vec<Gen>]) -> (Vec<u8>, HashSet<String>) {
    let mut fail = HashSet::new();
    let mut out = Vec::new();
    for (i, users) in recs.iter().enumerate() {
        let payloads: Vec<(String, Vec<u8>)> = users
            .iter()
            .enumerate()
            .map(|(sub, g)| {
                let id = order_id(i, sub);
                if g.fails {
                    fail.insert(id.clone());
                }
                let data = if g.poison {
                    b"not json".to_vec()
                } else {
                    order_event("ORDER_PLACED", &id).to_string().into_bytes()
                };
                (format!("k{}", g.key), data)
            })
            .collect();
        let (key, data) = if users.len() == 1 {
            payloads[0].clone()
        } else {
            let agg = kpl::aggregate(payloads.iter().map(|(k, d)| (k.as_str(), d.as_slice())));
            ("parent".to_owned(), agg)
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        out.push(raw_record(&key, i as u64, &b64));
    }
    (event(out), fail)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The rules, on any batch: order per key, stop at the first failure, report the lowest
    /// sequence number of each failing key, and lose nothing.
    #[test]
    fn engine_rules(recs in records(), concurrency in 1usize..8) {
        let (body, fail) = batch_of(&recs);
        let batch = KinesisBatch::from_slice(&body).unwrap();
        let rule = Rule { calls: Mutex::new(Vec::new()), fail };
        let config = EngineConfig {
            function: "p".into(),
            scope: "test".into(),
            event_types: EventTypeSet::new(["ORDER_PLACED"]),
            max_concurrency: concurrency,
            deadline_margin: Duration::ZERO,
            completed_cache: 0,
        };
        let engine = BatchEngine::new(rule, FakePoisonSink::default(), config);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let out = rt.block_on(engine.process(&batch, None));
        let calls = engine.consumer().calls.lock().unwrap().clone();
        let reported: Vec<String> = out.failed_sequence_numbers().into_iter().map(str::to_owned).collect();

        // Order per key, and nothing after a key's first failure.
        let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, order) in &calls {
            per_key.entry(key.clone()).or_default().push(order.clone());
        }
        for orders in per_key.values() {
            let mut sorted = orders.clone();
            sorted.sort();
            prop_assert_eq!(orders, &sorted);
            if let Some(pos) = orders.iter().position(|o| engine.consumer().fail.contains(o)) {
                prop_assert_eq!(pos, orders.len() - 1, "a key ran past its failure");
            }
        }

        // Reported: exactly the records holding a key's first failure.
        let mut expected = Vec::new();
        let mut failed_keys = HashSet::new();
        for (i, users) in recs.iter().enumerate() {
            for g in users {
                if g.fails && !g.poison && failed_keys.insert(g.key) {
                    expected.push(seq(i as u64));
                }
            }
        }
        expected.sort_by(|a, b| compare_sequence_numbers(a, b));
        expected.dedup();
        prop_assert_eq!(&reported, &expected);

        // Nothing lost: every user record was handled, or is redelivered (its record is at or
        // after the lowest reported one).
        let lowest = reported.first().cloned();
        let called: HashSet<&String> = calls.iter().map(|(_, o)| o).collect();
        let captured = engine.poison_sink().captured();
        for (i, users) in recs.iter().enumerate() {
            for (sub, g) in users.iter().enumerate() {
                let id = order_id(i, sub);
                let handled_ok = if g.poison {
                    captured.iter().any(|p| p.sequence_number.as_deref() == Some(seq(i as u64).as_str()))
                } else {
                    called.contains(&id) && !g.fails
                };
                let redelivered = lowest.as_ref().is_some_and(|l| {
                    compare_sequence_numbers(&seq(i as u64), l) != std::cmp::Ordering::Less
                });
                prop_assert!(handled_ok || redelivered, "{} was lost", id);
            }
        }
    }

    /// Any user records survive our KPL encoder and decoder unchanged, in order.
    #[test]
    fn kpl_round_trip(users in prop::collection::vec(("[a-z0-9]{1,8}", prop::collection::vec(any::<u8>(), 0..64)), 0..20)) {
        let agg = kpl::aggregate(users.iter().map(|(k, d)| (k.as_str(), d.as_slice())));
        let back = kpl::deaggregate(&agg).unwrap();
        prop_assert_eq!(back.len(), users.len());
        for (i, (u, (k, d))) in back.iter().zip(&users).enumerate() {
            prop_assert_eq!(&u.partition_key, k);
            prop_assert_eq!(&u.data, d);
            prop_assert_eq!(u.sub_sequence_number, i as u64);
        }
    }

    /// Deaggregation never panics, whatever follows the magic bytes.
    #[test]
    fn kpl_never_panics(tail in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut data = kpl::MAGIC.to_vec();
        data.extend_from_slice(&tail);
        let _ = kpl::deaggregate(&data);
    }
}
