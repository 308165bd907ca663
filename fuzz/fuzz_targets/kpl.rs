//! Any bytes as a record's data: KPL deaggregation (with the magic prefix, so the fuzzer reaches the
//! digest and the protobuf), then the envelope. Nothing may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use shared::event::{Envelope, RecordData};
use shared::{kpl, Consumer, EffectError, Event, Outcome};

/// A consumer that reads any payload and keeps nothing of it.
struct Any;

impl Consumer for Any {
    type Payload<'a> = ();
    fn read<'a, D: Deserializer<'a>>(&self, _: &str, payload: D) -> Result<(), D::Error> {
        IgnoredAny::deserialize(payload).map(drop)
    }
    async fn handle(&self, _: &Event<'_, Self::Payload<'_>>) -> Result<Outcome, EffectError> {
        Ok(Outcome::Applied)
    }
}

fuzz_target!(|bytes: &[u8]| {
    let _ = kpl::deaggregate(bytes);
    // Make the digest right, so the protobuf decoder itself is exercised.
    let record = kpl::aggregate_raw(bytes);
    if let Some(users) = kpl::deaggregate(&record) {
        for u in users {
            let _ = Envelope::read(RecordData::Bytes(&u.data), &Any, |_| true);
        }
    }
});
