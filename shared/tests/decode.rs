//! Decoding: the Lambda event, each record's data, and the envelope with its payload.

mod support;

use serde_json::json;
use shared::input::batch::{compare_sequence_numbers, DataFault, KinesisBatch};
use shared::input::envelope::{Envelope, Malformed, Read, RecordData};
use support::*;

/// The envelope of data whose every type is wanted, with its payload.
fn envelope(data: &[u8]) -> Result<Envelope<'_, TestEvent>, Malformed> {
    match Envelope::read(RecordData::Bytes(data), |_| true)? {
        Read::Wanted(envelope) => Ok(envelope),
        Read::Unwanted(t) => panic!("{t} is wanted"),
    }
}

/// The payload in an envelope's data.
fn order(data: &[u8]) -> Result<TestEvent, Malformed> {
    envelope(data).map(|e| e.payload)
}

/// A good record decodes: metadata, data, envelope and payload.
#[test]
fn good_record_decodes() {
    let batch = KinesisBatch::from_slice(&sample("order-placed.json")).unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(
        batch.event_source_arn(),
        Some("arn:aws:kinesis:us-east-1:123456789012:stream/order-events")
    );
    let r = batch.record(0).unwrap();
    assert_eq!(r.partition_key(), Some("order-1001"));
    assert_eq!(
        r.sequence_number(),
        Some("49590338271490256608559692538361571095921575989136588801")
    );
    assert_eq!(r.shard_id(), Some("shardId-000000000000"));
    let env = envelope(r.data().unwrap()).unwrap();
    assert_eq!(env.event_id.as_deref(), Some("evt-0001"));
    assert_eq!(env.event_type, "ORDER_PLACED");
    let order = order(r.data().unwrap()).unwrap();
    assert_eq!(order.order_id(), "order-1001");
}

/// The sample files are exactly what the event source mapping sends: the strict upstream type
/// reads every one, and our reader finds the same records.
#[test]
fn samples_are_esm_shaped() {
    for name in [
        "order-placed.json",
        "order-cancelled.json",
        "mixed-batch.json",
        "poison-batch.json",
    ] {
        let bytes = sample(name);
        let strict: Result<aws_lambda_events::event::kinesis::KinesisEvent, _> =
            serde_json::from_slice(&bytes);
        let ours = KinesisBatch::from_slice(&bytes).unwrap();
        match strict {
            Ok(strict) => {
                assert_eq!(strict.records.len(), ours.len(), "{name}");
                for (s, o) in strict.records.iter().zip(ours.records()) {
                    assert_eq!(
                        s.kinesis.sequence_number,
                        o.sequence_number().unwrap(),
                        "{name}"
                    );
                    if let Ok(data) = o.data() {
                        assert_eq!(&s.kinesis.data.0[..], data, "{name}");
                    }
                }
            }
            // The poison batch holds a record with a numeric partition key on purpose: the strict
            // type rejects the whole event for that one record, which is why we do not use it.
            Err(e) => assert_eq!(name, "poison-batch.json", "{name}: {e}"),
        }
    }
}

/// Unknown fields are ignored at every level: the event, the record, `kinesis`, the envelope and
/// the payload.
#[test]
fn unknown_fields_are_tolerated() {
    let mut ev = order_event("ORDER_PLACED", "o-1");
    ev["extra"] = json!({"nested": [1, 2, {"x": null}]});
    ev["payload"]["coupon"] = json!("SAVE10");
    ev["payload"]["items"][0]["colour"] = json!("red");
    let mut rec = record("k", 1, &ev);
    rec["kinesis"]["somethingNew"] = json!([true]);
    rec["futureField"] = json!(1.5);
    let body = json!({"Records": [rec], "invocationExtras": {"a": 1}}).to_string();
    let batch = KinesisBatch::from_slice(body.as_bytes()).unwrap();
    let order = order(batch.record(0).unwrap().data().unwrap()).unwrap();
    assert_eq!(order.order_id(), "o-1");
}

/// Each kind of bad data gives its own reason, and never an error for the whole batch.
#[test]
fn every_kind_of_bad_record() {
    let mut no_data = raw_record("k", 2, "");
    no_data["kinesis"].as_object_mut().unwrap().remove("data");
    let mut numeric_data = raw_record("k", 3, "");
    numeric_data["kinesis"]["data"] = json!(42);
    let mut numeric_key = record("k", 4, &order_event("ORDER_PLACED", "o-4"));
    numeric_key["kinesis"]["partitionKey"] = json!(4);
    let mut no_seq = record("k", 5, &order_event("ORDER_PLACED", "o-5"));
    no_seq["kinesis"]["sequenceNumber"] = json!(null);
    let body = event(vec![
        raw_record("k", 1, "%%% not base64 %%%"),
        no_data,
        numeric_data,
        numeric_key,
        no_seq,
        json!("a record that is a string"),
        json!(null),
        json!({"kinesis": "not an object"}),
    ]);
    let batch = KinesisBatch::from_slice(&body).unwrap();
    assert_eq!(batch.len(), 8);
    let r: Vec<_> = batch.records().collect();
    assert_eq!(r[0].data(), Err(DataFault::NotBase64));
    assert_eq!(
        r[0].data_base64(),
        "%%% not base64 %%%",
        "the raw data is kept"
    );
    assert_eq!(r[1].data(), Err(DataFault::Missing));
    assert_eq!(r[2].data(), Err(DataFault::Missing));
    assert_eq!(r[3].partition_key(), None);
    assert!(r[3].data().is_ok());
    assert_eq!(r[4].sequence_number(), None);
    assert!(!r[5].is_object());
    assert!(!r[6].is_object());
    assert!(r[7].is_object());
    assert_eq!(r[7].partition_key(), None);
}

/// Data that decodes but is not the envelope, or whose payload breaks the schema, is malformed.
#[test]
fn bad_envelopes_and_payloads() {
    assert!(matches!(
        envelope(b"\xff\xfe not json"),
        Err(Malformed::Envelope(_))
    ));
    assert!(matches!(envelope(b"[1,2]"), Err(Malformed::Envelope(_))));
    assert!(matches!(
        envelope(br#"{"hello":"world"}"#),
        Err(Malformed::Envelope(_))
    ));
    assert!(matches!(
        envelope(br#"{"eventType":7}"#),
        Err(Malformed::Envelope(_))
    ));

    // A payload that breaks its type's schema names the type and the field.
    let mut ev = order_event("ORDER_PLACED", "o-1");
    ev["payload"].as_object_mut().unwrap().remove("orderId");
    match order(ev.to_string().as_bytes()) {
        Err(Malformed::Payload { event_type, why }) => {
            assert_eq!(event_type, "ORDER_PLACED");
            assert!(why.contains("missing field `orderId`"), "{why}");
        }
        other => panic!("expected a payload error, got {other:?}"),
    }
    let mut ev = order_event("ORDER_PLACED", "o-1");
    ev.as_object_mut().unwrap().remove("payload");
    assert!(
        matches!(order(ev.to_string().as_bytes()), Err(Malformed::Payload { why, .. }) if why.contains("payload"))
    );
}

/// A JSON-escaped base64 string (`\/`) decodes the same as the plain one.
#[test]
fn escaped_base64_decodes() {
    // 0xff 0xff 0xff is "////" in base64.
    let body =
        br#"{"Records":[{"kinesis":{"partitionKey":"k","sequenceNumber":"1","data":"\/\/\/\/"}}]}"#;
    let batch = KinesisBatch::from_slice(body).unwrap();
    assert_eq!(batch.record(0).unwrap().data(), Ok(&[0xff, 0xff, 0xff][..]));
}

/// An event with no Records is an empty batch; an event that is not an object is an error.
#[test]
fn batch_level_shapes() {
    assert!(KinesisBatch::from_slice(b"{}").unwrap().is_empty());
    assert!(KinesisBatch::from_slice(br#"{"Records":[]}"#)
        .unwrap()
        .is_empty());
    assert!(KinesisBatch::from_slice(b"[]").is_err());
    assert!(KinesisBatch::from_slice(br#"{"Records":"#).is_err());
}

/// Sequence numbers compare as numbers, not as text.
#[test]
fn sequence_numbers_compare_numerically() {
    use std::cmp::Ordering::*;
    assert_eq!(compare_sequence_numbers("9", "10"), Less);
    assert_eq!(compare_sequence_numbers(&seq(2), &seq(10)), Less);
    assert_eq!(compare_sequence_numbers("007", "7"), Equal);
}

/// What a test compares of a record: key, sequence number, decoded data.
type Seen = (Option<String>, Option<String>, Option<Vec<u8>>);

fn seen(batch: &KinesisBatch) -> Vec<Seen> {
    batch
        .records()
        .map(|r| {
            (
                r.partition_key().map(str::to_owned),
                r.sequence_number().map(str::to_owned),
                r.data().ok().map(<[u8]>::to_vec),
            )
        })
        .collect()
}

/// What the sample's JSON says, read without `KinesisBatch` (so without its reused buffers): each
/// record's string key and sequence number, and its data when that is a base64 string.
fn reference(name: &str) -> Vec<Seen> {
    use base64::Engine as _;
    let event: serde_json::Value = serde_json::from_slice(&sample(name)).unwrap();
    event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let k = &r["kinesis"];
            (
                k["partitionKey"].as_str().map(str::to_owned),
                k["sequenceNumber"].as_str().map(str::to_owned),
                k["data"]
                    .as_str()
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok()),
            )
        })
        .collect()
}

/// A batch reuses the buffers of the one dropped before it, and nothing of the old batch shows
/// through: each batch reads exactly what its JSON holds, whichever batch came before it.
#[test]
fn reused_buffers_hold_only_the_new_batch() {
    let names = [
        "mixed-batch.json",
        "order-placed.json",
        "poison-batch.json",
        "order-cancelled.json",
    ];
    let fresh: Vec<Vec<Seen>> = names.iter().map(|n| reference(n)).collect();
    // In order and then backwards, each decoded after the previous one was dropped.
    for (n, want) in names
        .iter()
        .zip(&fresh)
        .chain(names.iter().zip(&fresh).rev())
    {
        let batch = KinesisBatch::from_slice(&sample(n)).unwrap();
        assert_eq!(&seen(&batch), want, "{n}");
        assert!(seen(&batch).iter().all(|(k, ..)| k.is_some()) || n.contains("poison"));
    }
}

/// The batch reads the same through `lambda_runtime`'s deserializer (`serde_path_to_error` over
/// `serde_json` on the body bytes) as through `from_slice`, for every sample, good or bad.
#[test]
fn the_runtime_deserializer_reads_the_same() {
    for name in [
        "mixed-batch.json",
        "poison-batch.json",
        "kpl-aggregated.json",
        "order-placed.json",
    ] {
        let bytes = sample(name);
        let via_runtime: KinesisBatch =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&bytes))
                .unwrap();
        let direct = KinesisBatch::from_slice(&bytes).unwrap();
        assert_eq!(seen(&via_runtime), seen(&direct), "{name}");
        assert_eq!(via_runtime.event_source_arn(), direct.event_source_arn());
        assert!(!seen(&direct).is_empty(), "{name}");
    }
    // Not an event: a clear error, not a panic.
    let err = serde_path_to_error::deserialize::<_, KinesisBatch>(
        &mut serde_json::Deserializer::from_slice(b"[1, 2]"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Kinesis event"), "{err}");
}
