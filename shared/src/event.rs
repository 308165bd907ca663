//! The envelope every producer writes, `{eventId, eventType, timestamp, payload}`, and its one
//! reader.
//!
//! The envelope is generic: it knows event types by name and leaves the payload raw. Each consumer
//! reads the payload of the types it handles with its own derived schema ([`RawPayload::read`]).
//!
//! The reader stops at an event type the consumer does not handle: producers write `eventType`
//! before the payload, so such a record is read no further than its type (and a broken payload of
//! a type this function does not handle is left to the function that handles it).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

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
    /// The function has no rule for the event's type (its configuration lists a type its code does
    /// not read).
    #[error("this function has no rule for {0}")]
    NoRule(String),
    /// The payload does not follow its event type's schema.
    #[error("the {event_type} payload violates its schema: {why}")]
    Payload {
        /// The event type whose schema it breaks.
        event_type: String,
        /// What is wrong, naming the field.
        why: String,
    },
}

/// An event's envelope, borrowed from the record's decoded data.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The producer's id of the event, the natural idempotency key. Optional on the wire; a
    /// number is taken as its text.
    pub event_id: Option<Cow<'a, str>>,
    /// The event type's wire name.
    pub event_type: Cow<'a, str>,
    /// The payload, left raw for the consumer's schema of this type.
    pub payload: Option<&'a RawValue>,
}

/// What reading an envelope came to.
#[derive(Debug)]
pub enum Read<'a> {
    /// The event's type is not wanted; nothing after it was read.
    Unwanted(Cow<'a, str>),
    /// A wanted event's envelope, read whole.
    Wanted(Envelope<'a>),
}

impl<'a> Envelope<'a> {
    /// Reads the envelope from a record's data, stopping at an event type that `wanted` does not
    /// hold for. `timestamp` is not read (producers write it in any form, or not at all), and
    /// unknown fields are skipped.
    pub fn read(data: &'a [u8], wanted: impl Fn(&str) -> bool) -> Result<Read<'a>, Malformed> {
        let unwanted = RefCell::new(None);
        let mut de = serde_json::Deserializer::from_slice(data);
        let read = EnvelopeSeed {
            wanted: &wanted,
            unwanted: &unwanted,
        }
        .deserialize(&mut de)
        .and_then(|envelope| de.end().map(|()| envelope));
        match (read, unwanted.into_inner()) {
            (_, Some(event_type)) => Ok(Read::Unwanted(event_type)),
            (Ok(envelope), None) => Ok(Read::Wanted(envelope)),
            (Err(e), None) => Err(Malformed::Envelope(e.to_string())),
        }
    }

    /// The payload, for reading by the schema of this event's type.
    pub fn payload(&self) -> RawPayload<'a> {
        RawPayload {
            event_type: self.event_type.clone(),
            raw: self.payload,
        }
    }
}

/// An event's raw payload, with its type: what a consumer reads with its schema for that type.
#[derive(Debug, Clone)]
pub struct RawPayload<'a> {
    event_type: Cow<'a, str>,
    raw: Option<&'a RawValue>,
}

impl<'a> RawPayload<'a> {
    /// A payload of `event_type` from its JSON text (`None`: the envelope had none).
    pub fn new(event_type: &'a str, raw: Option<&'a RawValue>) -> Self {
        Self {
            event_type: Cow::Borrowed(event_type),
            raw,
        }
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// Reads the payload into `T`, the schema of this event type (a derived struct, borrowing
    /// its strings where it can). A payload that breaks it is [`Malformed::Payload`], naming the
    /// field.
    pub fn read<T: Deserialize<'a>>(&self) -> Result<T, Malformed> {
        let malformed = |why: String| Malformed::Payload {
            event_type: self.event_type.to_string(),
            why,
        };
        let raw = self
            .raw
            .ok_or_else(|| malformed("missing field `payload`".into()))?;
        serde_json::from_str(raw.get()).map_err(|e| malformed(e.to_string()))
    }
}

/// The one reader of the envelope: a map visitor that stops at an unwanted type.
struct EnvelopeSeed<'s, 'a, W> {
    wanted: &'s W,
    /// Where the reader leaves an unwanted type before it stops (with an error, the only way to
    /// leave a `serde_json` map early).
    unwanted: &'s RefCell<Option<Cow<'a, str>>>,
}

impl<'de, W: Fn(&str) -> bool> DeserializeSeed<'de> for EnvelopeSeed<'_, 'de, W> {
    type Value = Envelope<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Envelope<'de>, D::Error> {
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

impl<'de, W: Fn(&str) -> bool> Visitor<'de> for EnvelopeSeed<'_, 'de, W> {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {eventId, eventType, timestamp, payload}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let (mut event_id, mut event_type, mut payload) = (None, None, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::EventId if event_id.is_some() => {
                    return Err(de::Error::duplicate_field("eventId"))
                }
                Field::EventId => event_id = Some(map.next_value::<EventId<'de>>()?.0),
                Field::EventType if event_type.is_some() => {
                    return Err(de::Error::duplicate_field("eventType"))
                }
                Field::EventType => {
                    let name = map.next_value::<EventTypeName<'de>>()?.0;
                    if !(self.wanted)(&name) {
                        *self.unwanted.borrow_mut() = Some(name);
                        return Err(de::Error::custom("unwanted event type"));
                    }
                    event_type = Some(name);
                }
                Field::Payload if payload.is_some() => {
                    return Err(de::Error::duplicate_field("payload"))
                }
                Field::Payload => payload = Some(map.next_value::<Option<&'de RawValue>>()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope {
            event_id: event_id.flatten(),
            event_type: event_type.ok_or_else(|| de::Error::missing_field("eventType"))?,
            payload: payload.flatten(),
        })
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

/// `eventId`: a string or a number, as text; `null` is no id.
struct EventId<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for EventId<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or null")
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
    use proptest::prelude::*;

    fn wanted(t: &str) -> bool {
        t == "ORDER_PLACED"
    }

    fn read(text: &str) -> Result<Read<'_>, Malformed> {
        Envelope::read(text.as_bytes(), wanted)
    }

    /// The reference reading of an envelope: its fields taken in order, each value read by
    /// serde_json, by the rules the reader documents.
    #[derive(Debug, PartialEq)]
    enum Reference {
        Unwanted(String),
        Wanted(Option<String>, String, Option<String>),
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
                "payload" => payload = Some((!value.is_null()).then(|| value.to_string())),
                _ => {}
            }
        }
        match ty {
            Some(t) => Reference::Wanted(id.flatten(), t, payload.flatten()),
            None => Reference::Invalid,
        }
    }

    fn ours(text: &str) -> Reference {
        match read(text) {
            Ok(Read::Unwanted(t)) => Reference::Unwanted(t.into_owned()),
            Ok(Read::Wanted(e)) => Reference::Wanted(
                e.event_id.map(Cow::into_owned),
                e.event_type.into_owned(),
                // Compared as values: the raw text keeps the producer's spacing.
                e.payload.map(|p| {
                    serde_json::from_str::<serde_json::Value>(p.get())
                        .unwrap()
                        .to_string()
                }),
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
        assert_eq!(e.payload.unwrap().get(), r#"{"orderId": "o-1"}"#);
        let Read::Wanted(e) = read(r#"{"eventId":42,"eventType":"ORDER_PLACED"}"#).unwrap() else {
            panic!("wanted")
        };
        assert_eq!(e.event_id.as_deref(), Some("42"));
        assert!(e.payload.is_none());
    }

    #[test]
    fn unwanted_types_are_read_no_further_than_their_type() {
        // The type comes first: what follows is not read, even when it is broken.
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
            r#"{"eventType":"ORDER_PLACED","eventType":"ORDER_PLACED"}"#,
            r#"{"eventType":"ORDER_PLACED"} trailing"#,
            r#"{"eventType":"ORDER_PLACED","eventId":true}"#,
        ] {
            assert!(matches!(read(text), Err(Malformed::Envelope(_))), "{text}");
        }
        // Not UTF-8 in a field that is skipped: read by bytes, the type still found.
        assert!(matches!(
            Envelope::read(b"{\"eventType\":\"X\",\"n\":\"\xff\"}", wanted),
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
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Cancel<'a> {
            #[serde(rename = "orderId", borrow)]
            order_id: crate::order::OrderId<'a>,
        }
        let payload = |raw: &'static str| {
            let raw: &RawValue = serde_json::from_str(raw).unwrap();
            RawPayload::new("ORDER_CANCELLED", Some(raw)).read::<Cancel<'_>>()
        };
        assert!(payload(r#"{"orderId":"o-1","reason":"changed mind"}"#).is_ok());
        let err = payload(r#"{"reason":"x"}"#).unwrap_err().to_string();
        assert!(
            err.contains("ORDER_CANCELLED") && err.contains("orderId"),
            "{err}"
        );
        let err = payload(r#"{"orderId":" "}"#).unwrap_err().to_string();
        assert!(err.contains("orderId is empty"), "{err}");
        let missing = RawPayload::new("ORDER_CANCELLED", None).read::<Cancel<'_>>();
        assert!(missing.unwrap_err().to_string().contains("payload"));
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
            prop_assert_eq!(ours(&text), reference(&fields), "{}", text);
        }
    }
}
