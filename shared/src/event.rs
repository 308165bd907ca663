//! The order event: the envelope every producer writes, and the order payload.
//!
//! Parsing borrows from the decoded record data, so a record's strings are not copied unless they
//! contain JSON escapes. The payload stays raw JSON until a rule asks for the order, and then it is
//! validated into domain types that the rest of the code trusts.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The kinds of order event on the stream. Unknown kinds are kept by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `ORDER_PLACED`: a customer placed an order.
    OrderPlaced,
    /// `ORDER_CREATED`: an order was created by another channel.
    OrderCreated,
    /// `ORDER_CANCELLED`: an order was cancelled.
    OrderCancelled,
    /// Any other event type, by name.
    Other(Box<str>),
}

impl EventType {
    /// Reads an event type from its wire name. Never fails: unknown names become `Other`.
    pub fn parse(name: &str) -> EventType {
        match name {
            "ORDER_PLACED" => EventType::OrderPlaced,
            "ORDER_CREATED" => EventType::OrderCreated,
            "ORDER_CANCELLED" => EventType::OrderCancelled,
            other => EventType::Other(other.into()),
        }
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::OrderPlaced => "ORDER_PLACED",
            EventType::OrderCreated => "ORDER_CREATED",
            EventType::OrderCancelled => "ORDER_CANCELLED",
            EventType::Other(name) => name,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    #[error("not an order event envelope: {0}")]
    Envelope(String),
    /// The payload does not follow the order schema.
    #[error("order payload violates the schema: {0}")]
    Payload(String),
}

/// The envelope of an order event, borrowed from the record's decoded data.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// The producer's id of the event, the natural idempotency key. Optional on the wire.
    #[serde(rename = "eventId", borrow, default)]
    pub event_id: Option<Cow<'a, str>>,
    /// The event type's wire name.
    #[serde(rename = "eventType", borrow)]
    pub event_type: Cow<'a, str>,
    /// When the producer wrote the event (kept raw: producers disagree on its format).
    #[serde(default, borrow)]
    pub timestamp: Option<&'a RawValue>,
    /// The payload, left raw until a rule asks for it.
    #[serde(default, borrow)]
    pub payload: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Parses the envelope from a record's decoded data.
    pub fn parse(data: &'a [u8]) -> Result<Envelope<'a>, Malformed> {
        // UTF-8 checked once for the whole record, not again for every string and raw value;
        // data that is not UTF-8 is left to the byte parser, for its precise error.
        match std::str::from_utf8(data) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(data),
        }
        .map_err(|e| Malformed::Envelope(e.to_string()))
    }

    /// Parses and validates the order payload.
    pub fn order(&self) -> Result<Order<'a>, Malformed> {
        let raw = self
            .payload
            .ok_or_else(|| Malformed::Payload("missing field `payload`".into()))?;
        let wire: WireOrder<'a> =
            serde_json::from_str(raw.get()).map_err(|e| Malformed::Payload(e.to_string()))?;
        Order::try_from(wire)
    }
}

#[derive(Deserialize)]
struct WireOrder<'a> {
    #[serde(rename = "orderId", borrow)]
    order_id: Cow<'a, str>,
    #[serde(rename = "userId", borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow)]
    items: Vec<WireItem<'a>>,
    #[serde(borrow)]
    total: &'a RawValue,
}

#[derive(Deserialize)]
struct WireItem<'a> {
    #[serde(rename = "productId", borrow)]
    product_id: Cow<'a, str>,
    quantity: u64,
}

/// A validated order.
#[derive(Debug, Clone, PartialEq)]
pub struct Order<'a> {
    /// The order's id.
    pub order_id: OrderId<'a>,
    /// The customer's id.
    pub user_id: Cow<'a, str>,
    /// Where the confirmation goes.
    pub email: Email<'a>,
    /// The ordered lines, as they came (a SKU may repeat).
    pub items: Vec<OrderLine<'a>>,
    /// The order total.
    pub total: Money<'a>,
}

impl<'a> TryFrom<WireOrder<'a>> for Order<'a> {
    type Error = Malformed;
    fn try_from(w: WireOrder<'a>) -> Result<Self, Malformed> {
        if w.user_id.trim().is_empty() {
            return Err(Malformed::Payload("userId is empty".into()));
        }
        if w.items.is_empty() {
            return Err(Malformed::Payload("items is empty".into()));
        }
        let items = w
            .items
            .into_iter()
            .map(|i| {
                Ok(OrderLine {
                    sku: Sku::parse(i.product_id)?,
                    quantity: Quantity::new(i.quantity)?,
                })
            })
            .collect::<Result<Vec<_>, Malformed>>()?;
        Ok(Order {
            order_id: OrderId::parse(w.order_id)?,
            user_id: w.user_id,
            email: Email::parse(w.email)?,
            items,
            total: Money::parse(w.total)?,
        })
    }
}

impl Order<'_> {
    /// The quantity per SKU, with repeated SKUs summed, in SKU order.
    pub fn quantities(&self) -> Result<BTreeMap<&str, Quantity>, Malformed> {
        let mut out: BTreeMap<&str, Quantity> = BTreeMap::new();
        for line in &self.items {
            let entry = out.entry(line.sku.as_str()).or_insert(Quantity(0));
            entry.0 = entry
                .0
                .checked_add(line.quantity.0)
                .filter(|q| *q <= Quantity::MAX)
                .ok_or_else(|| Malformed::Payload("quantity out of range".into()))?;
        }
        Ok(out)
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine<'a> {
    /// The product.
    pub sku: Sku<'a>,
    /// How many.
    pub quantity: Quantity,
}

macro_rules! non_empty_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name<'a>(Cow<'a, str>);

        impl<'a> $name<'a> {
            /// Validates: not blank, no control characters, not too long.
            pub fn parse(s: Cow<'a, str>) -> Result<Self, Malformed> {
                if s.trim().is_empty() {
                    return Err(Malformed::Payload(concat!($field, " is empty").into()));
                }
                if s.len() > $max || s.chars().any(char::is_control) {
                    return Err(Malformed::Payload(
                        concat!($field, " is too long or has control characters").into(),
                    ));
                }
                Ok(Self(s))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

non_empty_id!(
    /// An order id.
    OrderId,
    "orderId",
    256
);
non_empty_id!(
    /// A product id (stock keeping unit).
    Sku,
    "productId",
    256
);

/// A validated email address. Its `Debug` and `Display` never print it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Email<'a>(Cow<'a, str>);

impl<'a> Email<'a> {
    /// Validates the shape SES accepts: one `@`, a non-empty local part, a dotted domain, no spaces.
    pub fn parse(s: Cow<'a, str>) -> Result<Self, Malformed> {
        let bad = || Malformed::Payload("email is not a valid address".into());
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let valid = !local.is_empty()
            && local.len() <= 64
            && s.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(Email(s))
        } else {
            Err(bad())
        }
    }

    /// The address, for the one place that needs it: the send.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

/// A quantity of one product: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u64);

impl Quantity {
    /// The largest quantity we accept on one order line (DynamoDB numbers are exact to 38 digits,
    /// but an order of more than a million of one thing is a data error).
    pub const MAX: u64 = 1_000_000;

    /// Validates a quantity.
    pub fn new(q: u64) -> Result<Self, Malformed> {
        if (1..=Self::MAX).contains(&q) {
            Ok(Quantity(q))
        } else {
            Err(Malformed::Payload(format!(
                "quantity must be between 1 and {}",
                Self::MAX
            )))
        }
    }

    /// The quantity as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A non-negative amount, kept as the producer wrote it (producers send `"12.50"` or `12.5`), so it
/// is shown exactly and never rounded through a float.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money<'a>(Cow<'a, str>);

impl<'a> Money<'a> {
    /// Validates a JSON number, or a string holding a plain decimal number.
    pub fn parse(raw: &'a RawValue) -> Result<Self, Malformed> {
        let bad = || Malformed::Payload("total must be a non-negative decimal number".into());
        let text = raw.get();
        let text: Cow<'a, str> = if text.starts_with('"') {
            serde_json::from_str(text).map_err(|_| bad())?
        } else {
            Cow::Borrowed(text)
        };
        let (whole, frac) = text.split_once('.').unwrap_or((&text, "0"));
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if digits(whole) && digits(frac) {
            Ok(Money(text))
        } else {
            Err(bad())
        }
    }

    /// The amount as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
