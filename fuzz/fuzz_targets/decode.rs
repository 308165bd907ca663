//! Any bytes as a Lambda Kinesis event: the one reader, held to serde_json (it accepts an event
//! exactly when serde_json reads the same bytes as an object whose `Records` is absent or an
//! array), then every record's data through KPL deaggregation, the envelope and the whole order's
//! schema.
//! Nothing may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use orders::PlacedOrder;
use serde::Deserialize;
use shared::input::envelope::{Envelope, Read, RecordData};
use shared::{kpl, KinesisBatch};

/// A whole order, of any type.
#[derive(Debug, Deserialize)]
enum Order<'a> {
    #[serde(rename = "ORDER_PLACED", alias = "ORDER_CREATED", alias = "ORDER_CANCELLED", borrow)]
    Any(PlacedOrder<'a>),
}

fn payload(data: &[u8]) {
    let text = std::str::from_utf8(data).ok();
    // Every type wanted, none wanted, and some; as bytes and, when it is, as text.
    for wanted in [|_: &str| true, |_: &str| false, |t: &str| t.len() % 2 == 0] {
        let bytes = Envelope::<Order<'_>>::read(RecordData::Bytes(data), wanted);
        if let Ok(Read::Wanted(envelope)) = &bytes {
            let Order::Any(order) = &envelope.payload;
            let _ = order.items.quantities();
        }
        if let Some(text) = text {
            let text = Envelope::<Order<'_>>::read(RecordData::Text(text), wanted);
            assert_eq!(format!("{bytes:?}"), format!("{text:?}"));
        }
    }
}

/// Whether serde_json reads the bytes as an event: `None` when its answer does not decide (a
/// number too large for an `f64`, which the reader only skips; nesting past serde_json's limit).
fn serde_reads_an_event(bytes: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(event)) => Some(matches!(event.get("Records"), None | Some(Value::Array(_)))),
        Ok(_) => Some(false),
        Err(e) if e.to_string().contains("out of range") || e.to_string().contains("recursion") => {
            None
        }
        Err(_) => Some(false),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let read = KinesisBatch::from_slice(bytes);
    if let Some(expected) = serde_reads_an_event(bytes) {
        assert_eq!(read.is_ok(), expected, "{read:?}");
    }
    let Ok(batch) = read else {
        return;
    };
    for record in batch.records() {
        let _ = (
            record.partition_key(),
            record.sequence_number(),
            record.shard_id(),
            record.data_base64(),
        );
        if let Ok(data) = record.data() {
            match kpl::deaggregate(data) {
                Some(users) => users.iter().for_each(|u| payload(&u.data)),
                None => payload(data),
            }
        }
    }
});
