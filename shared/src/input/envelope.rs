//! The envelope every producer writes, `{eventId, eventType, timestamp, payload}`, and its one
//! reader.
//!
//! The envelope knows event types by name only. What a consumer reads is an enum with one variant
//! per event type it handles, named by the type's wire name, each holding that type's payload
//! schema (`#[derive(Deserialize)] enum Read { #[serde(rename = "ORDER_PLACED")] Placed(Order) }`).
//! [`Envelope::read`] reads a record's payload into the variant of its type, in the same pass as
//! the envelope when the type comes first, as producers write it. The enum is the one place the
//! types are declared: [`declared_types`] lists them.
//!
//! Of a type the function does not handle, nothing after the type is read: a broken payload of
//! such a type is left to the function that handles it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, IntoDeserializer, MapAccess,
    VariantAccess, Visitor,
};
use serde::Deserialize;
use serde_json::error::Category;
use serde_json::value::RawValue;

use super::batch::DataFault;

/// Why a record can never be processed. Such a record is poison: it is captured, not retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The Lambda record itself is broken (not an object, no sequence number or partition key).
    #[error("malformed Kinesis record: {0}")]
    Record(String),
    /// The record's data is missing or not base64.
    #[error("{0}")]
    Data(#[from] DataFault),
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

/// A wanted event's envelope, borrowed from the record's data, with its payload read into the
/// variant of its type.
#[derive(Debug)]
pub struct Envelope<'a, P> {
    /// The producer's id of the event, the natural idempotency key. Optional on the wire; an
    /// integer is taken as its text.
    pub event_id: Option<Cow<'a, str>>,
    /// The event type's wire name.
    pub event_type: Cow<'a, str>,
    /// When the producer says it happened, as it wrote it (a string, or a number as its text);
    /// `None` when it wrote none, or something else.
    pub timestamp: Option<Cow<'a, str>>,
    /// The payload, read by the schema of its type.
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

impl<'a, P: Deserialize<'a>> Envelope<'a, P> {
    /// Reads the envelope from a record's data, and its payload into `P`'s variant of its type
    /// when `wanted` holds for the type. Of an unwanted type nothing after the type is read.
    /// `timestamp` is kept as written, never checked (producers write it in any form, or not at
    /// all), and unknown fields are skipped.
    pub fn read(
        data: RecordData<'a>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Read<'a, P>, Malformed> {
        let unwanted = RefCell::new(None);
        let payload_error = RefCell::new(None);
        let seed = EnvelopeSeed {
            wanted: &wanted,
            unwanted: &unwanted,
            payload_error: &payload_error,
            payload: std::marker::PhantomData,
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

/// The event types a payload enum declares: its variants' wire names, aliases included. Empty
/// when `P` is not an enum read by its variants' names (an untagged or internally tagged enum, a
/// struct): such a type cannot say which types it reads.
pub fn declared_types<P: Deserialize<'static>>() -> Vec<&'static str> {
    match P::deserialize(Probe) {
        Err(ProbeError(Some(variants))) => variants.to_vec(),
        _ => Vec::new(),
    }
}

/// A deserializer that answers only the question "which variants?": serde's derived enums name
/// them when they ask for an enum.
struct Probe;

/// What [`Probe`] found: the variants, or nothing (`P` did not ask for an enum).
#[derive(Debug)]
struct ProbeError(Option<&'static [&'static str]>);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an enum of event types")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(_: T) -> Self {
        ProbeError(None)
    }
}

impl<'de> Deserializer<'de> for Probe {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError(None))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError(Some(variants)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

/// A payload with its event type, read as the variant of that name: the enum's variant is the
/// type, its content the payload.
struct Tagged<'t, D> {
    event_type: &'t str,
    payload: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tagged<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

impl<'de, D: Deserializer<'de>> EnumAccess<'de> for Tagged<'_, D> {
    type Error = D::Error;
    type Variant = Content<D>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Content<D>), D::Error> {
        let name: StrDeserializer<'_, D::Error> = self.event_type.into_deserializer();
        Ok((seed.deserialize(name)?, Content(self.payload)))
    }
}

/// The payload, as the content of its type's variant.
struct Content<D>(D);

impl<'de, D: Deserializer<'de>> VariantAccess<'de> for Content<D> {
    type Error = D::Error;

    /// A variant with no content: the payload is skipped.
    fn unit_variant(self) -> Result<(), D::Error> {
        IgnoredAny::deserialize(self.0).map(drop)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, D::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct("payload", fields, visitor)
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
/// and reads a wanted type's payload: in place when the type came first, else from its text once
/// the type is known.
struct EnvelopeSeed<'s, 'a, P, W> {
    wanted: &'s W,
    /// Where the reader leaves an unwanted type as soon as it meets it (what follows is not read).
    unwanted: &'s RefCell<Option<Cow<'a, str>>>,
    /// Where the reader leaves what is wrong with the payload, told apart from the envelope.
    payload_error: &'s RefCell<Option<Malformed>>,
    payload: std::marker::PhantomData<P>,
}

impl<P, W> EnvelopeSeed<'_, '_, P, W> {
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

impl<'a, P: Deserialize<'a>, W: Fn(&str) -> bool> DeserializeSeed<'a>
    for EnvelopeSeed<'_, 'a, P, W>
{
    type Value = Read<'a, P>;
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
    #[serde(rename = "timestamp")]
    Timestamp,
    #[serde(other)]
    Other,
}

/// A wanted event's payload, read in place.
struct PayloadSeed<'s, 'a, P, W> {
    envelope: &'s EnvelopeSeed<'s, 'a, P, W>,
    event_type: &'s str,
}

impl<'a, P: Deserialize<'a>, W> DeserializeSeed<'a> for PayloadSeed<'_, 'a, P, W> {
    type Value = P;
    fn deserialize<D: Deserializer<'a>>(self, payload: D) -> Result<P, D::Error> {
        let event_type = self.event_type;
        P::deserialize(Tagged {
            event_type,
            payload,
        })
        .map_err(|e| self.envelope.payload_failed(event_type, e))
    }
}

/// The payload so far: read, or kept as text until the type is known.
enum PayloadSoFar<'a, V> {
    Read(V),
    Raw(&'a RawValue),
}

impl<'a, P: Deserialize<'a>, W: Fn(&str) -> bool> Visitor<'a> for EnvelopeSeed<'_, 'a, P, W> {
    type Value = Read<'a, P>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {eventId, eventType, timestamp, payload}")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut event_id, mut event_type, mut payload, mut timestamp) = (None, None, None, None);
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
                Field::Timestamp => timestamp = map.next_value::<LooseText<'a>>()?.0,
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
                let read = PayloadSeed {
                    envelope: &self,
                    event_type: &event_type,
                }
                .deserialize(&mut de)
                .and_then(|p| de.end().map(|()| p));
                read.map_err(de::Error::custom)?
            }
            None => {
                let missing = de::Error::missing_field("payload");
                return Err(self.payload_failed(&event_type, missing));
            }
        };
        Ok(Read::Wanted(Envelope {
            event_id: event_id.flatten(),
            event_type,
            timestamp,
            payload,
        }))
    }
}

/// The event type's name: a string, borrowed unless escaped.
#[derive(Deserialize)]
struct EventTypeName<'a>(#[serde(borrow)] Cow<'a, str>);

/// A value read loosely, for what is kept or passed on as written but never checked (the
/// envelope's `timestamp`; a field a consumer forwards without using): a string (borrowed unless
/// escaped), or a number as its text; anything else (`null`, a boolean, an object, an array) is
/// none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LooseText<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LooseText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
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
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }
        deserializer.deserialize_any(V).map(LooseText)
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
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A payload read as its raw JSON, of the one wanted type.
    #[derive(Debug, Deserialize)]
    enum Raw<'a> {
        #[serde(rename = "ORDER_PLACED", borrow)]
        Placed(&'a RawValue),
    }

    impl<'a> Raw<'a> {
        fn get(&self) -> &'a str {
            let Raw::Placed(raw) = self;
            raw.get()
        }
    }

    /// An id that checks itself, as a domain's values do.
    #[derive(Debug)]
    struct Id;

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = Cow::<str>::deserialize(deserializer)?;
            if text.trim().is_empty() {
                Err(de::Error::custom("orderId is empty"))
            } else {
                Ok(Id)
            }
        }
    }

    /// A cancellation's schema, as a struct variant.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Cancels {
        #[serde(rename = "ORDER_CANCELLED")]
        Cancelled {
            #[serde(rename = "orderId")]
            order_id: Id,
        },
    }

    fn wanted(t: &str) -> bool {
        t == "ORDER_PLACED"
    }

    fn read(text: &str) -> Result<Read<'_, Raw<'_>>, Malformed> {
        Envelope::read(RecordData::Bytes(text.as_bytes()), wanted)
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

    /// The timestamp is kept as written, never checked: a string, a number as its text; anything
    /// else is none, and never makes the record poison.
    #[test]
    fn the_timestamp_as_written() {
        let with = |ts: &str| {
            format!(
                r#"{{"eventType":"ORDER_PLACED","timestamp":{ts},"payload":{{"orderId":"o-1"}}}}"#
            )
        };
        for (ts, kept) in [
            (
                r#""2026-11-21T10:00:00.123456""#,
                Some("2026-11-21T10:00:00.123456"),
            ),
            (r#""a\"b""#, Some("a\"b")),
            ("1732183200123", Some("1732183200123")),
            ("-1", Some("-1")),
            ("1.5", Some("1.5")),
            ("null", None),
            ("true", None),
            (r#"{"at":[1,2]}"#, None),
            ("[1]", None),
        ] {
            let text = with(ts);
            let Read::Wanted(e) = read(&text).unwrap() else {
                panic!("wanted")
            };
            assert_eq!(e.timestamp.as_deref(), kept, "{ts}");
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
            Envelope::<Raw<'_>>::read(RecordData::Bytes(bytes), wanted),
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
            Envelope::<Cancels>::read(RecordData::Text(text), |t| t == "ORDER_CANCELLED")
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

    /// The types a payload enum declares are its variants' names, aliases included; a type that is
    /// not such an enum declares none.
    #[test]
    fn declared_types_are_the_variants() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum Two {
            #[serde(rename = "A", alias = "B")]
            Ab(u8),
            #[serde(rename = "C")]
            C,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum Untagged {
            One(u8),
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Plain {
            a: u8,
        }
        assert_eq!(declared_types::<Two>(), ["A", "B", "C"]);
        assert_eq!(declared_types::<Raw<'static>>(), ["ORDER_PLACED"]);
        assert!(declared_types::<Untagged>().is_empty());
        assert!(declared_types::<Plain>().is_empty());
        assert!(declared_types::<u8>().is_empty());
    }

    /// Every kind of variant reads its payload: a newtype its content, a struct its fields, a unit
    /// variant none (the payload is skipped); an alias reads as its variant.
    #[test]
    fn variants_of_every_kind() {
        #[derive(Debug, Deserialize, PartialEq)]
        enum Kinds {
            #[serde(rename = "N", alias = "M")]
            Newtype(u8),
            #[serde(rename = "S")]
            Struct { a: u8 },
            #[serde(rename = "U")]
            Unit,
        }
        let read =
            |text: &'static str| match Envelope::<Kinds>::read(RecordData::Text(text), |_| true) {
                Ok(Read::Wanted(e)) => e.payload,
                other => panic!("{text}: {other:?}"),
            };
        assert_eq!(read(r#"{"eventType":"N","payload":7}"#), Kinds::Newtype(7));
        assert_eq!(read(r#"{"payload":7,"eventType":"M"}"#), Kinds::Newtype(7));
        assert_eq!(
            read(r#"{"eventType":"S","payload":{"a":1,"b":2}}"#),
            Kinds::Struct { a: 1 }
        );
        assert_eq!(
            read(r#"{"eventType":"U","payload":{"x":[1]}}"#),
            Kinds::Unit
        );
        let err = Envelope::<Kinds>::read(
            RecordData::Text(r#"{"eventType":"S","payload":{}}"#),
            |_| true,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Malformed::Payload { event_type, why } if event_type == "S" && why.contains("missing field `a`")),
            "{err}"
        );
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
