//! Any bytes as a Lambda Kinesis event: the one-pass reader, then every record's data through KPL
//! deaggregation, the envelope and the order payload. Nothing may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::event::Envelope;
use shared::{kpl, KinesisBatch};

fn payload(data: &[u8]) {
    if let Ok(mut envelope) = Envelope::parse(data) {
        if let Ok(order) = envelope.order() {
            let _ = order.quantities();
        }
    }
    // The engine's way: the type first, the rest only when the type is wanted.
    if Envelope::unwanted_type(data, |t| t.len() % 2 == 0).is_none() {
        if let Ok(mut envelope) = Envelope::parse(data) {
            let _ = envelope.order();
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(batch) = KinesisBatch::from_slice(bytes) else {
        return;
    };
    for record in batch.records() {
        let _ = (
            record.partition_key(),
            record.sequence_number(),
            record.shard_id(),
        );
        let _ = (record.data_base64(), record.data_str());
        if let Ok(data) = record.data() {
            match kpl::deaggregate(data) {
                Some(users) => users.iter().for_each(|u| payload(&u.data)),
                None => payload(data),
            }
        }
    }
});
