//! Any bytes as a record's data: KPL deaggregation (with the magic prefix, so the fuzzer reaches the
//! digest and the protobuf), then the envelope. Nothing may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use shared::input::envelope::{Envelope, RecordData};
use shared::kpl;

fuzz_target!(|bytes: &[u8]| {
    let _ = kpl::deaggregate(bytes);
    // Make the digest right, so the protobuf decoder itself is exercised.
    let record = kpl::aggregate_raw(bytes);
    if let Some(users) = kpl::deaggregate(&record) {
        for u in users {
            let _ = Envelope::<IgnoredAny>::read(RecordData::Bytes(&u.data), |_| true);
        }
    }
});
