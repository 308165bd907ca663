//! The envelope every producer writes, `{eventId, eventType, timestamp, payload}`, and its one
//! reader.
//!
//! The envelope is generic: it knows event types by name, and hands the payload to the consumer,
//! which reads it with its own derived schema for that type ([`Consumer::read`]). When the type
//! comes before the payload, as producers write it, the payload is read in the same pass.
//!
//! Producers write `eventType` before the payload, so of a type the function does not handle
//! nothing after the type is read: a broken payload of such a type is left to the function that
//! handles it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::error::Category;
use serde_json::value::RawValue;

use crate::ports::Consumer;

/// Why a record can never be processed. Such a record is poison: it is captured, not retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The Lambda record itself is broken (not an object, no sequence number or partition key).
    #[error("malformed Kinesis record: {0}")]
    Record(String),
    /// The record's data is missing or not base64.
    #[error("{0}")]
    Data(#[from] crate::batch::DataFault),
    /// The data is not JSON, or not the `{eventId, eventType, timestamp, payload}` envelope.
    #[error("not an event envelope: {0}")]
    Envelope(String),
    /// The payload does not follow its event type's schema.
    #[error("the {event_type} payload violates its schema: {why}")]
    Payload {
        /// The event type whose schema it breaks.
        event_type: String,
        /// What is wrong, naming the field.
        why: String,
    },
}

/// A record's decoded data: text when the batch knows it for UTF-8 (it is not checked again),
/// else bytes.
#[derive(Debug, Clone, Copy)]
pub enum RecordData<'a> {
    /// Data known to be UTF-8.
    Text(&'a str),
    /// Data not checked yet.
    Bytes(&'a [u8]),
}

/// A wanted event's envelope, borrowed from the record's data, with its payload as the consumer
/// read it.
#[derive(Debug)]
pub struct Envelope<'a, P> {
    /// The producer's id of the event, the natural idempotency key. Optional on the wire; an
    /// integer is taken as its text.
    pub event_id: Option<Cow<'a, str>>,
    /// The event type's wire name.
    pub event_type: Cow<'a, str>,
    /// The payload, read by the consumer's schema for this type.
    pub payload: P,
}

/// What reading an envelope came to.
#[derive(Debug)]
pub enum Read<'a, P> {
    /// The event's type is not wanted; its payload was not read.
    Unwanted(Cow<'a, str>),
    /// A wanted event, read whole.
    Wanted(Envelope<'a, P>),
}

impl<'a, P> Envelope<'a, P> {
    /// Reads the envelope from a record's data, and its payload with `consumer` when `wanted`
    /// holds for its type. Of an unwanted type nothing after the type is read.
    /// `timestamp` is not read (producers write it in any form, or not at all), and unknown fields
    /// are skipped.
    pub fn read<C>(
        data: RecordData<'a>,
        consumer: &C,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Read<'a, P>, Malformed>
    where
        C: Consumer<Payload<'a> = P>,
    {
        let unwanted = RefCell::new(None);
        let payload_error = RefCell::new(None);
        let seed = EnvelopeSeed {
            consumer,
            wanted: &wanted,
            unwanted: &unwanted,
            payload_error: &payload_error,
        };
        let read = deserialize(data, seed);
        match (read, unwanted.into_inner(), payload_error.into_inner()) {
            (Ok(read), _, _) => Ok(read),
            (Err(_), Some(event_type), _) => Ok(Read::Unwanted(event_type)),
            // A payload that is JSON but not of its type's schema; JSON broken anywhere, the
            // payload included, is not an envelope.
            (Err(e), None, Some(payload_error)) if e.classify() == Category::Data => {
                Err(payload_error)
            }
            (Err(e), None, _) => Err(Malformed::Envelope(e.to_string())),
        }
    }
}

/// Runs the envelope's seed over the data, which must hold nothing after the envelope.
fn deserialize<'a, T>(
    data: RecordData<'a>,
    seed: impl DeserializeSeed<'a, Value = T>,
) -> Result<T, serde_json::Error> {
    fn whole<'a, R: serde_json::de::Read<'a>, T>(
        mut de: serde_json::Deserializer<R>,
        seed: impl DeserializeSeed<'a, Value = T>,
    ) -> Result<T, serde_json::Error> {
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
    match data {
        RecordData::Text(text) => whole(serde_json::Deserializer::from_str(text), seed),
        RecordData::Bytes(bytes) => whole(serde_json::Deserializer::from_slice(bytes), seed),
    }
}

/// The one reader of the envelope: a map visitor that stops at a type `wanted` does not hold for,
/// and reads a wanted type's payload with the consumer: in place when the type came
/// first, else from its text once the type is known.
struct EnvelopeSeed<'s, 'a, C, W> {
    consumer: &'s C,
    wanted: &'s W,
    /// Where the reader leaves an unwanted type as soon as it meets it (what follows is not read).
    unwanted: &'s RefCell<Option<Cow<'a, str>>>,
    /// Where the reader leaves what is wrong with the payload, told apart from the envelope.
    payload_error: &'s RefCell<Option<Malformed>>,
}

impl<'a, C: Consumer, W: Fn(&str) -> bool> EnvelopeSeed<'_, 'a, C, W> {
    /// Keeps what is wrong with the payload of `event_type`, and answers `error`, which stops the
    /// envelope.
    fn payload_failed<E: fmt::Display>(&self, event_type: &str, error: E) -> E {
        *self.payload_error.borrow_mut() = Some(Malformed::Payload {
            event_type: event_type.to_owned(),
            why: error.to_string(),
        });
        error
    }
}

impl<'a, C: Consumer, W: Fn(&str) -> bool> DeserializeSeed<'a> for EnvelopeSeed<'_, 'a, C, W> {
    type Value = Read<'a, C::Payload<'a>>;
    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum Field {
    #[serde(rename = "eventId")]
    EventId,
    #[serde(rename = "eventType")]
    EventType,
    #[serde(rename = "payload")]
    Payload,
    #[serde(other)]
    Other,
}

/// A wanted event's payload, read in place by the consumer.
struct PayloadSeed<'s, 'a, C, W> {
    envelope: &'s EnvelopeSeed<'s, 'a, C, W>,
    event_type: &'s str,
}

impl<'a, C: Consumer, W: Fn(&str) -> bool> DeserializeSeed<'a> for PayloadSeed<'_, 'a, C, W> {
    type Value = C::Payload<'a>;
    fn deserialize<D: Deserializer<'a>>(self, payload: D) -> Result<C::Payload<'a>, D::Error> {
        self.envelope
            .consumer
            .read(self.event_type, payload)
            .map_err(|e| self.envelope.payload_failed(self.event_type, e))
    }
}

/// The payload so far: read, or kept as text until the type is known.
enum PayloadSoFar<'a, V> {
    Read(V),
    Raw(&'a RawValue),
}

impl<'a, C: Consumer, W: Fn(&str) -> bool> Visitor<'a> for EnvelopeSeed<'_, 'a, C, W> {
    type Value = Read<'a, C::Payload<'a>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {eventId, eventType, timestamp, payload}")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut event_id, mut event_type, mut payload) = (None, None, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::EventId if event_id.is_some() => {
                    return Err(de::Error::duplicate_field("eventId"))
                }
                Field::EventId => event_id = Some(map.next_value::<EventId<'a>>()?.0),
                Field::EventType if event_type.is_some() => {
                    return Err(de::Error::duplicate_field("eventType"))
                }
                Field::EventType => {
                    let name = map.next_value::<EventTypeName<'a>>()?.0;
                    if !(self.wanted)(&name) {
                        // The rest is not read: serde_json then reports the map unfinished, and
                        // `Envelope::read` answers the type kept here (a fault after it is not
                        // this function's). Returning, not failing: an error of the visitor's own
                        // costs more to make than the rest of a record costs to skip.
                        *self.unwanted.borrow_mut() = Some(name.clone());
                        return Ok(Read::Unwanted(name));
                    }
                    event_type = Some(name);
                }
                Field::Payload if payload.is_some() => {
                    return Err(de::Error::duplicate_field("payload"))
                }
                Field::Payload => {
                    payload = Some(match &event_type {
                        Some(t) => PayloadSoFar::Read(map.next_value_seed(PayloadSeed {
                            envelope: &self,
                            event_type: t,
                        })?),
                        None => PayloadSoFar::Raw(map.next_value::<&'a RawValue>()?),
                    })
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let event_type = event_type.ok_or_else(|| de::Error::missing_field("eventType"))?;
        let payload = match payload {
            Some(PayloadSoFar::Read(payload)) => payload,
            Some(PayloadSoFar::Raw(raw)) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                self.consumer
                    .read(&event_type, &mut de)
                    .and_then(|p| de.end().map(|()| p))
                    .map_err(|e| de::Error::custom(self.payload_failed(&event_type, e)))?
            }
            None => {
                let missing = de::Error::missing_field("payload");
                return Err(self.payload_failed(&event_type, missing));
            }
        };
        Ok(Read::Wanted(Envelope {
            event_id: event_id.flatten(),
            event_type,
            payload,
        }))
    }
}

/// The event type's name: a string, borrowed unless escaped.
struct EventTypeName<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for EventTypeName<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(TextVisitor("a string"))
            .map(EventTypeName)
    }
}

/// `eventId`: a string or an integer, as text; `null` is no id.
struct EventId<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for EventId<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an integer or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(V).map(EventId)
    }
}

/// A string, borrowed when it can be.
struct TextVisitor(&'static str);

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Event, Outcome};
    use crate::error::EffectError;
    use proptest::prelude::*;

    /// A consumer that reads any payload as its raw JSON, or as a cancellation.
    struct Raw;

    impl Consumer for Raw {
        type Payload<'a> = &'a RawValue;
        fn read<'a, D: Deserializer<'a>>(&self, _: &str, p: D) -> Result<&'a RawValue, D::Error> {
            <&RawValue>::deserialize(p)
        }
        async fn handle(&self, _: &Event<'_, Self::Payload<'_>>) -> Result<Outcome, EffectError> {
            Ok(Outcome::Applied)
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Cancel<'a> {
        #[serde(rename = "orderId", borrow)]
        order_id: crate::order::OrderId<'a>,
    }

    struct Cancels;

    impl Consumer for Cancels {
        type Payload<'a> = Cancel<'a>;
        fn read<'a, D: Deserializer<'a>>(&self, t: &str, p: D) -> Result<Cancel<'a>, D::Error> {
            match t {
                "ORDER_CANCELLED" => Cancel::deserialize(p),
                other => Err(crate::ports::no_rule(other)),
            }
        }
        async fn handle(&self, _: &Event<'_, Self::Payload<'_>>) -> Result<Outcome, EffectError> {
            Ok(Outcome::Applied)
        }
    }

    fn wanted(t: &str) -> bool {
        t == "ORDER_PLACED"
    }

    fn read(text: &str) -> Result<Read<'_, &RawValue>, Malformed> {
        Envelope::read(RecordData::Bytes(text.as_bytes()), &Raw, wanted)
    }

    /// The reference reading of an envelope: its fields taken in order, each value read by
    /// serde_json, by the rules the reader documents.
    #[derive(Debug, PartialEq)]
    enum Reference {
        Unwanted(String),
        Wanted(Option<String>, String, String),
        Invalid,
    }

    fn reference(fields: &[(&str, String)]) -> Reference {
        use serde_json::Value;
        let (mut id, mut ty, mut payload) = (None, None, None);
        for (key, text) in fields {
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                return Reference::Invalid;
            };
            match *key {
                "eventId" if id.is_some() => return Reference::Invalid,
                "eventId" => {
                    id = Some(match value {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
                        _ => return Reference::Invalid,
                    })
                }
                "eventType" if ty.is_some() => return Reference::Invalid,
                "eventType" => match value {
                    Value::String(t) if !wanted(&t) => return Reference::Unwanted(t),
                    Value::String(t) => ty = Some(t),
                    _ => return Reference::Invalid,
                },
                "payload" if payload.is_some() => return Reference::Invalid,
                "payload" => payload = Some(value.to_string()),
                _ => {}
            }
        }
        match (ty, payload) {
            (Some(t), Some(payload)) => Reference::Wanted(id.flatten(), t, payload),
            _ => Reference::Invalid,
        }
    }

    fn ours(text: &str) -> Reference {
        match read(text) {
            Ok(Read::Unwanted(t)) => Reference::Unwanted(t.into_owned()),
            Ok(Read::Wanted(e)) => Reference::Wanted(
                e.event_id.map(Cow::into_owned),
                e.event_type.into_owned(),
                // Compared as values: the raw text keeps the producer's spacing.
                serde_json::from_str::<serde_json::Value>(e.payload.get())
                    .unwrap()
                    .to_string(),
            ),
            Err(_) => Reference::Invalid,
        }
    }

    #[test]
    fn envelopes_as_producers_write_them() {
        let article = r#"{"eventType": "ORDER_PLACED", "timestamp": "2026-11-21T10:00:00.123456", "payload": {"orderId": "o-1"}}"#;
        let Read::Wanted(e) = read(article).unwrap() else {
            panic!("wanted")
        };
        assert_eq!(e.event_id, None);
        assert_eq!(e.event_type, "ORDER_PLACED");
        assert_eq!(e.payload.get(), r#"{"orderId": "o-1"}"#);
        let text = r#"{"payload":[1],"eventId":42,"eventType":"ORDER_PLACED"}"#;
        let Read::Wanted(e) = read(text).unwrap() else {
            panic!("wanted")
        };
        assert_eq!(e.event_id.as_deref(), Some("42"));
        assert_eq!(e.payload.get(), "[1]");
    }

    #[test]
    fn an_unwanted_type_is_not_read_further() {
        // The type comes first: what follows is not read by a schema, and may be broken.
        let broken_after = r#"{"eventId":"e","eventType":"PAYMENT_CAPTURED","payload":{"orderId":"#;
        assert!(matches!(read(broken_after), Ok(Read::Unwanted(t)) if t == "PAYMENT_CAPTURED"));
        // The type after the payload, or escaped: still found.
        for text in [
            r#"{"payload":{"orderId":"o"},"eventType":"ORDER_CANCELLED"}"#,
            r#"{"eventType":"ORDER_\u0043ANCELLED"}"#,
        ] {
            assert!(
                matches!(read(text), Ok(Read::Unwanted(t)) if t == "ORDER_CANCELLED"),
                "{text}"
            );
        }
        // Broken before its type: not an envelope.
        let broken = r#"{"payload":{"orderId":,"eventType":"ORDER_CANCELLED"}"#;
        assert!(matches!(read(broken), Err(Malformed::Envelope(_))));
        // A wanted type is read whole, and checked whole.
        for text in [
            r#"{"eventType":"ORDER_PLACED","payload":{"orderId":"#,
            r#"{"eventType":"ORDER_PLACED","eventType":"ORDER_PLACED","payload":1}"#,
            r#"{"eventType":"ORDER_PLACED","payload":1} trailing"#,
            r#"{"eventType":"ORDER_PLACED","eventId":true,"payload":1}"#,
        ] {
            assert!(matches!(read(text), Err(Malformed::Envelope(_))), "{text}");
        }
        // Not UTF-8 in a field that is skipped: read by bytes, the type still found.
        let bytes = b"{\"eventType\":\"X\",\"n\":\"\xff\"}";
        assert!(matches!(
            Envelope::read(RecordData::Bytes(bytes), &Raw, wanted),
            Ok(Read::Unwanted(t)) if t == "X"
        ));
    }

    #[test]
    fn not_envelopes() {
        for text in [
            "",
            "[1,2]",
            r#"{"hello":"world"}"#,
            r#"{"eventType":7}"#,
            "\u{ff}",
        ] {
            assert!(matches!(read(text), Err(Malformed::Envelope(_))), "{text}");
        }
    }

    #[test]
    fn payloads_name_the_field_that_breaks_the_schema() {
        let read = |text: &'static str| {
            Envelope::read(RecordData::Text(text), &Cancels, |t| t == "ORDER_CANCELLED")
        };
        let ok = r#"{"eventType":"ORDER_CANCELLED","payload":{"orderId":"o-1","reason":"changed mind"}}"#;
        assert!(matches!(read(ok), Ok(Read::Wanted(_))));
        // In place (the type first), and after the type (the payload first): the same answer.
        for text in [
            r#"{"eventType":"ORDER_CANCELLED","payload":{"reason":"x"}}"#,
            r#"{"payload":{"reason":"x"},"eventType":"ORDER_CANCELLED"}"#,
        ] {
            let err = read(text).unwrap_err();
            assert!(
                matches!(&err, Malformed::Payload { event_type, why }
                if event_type == "ORDER_CANCELLED" && why.contains("missing field `orderId`")),
                "{err}"
            );
        }
        let err = read(r#"{"eventType":"ORDER_CANCELLED","payload":{"orderId":" "}}"#).unwrap_err();
        assert!(err.to_string().contains("orderId is empty"), "{err}");
        let missing = read(r#"{"eventType":"ORDER_CANCELLED"}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `payload`"),
            "{missing}"
        );
        // A broken payload of a wanted type is a payload fault; JSON broken after it is not.
        let err =
            read(r#"{"eventType":"ORDER_CANCELLED","payload":{"orderId":"o"}} x"#).unwrap_err();
        assert!(matches!(err, Malformed::Envelope(_)), "{err}");
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""ORDER_PLACED""#.to_owned()),
            Just(r#""ORDER_\u0050LACED""#.to_owned()),
            Just(r#""PAYMENT""#.to_owned()),
            Just("null".to_owned()),
            Just("7".to_owned()),
            Just("-7".to_owned()),
            Just("1.5".to_owned()),
            Just("true".to_owned()),
            Just(r#"{"orderId":"o","items":[1,2]}"#.to_owned()),
            Just("[]".to_owned()),
            Just("{".to_owned()),
            "[a-z ]{0,6}".prop_map(|s| format!("\"{s}\"")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Envelopes of any fields, in any order and spacing: the reader answers what the
        /// reference reading of the same fields says.
        #[test]
        fn the_reader_agrees_with_serde(
            fields in prop::collection::vec(
                (
                    prop_oneof![
                        Just("eventId"), Just("eventType"), Just("timestamp"), Just("payload"),
                        Just("other"),
                    ],
                    value(),
                ),
                0..6,
            ),
            spaced in any::<bool>(),
        ) {
            let sep = if spaced { ", " } else { "," };
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let text = format!("{{{}}}", body.join(sep));
            let reference = reference(&fields);
            prop_assert_eq!(ours(&text), reference, "{}", text);
        }
    }
}
