//! The order event: the envelope every producer writes, and the order payload.
//!
//! Parsing borrows from the decoded record data, so a record's strings are not copied unless they
//! contain JSON escapes. The payload stays raw JSON until a rule asks for the order, and then it is
//! validated into domain types that the rest of the code trusts.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::json::{key_is, Cursor};

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
            n if key_is(n, "ORDER_PLACED") => EventType::OrderPlaced,
            n if key_is(n, "ORDER_CREATED") => EventType::OrderCreated,
            n if key_is(n, "ORDER_CANCELLED") => EventType::OrderCancelled,
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

/// A JSON value kept as its text, borrowed (what `serde_json`'s `RawValue` holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    /// The value's JSON text.
    pub fn get(&self) -> &'a str {
        self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(deserializer).map(|raw| RawJson(raw.get()))
    }
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
    pub timestamp: Option<RawJson<'a>>,
    /// The payload, left raw until a rule asks for it.
    #[serde(default, borrow)]
    pub payload: Option<RawJson<'a>>,
    /// The payload as a valid order, when the fast reader read it on the way (so it is not read
    /// twice).
    #[serde(skip)]
    read_order: ReadOrder<'a>,
}

/// An order the fast reader read with its envelope. Its `Debug` shows nothing of it.
#[derive(Clone, Default)]
struct ReadOrder<'a>(Option<Order<'a>>);

impl fmt::Debug for ReadOrder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ReadOrder(..)"
        } else {
            "ReadOrder(None)"
        })
    }
}

impl<'a> Envelope<'a> {
    /// Parses the envelope from a record's decoded data.
    ///
    /// The common case (an object without escapes in its strings) is read by the fast reader of
    /// [`crate::json`]; anything else by `serde_json`, which gives the same envelope or the error.
    pub fn parse(data: &'a [u8]) -> Result<Envelope<'a>, Malformed> {
        // UTF-8 checked once for the whole record, not again for every string and raw value;
        // data that is not UTF-8 is left to the byte parser, for its precise error.
        match std::str::from_utf8(data) {
            Ok(text) => Self::parse_str(text),
            Err(_) => serde_json::from_slice(data).map_err(Self::malformed),
        }
    }

    /// [`Envelope::parse`], for data known to be UTF-8.
    pub fn parse_str(text: &'a str) -> Result<Envelope<'a>, Malformed> {
        match scan_envelope(text) {
            Some(envelope) => Ok(envelope),
            None => serde_json::from_str(text).map_err(Self::malformed),
        }
    }

    fn malformed(e: serde_json::Error) -> Malformed {
        Malformed::Envelope(e.to_string())
    }

    /// The event's type, when `wanted` does not hold for it; `None` when it does, or when the
    /// envelope cannot be read (parse it with [`Envelope::parse`], which gives it or the error).
    ///
    /// Producers write `eventType` before the payload, so for an event type the function does not
    /// handle, the rest of the record is never read: such a record is skipped, not checked (a
    /// function that wants the type checks it). When the type comes after the payload, or the
    /// fast reader cannot read the envelope up to its type, it is parsed whole first.
    pub fn unwanted_type(data: &'a [u8], wanted: impl Fn(&str) -> bool) -> Option<Cow<'a, str>> {
        match std::str::from_utf8(data) {
            Ok(text) => Self::unwanted_type_str(text, wanted),
            Err(_) => Self::parse(data).ok()?.unwanted(wanted),
        }
    }

    /// [`Envelope::unwanted_type`], for data known to be UTF-8.
    pub fn unwanted_type_str(text: &'a str, wanted: impl Fn(&str) -> bool) -> Option<Cow<'a, str>> {
        let first = leading_type(text).or_else(|| {
            let mut first = None;
            scan_envelope_until(text, |t| {
                first = Some(t);
                true
            });
            first
        });
        match first {
            Some(t) => (!wanted(t)).then_some(Cow::Borrowed(t)),
            None => Self::parse_str(text).ok()?.unwanted(wanted),
        }
    }

    fn unwanted(self, wanted: impl Fn(&str) -> bool) -> Option<Cow<'a, str>> {
        (!wanted(&self.event_type)).then_some(self.event_type)
    }

    /// Parses and validates the order payload. (The order the fast reader may have read with the
    /// envelope is handed over, hence `&mut`; a second call parses the payload again.)
    pub fn order(&mut self) -> Result<Order<'a>, Malformed> {
        if let Some(order) = self.read_order.0.take() {
            return Ok(order);
        }
        let raw = self
            .payload
            .ok_or_else(|| Malformed::Payload("missing field `payload`".into()))?
            .get();
        if let Some(order) = scan_order(raw) {
            return Ok(order);
        }
        let wire: WireOrder<'_> =
            serde_json::from_str(raw).map_err(|e| Malformed::Payload(e.to_string()))?;
        Order::try_from(&wire)
    }
}

/// Sets `slot` once; a repeated field is left to `serde_json`, which rejects it.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// A value that is `null` or kept as text, as `Option<&RawValue>` reads it.
fn nullable_raw<'a>(c: &mut Cursor<'a>) -> Option<Option<RawJson<'a>>> {
    let raw = c.raw()?;
    Some((raw != "null").then_some(RawJson(raw)))
}

/// The type of an envelope that starts as our producers write it, `{"eventId":"…","eventType":"…"`:
/// the type [`scan_envelope_until`] reads first, found with two comparisons instead of reading
/// keys. `None` for any other start (spacing, order, escapes): the cursor reads those.
fn leading_type(text: &str) -> Option<&str> {
    produced_start(text).map(|(_, _, event_type)| event_type)
}

/// The start our producers write, `{"eventId":"…","eventType":"…"`: the cursor after it, the id
/// and the type.
#[inline(always)]
fn produced_start(text: &str) -> Option<(Cursor<'_>, &str, &str)> {
    let mut c = Cursor::new(text);
    c.eat_exact(r#"{"eventId":"#)?;
    let event_id = c.str()?;
    c.eat_exact(r#","eventType":"#)?;
    let event_type = c.str()?;
    Some((c, event_id, event_type))
}

/// The envelope's fast case: as the derived `Deserialize` reads it, or `None`.
fn scan_envelope(text: &str) -> Option<Envelope<'_>> {
    scan_envelope_as_produced(text).or_else(|| scan_envelope_until(text, |_| false))
}

/// [`scan_envelope`] of an envelope written as our producers write it (the order of
/// [`Envelope`]'s fields, no spaces): each key is compared where the producer puts it instead of
/// being read and looked up, and each value read by the same code as in [`scan_envelope_until`].
/// `None` at the first difference, or when the payload is not an order the fast reader takes.
fn scan_envelope_as_produced(text: &str) -> Option<Envelope<'_>> {
    let (mut c, event_id, event_type) = produced_start(text)?;
    c.eat_exact(r#","timestamp":"#)?;
    let timestamp = nullable_raw(&mut c)?;
    c.eat_exact(r#","payload":"#)?;
    let start = c.mark();
    let order = read_order(&mut c)?;
    let payload = RawJson(c.text_from(start)?);
    c.eat_exact("}")?;
    c.at_end().then_some(())?;
    Some(Envelope {
        event_id: Some(Cow::Borrowed(event_id)),
        event_type: Cow::Borrowed(event_type),
        timestamp,
        payload: Some(payload),
        read_order: ReadOrder(Some(order)),
    })
}

/// [`scan_envelope`], which gives up as soon as it reads an event type that `stop` holds for.
fn scan_envelope_until<'a>(
    text: &'a str,
    mut stop: impl FnMut(&'a str) -> bool,
) -> Option<Envelope<'a>> {
    let mut c = Cursor::new(text);
    let (mut id, mut ty, mut ts, mut payload) = (None, None, None, None);
    let mut order = None;
    c.members(|c, key| match key {
        k if key_is(k, "eventId") => {
            let v = match c.peek()? {
                b'"' => Some(Cow::Borrowed(c.str()?)),
                // `null` is "no id", as for `Option`; any other value is left to serde_json.
                _ => {
                    c.raw().filter(|raw| *raw == "null")?;
                    None
                }
            };
            once(&mut id, v)
        }
        k if key_is(k, "eventType") => {
            let t = c.str()?;
            if ty.is_some() || stop(t) {
                return None;
            }
            once(&mut ty, Cow::Borrowed(t))
        }
        k if key_is(k, "timestamp") => once(&mut ts, nullable_raw(c)?),
        k if key_is(k, "payload") => {
            // Read as an order on the way when it is one; else skipped, as any value.
            let start = c.mark();
            let mut probe = c.clone();
            let raw = match read_order(&mut probe) {
                Some(read) => {
                    *c = probe;
                    order = Some(read);
                    Some(RawJson(c.text_from(start)?))
                }
                None => nullable_raw(c)?,
            };
            once(&mut payload, raw)
        }
        _ => c.skip_value(),
    })?;
    c.at_end().then_some(())?;
    Some(Envelope {
        event_id: id.flatten(),
        event_type: ty?,
        timestamp: ts.flatten(),
        payload: payload.flatten(),
        read_order: ReadOrder(order),
    })
}

/// The order's fast case: the order `serde_json` and [`Order::try_from`] read, or `None` when the
/// payload is not the fast case or not a valid order (the slow path then says why).
fn scan_order(text: &str) -> Option<Order<'_>> {
    let mut c = Cursor::new(text);
    let order = read_order(&mut c)?;
    c.at_end().then_some(order)
}

/// [`scan_order`] of the value at the cursor: the lines are validated as they are read.
fn read_order<'a>(c: &mut Cursor<'a>) -> Option<Order<'a>> {
    let start = c.mark();
    if let Some(order) = read_order_as_produced(c) {
        return Some(order);
    }
    c.rewind(start);
    read_order_by_keys(c)
}

/// [`read_order`], each key read and looked up: any order of fields, any spacing.
fn read_order_by_keys<'a>(c: &mut Cursor<'a>) -> Option<Order<'a>> {
    let (mut order_id, mut user_id, mut email, mut items, mut total) =
        (None, None, None, None, None);
    c.members(|c, key| match key {
        k if key_is(k, "orderId") => once(&mut order_id, Cow::Borrowed(c.str()?)),
        k if key_is(k, "userId") => once(&mut user_id, Cow::Borrowed(c.str()?)),
        k if key_is(k, "email") => once(&mut email, Cow::Borrowed(c.str()?)),
        k if key_is(k, "total") => once(&mut total, RawJson(c.raw()?)),
        k if key_is(k, "items") => {
            let mut lines = Vec::with_capacity(2);
            c.elements(|c| {
                let (mut product_id, mut quantity) = (None, None);
                c.members(|c, key| match key {
                    k if key_is(k, "productId") => once(&mut product_id, Cow::Borrowed(c.str()?)),
                    k if key_is(k, "quantity") => once(&mut quantity, c.u64()?),
                    _ => c.skip_value(),
                })?;
                lines.push(order_line(product_id?, quantity?)?);
                Some(())
            })?;
            once(&mut items, lines)
        }
        _ => c.skip_value(),
    })?;
    finish_order(order_id?, user_id?, email?, items?, total?)
}

/// [`read_order`] of an order written as our producers write it (the payload's fields in their
/// documented order, no spaces), each key compared where the producer puts it; `None` at the
/// first difference (the caller then reads it key by key) or when it is not a valid order.
fn read_order_as_produced<'a>(c: &mut Cursor<'a>) -> Option<Order<'a>> {
    c.eat_exact(r#"{"orderId":"#)?;
    let order_id = c.str()?;
    c.eat_exact(r#","userId":"#)?;
    let user_id = c.str()?;
    c.eat_exact(r#","email":"#)?;
    let email = c.str()?;
    c.eat_exact(r#","items":["#)?;
    let mut lines = Vec::with_capacity(2);
    loop {
        c.eat_exact(r#"{"productId":"#)?;
        let product_id = c.str()?;
        c.eat_exact(r#","quantity":"#)?;
        let quantity = c.u64()?;
        c.eat_exact("}")?;
        lines.push(order_line(Cow::Borrowed(product_id), quantity)?);
        if c.eat_exact(",").is_none() {
            break;
        }
    }
    c.eat_exact(r#"],"total":"#)?;
    let total = RawJson(c.raw()?);
    c.eat_exact("}")?;
    finish_order(
        Cow::Borrowed(order_id),
        Cow::Borrowed(user_id),
        Cow::Borrowed(email),
        lines,
        total,
    )
}

/// One validated line, or `None`.
fn order_line(product_id: Cow<'_, str>, quantity: u64) -> Option<OrderLine<'_>> {
    Some(OrderLine {
        sku: Sku::parse(product_id).ok()?,
        quantity: Quantity::new(quantity).ok()?,
    })
}

/// The order from its read fields, with the checks `Order::try_from` makes, or `None`.
fn finish_order<'a>(
    order_id: Cow<'a, str>,
    user_id: Cow<'a, str>,
    email: Cow<'a, str>,
    items: Vec<OrderLine<'a>>,
    total: RawJson<'a>,
) -> Option<Order<'a>> {
    // The checks `Order::try_from` makes before the lines, in its order.
    if classify(&user_id).blank || items.is_empty() {
        return None;
    }
    Order::assemble(order_id, user_id, email, items, total).ok()
}

#[derive(Clone, Deserialize)]
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
    total: RawJson<'a>,
}

#[derive(Clone, Deserialize)]
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

impl<'a> TryFrom<&WireOrder<'a>> for Order<'a> {
    type Error = Malformed;
    fn try_from(w: &WireOrder<'a>) -> Result<Self, Malformed> {
        if classify(&w.user_id).blank {
            return Err(Malformed::Payload("userId is empty".into()));
        }
        if w.items.is_empty() {
            return Err(Malformed::Payload("items is empty".into()));
        }
        let items = w
            .items
            .iter()
            .map(|i| {
                Ok(OrderLine {
                    sku: Sku::parse(i.product_id.clone())?,
                    quantity: Quantity::new(i.quantity)?,
                })
            })
            .collect::<Result<Vec<_>, Malformed>>()?;
        Order::assemble(
            w.order_id.clone(),
            w.user_id.clone(),
            w.email.clone(),
            items,
            w.total,
        )
    }
}

impl<'a> Order<'a> {
    /// The order from its checked lines and its other fields, checked here.
    fn assemble(
        order_id: Cow<'a, str>,
        user_id: Cow<'a, str>,
        email: Cow<'a, str>,
        items: Vec<OrderLine<'a>>,
        total: RawJson<'a>,
    ) -> Result<Self, Malformed> {
        Ok(Order {
            order_id: OrderId::parse(order_id)?,
            user_id,
            email: Email::parse(email)?,
            items,
            total: Money::parse(total)?,
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

/// What the validations ask of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TextClass {
    /// Empty or only whitespace (as `str::trim` sees it).
    blank: bool,
    /// Holds a control character (as `char::is_control`).
    control: bool,
    /// Holds whitespace or a control character.
    space_or_control: bool,
}

/// Classifies `s`: ASCII text eight bytes at a time, any other char by char.
fn classify(s: &str) -> TextClass {
    use crate::json::{any_high, bytes_below, bytes_equal};
    let bytes = s.as_bytes();
    let (mut high, mut control, mut space) = (false, 0, 0);
    let mut word = |w: u64| {
        high |= any_high(w);
        control |= bytes_below(w, 0x20) | bytes_equal(w, 0x7f);
        space |= bytes_equal(w, b' ');
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        word(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
    }
    if !chunks.remainder().is_empty() {
        match bytes.last_chunk::<8>() {
            // The last eight bytes, overlapping the ones seen: a flag counts once however often
            // its byte is seen.
            Some(last) => word(u64::from_le_bytes(*last)),
            None => {
                // Shorter than eight: padded with a letter, which is none of the above.
                let mut last = [b'a'; 8];
                last[..bytes.len()].copy_from_slice(bytes);
                word(u64::from_le_bytes(last));
            }
        }
    }
    if !high {
        // ASCII whitespace is \t..\r, which are controls, and the space.
        return TextClass {
            blank: bytes.iter().all(|&b| matches!(b, b'\t'..=b'\r' | b' ')),
            control: control != 0,
            space_or_control: control | space != 0,
        };
    }
    TextClass {
        blank: s.trim().is_empty(),
        control: s.chars().any(char::is_control),
        space_or_control: s.chars().any(|c| c.is_whitespace() || c.is_control()),
    }
}

macro_rules! non_empty_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name<'a>(Cow<'a, str>);

        impl<'a> $name<'a> {
            /// Validates: not blank, no control characters, not too long.
            pub fn parse(s: Cow<'a, str>) -> Result<Self, Malformed> {
                let class = classify(&s);
                if class.blank {
                    return Err(Malformed::Payload(concat!($field, " is empty").into()));
                }
                if s.len() > $max || class.control {
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
        let at = s.bytes().position(|b| b == b'@').ok_or_else(bad)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        let valid = !local.is_empty()
            && local.len() <= 64
            && s.len() <= 254
            && !domain.bytes().any(|b| b == b'@')
            && domain.bytes().any(|b| b == b'.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !classify(&s).space_or_control;
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
    pub fn parse(raw: RawJson<'a>) -> Result<Self, Malformed> {
        let bad = || Malformed::Payload("total must be a non-negative decimal number".into());
        let text = raw.get();
        // A string is taken as it is written when it has no escape (the raw text is valid JSON,
        // so its quotes are the string's); only an escaped one is unescaped by serde_json.
        let text: Cow<'a, str> = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
            Some(_) => serde_json::from_str(text).map_err(|_| bad())?,
            None => Cow::Borrowed(text),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Fields<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Option<&'a str>);

    fn fields<'a>(e: &'a Envelope<'_>) -> Fields<'a> {
        (
            e.event_id.as_deref(),
            &e.event_type,
            e.timestamp.map(|r| r.get()),
            e.payload.map(|r| r.get()),
        )
    }

    fn by_serde_order(text: &str) -> Result<Order<'_>, Malformed> {
        let wire: WireOrder<'_> =
            serde_json::from_str(text).map_err(|e| Malformed::Payload(e.to_string()))?;
        Order::try_from(&wire)
    }

    /// Whatever the fast readers take, serde_json reads the same; they take the plain cases.
    fn agree(text: &str) -> Result<(), TestCaseError> {
        let serde: Result<Envelope<'_>, _> = serde_json::from_str(text);
        if let Some(fast) = scan_envelope(text) {
            let serde = serde
                .as_ref()
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(fields(&fast), fields(serde));
            // The order it may have read on the way is the order serde_json reads.
            if let Some(payload) = fast.payload {
                let mut fast = fast;
                prop_assert_eq!(fast.order(), by_serde_order(payload.get()));
            }
        }
        // The first pass's decision: an unwanted type is the type serde_json reads; a record that
        // serde_json cannot read may be skipped only for an unwanted type.
        let wanted = |t: &str| t == "ORDER_PLACED";
        let unwanted = Envelope::unwanted_type_str(text, wanted);
        match &serde {
            Ok(e) => prop_assert_eq!(
                unwanted.as_deref(),
                (!wanted(&e.event_type)).then_some(&*e.event_type)
            ),
            Err(_) => prop_assert!(unwanted.as_deref().is_none_or(|t| !wanted(t))),
        }
        if let Ok(envelope) = serde {
            if let Some(payload) = envelope.payload {
                if let Some(fast) = scan_order(payload.get()) {
                    prop_assert_eq!(Ok(fast), by_serde_order(payload.get()));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_fast_readers_take_the_producers_shape() {
        let text = r#"{"eventId":"e-1","eventType":"ORDER_PLACED","timestamp":"2026-11-21T10:00:00Z","payload":{"orderId":"o-1","userId":"u-1","email":"a@b.co","items":[{"productId":"sku-1","quantity":2},{"productId":"sku-2","quantity":1}],"total":"12.50"}}"#;
        let envelope = scan_envelope(text).unwrap();
        assert_eq!(
            fields(&envelope),
            fields(&serde_json::from_str(text).unwrap())
        );
        let payload = envelope.payload.unwrap().get();
        let order = scan_order(payload).unwrap();
        assert_eq!(order, by_serde_order(payload).unwrap());
    }

    #[test]
    fn odd_envelopes_agree_with_serde() {
        for text in [
            r#"{"eventType":"X"}"#,
            r#"{"eventType":"X","eventId":null,"timestamp":null,"payload":null}"#,
            r#"{"eventType":"X","eventType":"Y"}"#,
            r#"{"eventId":"a","eventId":"b","eventType":"X"}"#,
            r#"{"eventType":"X","payload":{"orderId":"o","userId":"u","email":"a@b.c","items":[{"productId":"p","quantity":1}],"total":1,"total":2}}"#,
            r#"{"eventType":"X","payload":{"orderId":"o","userId":"u","email":"a@b.c","items":[{"productId":"p","quantity":1.0}],"total":1}}"#,
            r#"{"eventType":"X","payload":{"orderId":"o","userId":"u","email":"a@b.c","items":[{"productId":"p"}],"total":1}}"#,
            r#"{"eventType":"X","payload":{"orderId":"o","userId":"u","email":"a@b.c","items":[],"total":"1.5"}}"#,
            r#"{"eventType":"X","payload":{"orderId":"o","userId":"u","email":"a@b.c","items":[{"productId":"p","quantity":3,"x":[1]}],"total":"1.5","extra":{}}}"#,
            r#"{"eventType":7}"#,
            r#"["id","X",null,null]"#,
            r#"{"eventType":"\u0058"}"#,
            r#"{"eventType":"X"} x"#,
        ] {
            agree(text).unwrap();
        }
    }

    proptest! {
        /// The one-pass classification answers as the char-wise checks it stands for.
        #[test]
        fn text_checks_agree_with_char_checks(s in "[ \t\n\u{b}\u{c}\r\u{1}\u{7f}\u{85}\u{a0}\u{2003}a-c@.é]{0,8}|[ \t\u{1}\u{7f}\u{85}a-z@.]{0,24}") {
            let class = classify(&s);
            prop_assert_eq!(class.blank, s.trim().is_empty());
            prop_assert_eq!(class.control, s.chars().any(char::is_control));
            prop_assert_eq!(
                class.space_or_control,
                s.chars().any(|c| c.is_whitespace() || c.is_control())
            );
        }
    }

    #[test]
    fn money_is_taken_as_written() {
        let money = |raw: &'static str| Money::parse(RawJson(raw)).map(|m| m.as_str().to_owned());
        assert_eq!(money(r#""12.50""#).unwrap(), "12.50");
        assert_eq!(money("12.5").unwrap(), "12.5");
        assert_eq!(money(r#""1\u0032.5""#).unwrap(), "12.5");
        for bad in [r#""12a""#, r#""-1""#, r#""""#, "-1", r#""1.2.3""#] {
            assert!(money(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unwanted_types_are_read_no_further_than_their_type() {
        let only_placed = |t: &str| t == "ORDER_PLACED";
        let unwanted = |text: &'static str| Envelope::unwanted_type(text.as_bytes(), only_placed);
        // The type comes first: what follows is not read, even when it is broken.
        assert_eq!(
            unwanted(r#"{"eventId":"e","eventType":"PAYMENT_CAPTURED","payload":{"orderId":"#)
                .as_deref(),
            Some("PAYMENT_CAPTURED")
        );
        // The type after the payload, or escaped: parsed whole first.
        for text in [
            r#"{"payload":{"orderId":"o"},"eventType":"ORDER_CANCELLED"}"#,
            r#"{"eventType":"ORDER_CANCELLED"}"#,
        ] {
            assert_eq!(unwanted(text).as_deref(), Some("ORDER_CANCELLED"), "{text}");
        }
        // Broken before its type: left to the whole parse, which names the fault.
        let broken = r#"{"payload":{"orderId":,"eventType":"ORDER_CANCELLED"}"#;
        assert_eq!(unwanted(broken), None);
        assert!(matches!(
            Envelope::parse(broken.as_bytes()),
            Err(Malformed::Envelope(_))
        ));
        // A wanted type is left to the whole parse, which checks it whole.
        for text in [
            r#"{"eventType":"ORDER_PLACED","eventId":"e","payload":{"orderId":"o"}}"#,
            r#"{"eventType":"ORDER_PLACED","payload":{"orderId":"#,
            r#"{"eventType":"ORDER_PLACED","eventType":"ORDER_PLACED"}"#,
            r#"{"eventType":"ORDER_PLACED","eventType":"PAYMENT_CAPTURED"}"#,
        ] {
            assert_eq!(unwanted(text), None, "{text}");
        }
        assert!(Envelope::parse(br#"{"eventType":"ORDER_PLACED","payload":{"orderId":"#).is_err());
        // Not UTF-8: read whole by the byte parser (which skips the unknown field's bytes).
        assert_eq!(
            Envelope::unwanted_type(b"{\"eventType\":\"X\",\"n\":\"\xff\"}", only_placed)
                .as_deref(),
            Some("X")
        );
        assert_eq!(
            Envelope::unwanted_type(
                b"{\"eventType\":\"ORDER_PLACED\",\"n\":\"\xff\"}",
                only_placed
            ),
            None
        );
    }

    #[test]
    fn the_producers_layout_gives_the_type_the_cursor_reads_first() {
        let first = |text: &str| {
            let mut first = None;
            scan_envelope_until(text, |t| {
                first = Some(t.to_owned());
                true
            });
            first
        };
        for text in [
            r#"{"eventId":"e-1","eventType":"ORDER_PLACED","payload":{}}"#,
            r#"{"eventId":"e-1","eventType":"ORDER_PLACED""#,
            r#"{"eventId":"","eventType":""}"#,
            r#"{"eventId": "e-1","eventType":"X"}"#,
        ] {
            assert_eq!(leading_type(text).map(str::to_owned), first(text), "{text}");
            assert!(leading_type(text).is_some(), "{text}");
        }
        // Any other start is left to the cursor.
        for text in [
            r#"{"eventId":"e\"1","eventType":"X"}"#,
            r#"{"eventId":null,"eventType":"X"}"#,
            r#"{"eventId":"e", "eventType":"X"}"#,
            r#"{"eventType":"X","eventId":"e"}"#,
            r#"{"eventId":"e","eventType":"X\u0041"}"#,
            r#" {"eventId":"e","eventType":"X"}"#,
        ] {
            assert_eq!(leading_type(text), None, "{text}");
        }
    }

    /// A field's JSON text: mostly `valid`, sometimes one of `odd`.
    fn field(valid: &'static str, odd: &[&'static str]) -> impl Strategy<Value = &'static str> {
        prop_oneof![4 => Just(valid), 1 => prop::sample::select(odd.to_vec())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Envelopes and orders in our producers' layout, with any values, sometimes spaced or
        /// reordered: the layout readers answer what the key-by-key readers answer, whenever they
        /// answer.
        #[test]
        fn the_layout_readers_agree_with_the_key_readers(
            values in (
                (
                    field(r#""e-1""#, &["null", r#""x\"y""#, r#""""#]),
                    field(r#""ORDER_PLACED""#, &[r#""PAYMENT""#, r#""x\"y""#, "7"]),
                    field(r#""2026-11-21""#, &["null", "7", r#""\u0041""#]),
                    field(r#""o-1""#, &[r#"" ""#, r#""""#, "7"]),
                    field(r#""u-1""#, &[r#"" ""#, r#""u\"1""#, "null"]),
                ),
                (
                    field(r#""a@b.co""#, &[r#""a@b""#, r#""a b@c.d""#, r#""""#]),
                    field(r#""s-1""#, &[r#""""#, "7", r#""s\u0031""#]),
                    field("3", &["0", "12.5", "1000000", "1000001", "-3"]),
                    field(r#""9.99""#, &["12.5", r#""-1""#, "null", "0"]),
                    field(r#""s-2""#, &[r#"" ""#, "[]"]),
                ),
            ),
            lines in 0..3usize,
            spaced in any::<bool>(),
            swapped in any::<bool>(),
        ) {
            let ((id, ty, ts, order_id, user_id), (email, sku, quantity, total, sku2)) = values;
            let mut items: Vec<String> = (0..lines)
                .map(|i| format!(r#"{{"productId":{},"quantity":{quantity}}}"#, if i == 0 { sku } else { sku2 }))
                .collect();
            if swapped {
                items.push(format!(r#"{{"quantity":{quantity},"productId":{sku}}}"#));
            }
            let payload = format!(
                r#"{{"orderId":{order_id},"userId":{user_id},"email":{email},"items":[{}],"total":{total}}}"#,
                items.join(",")
            );
            let mut text = format!(r#"{{"eventId":{id},"eventType":{ty},"timestamp":{ts},"payload":{payload}}}"#);
            if spaced {
                text = text.replacen(",", ", ", 1);
            }
            if let Some(fast) = scan_envelope_as_produced(&text) {
                let by_keys = scan_envelope_until(&text, |_| false);
                prop_assert!(by_keys.is_some(), "{}", text);
                let (mut fast, mut by_keys) = (fast, by_keys.unwrap());
                prop_assert_eq!(fields(&fast), fields(&by_keys));
                prop_assert_eq!(fast.order(), by_keys.order());
            }
            let (mut a, mut b) = (Cursor::new(&payload), Cursor::new(&payload));
            if let Some(fast) = read_order_as_produced(&mut a) {
                prop_assert_eq!(Some(fast), read_order_by_keys(&mut b), "{}", payload);
                prop_assert_eq!(a.position(), b.position());
            }
            agree(&text)?;
        }
    }

    #[test]
    fn the_producers_layout_is_read_by_the_layout_readers() {
        let text = r#"{"eventId":"e-1","eventType":"ORDER_PLACED","timestamp":"2026-11-21T10:00:00Z","payload":{"orderId":"o-1","userId":"u-1","email":"a@b.co","items":[{"productId":"sku-1","quantity":2},{"productId":"sku-2","quantity":1}],"total":"12.50"}}"#;
        let mut envelope = scan_envelope_as_produced(text).expect("the producers' layout");
        let order = envelope.order().unwrap();
        assert_eq!(order.items.len(), 2);
        assert_eq!(order.total.as_str(), "12.50");
    }

    proptest! {
        /// Envelopes of arbitrary field values: the fast readers agree with serde_json.
        #[test]
        fn fast_and_serde_agree(
            fields in prop::collection::vec(
                (
                    prop_oneof![
                        Just("eventId"), Just("eventType"), Just("timestamp"), Just("payload"),
                        Just("orderId"), Just("userId"), Just("email"), Just("items"),
                        Just("total"), Just("productId"), Just("quantity"), Just("other")
                    ],
                    prop_oneof![
                        Just(r#""ORDER_PLACED""#.to_owned()),
                        Just("null".to_owned()),
                        Just(r#""a@b.co""#.to_owned()),
                        Just(r#""x\"y""#.to_owned()),
                        Just("12.5".to_owned()),
                        Just("3".to_owned()),
                        Just("-3".to_owned()),
                        Just(r#"[{"productId":"p","quantity":2}]"#.to_owned()),
                        Just(r#"[{"productId":"p","quantity":2,"productId":"q"}]"#.to_owned()),
                        Just(r#"{"orderId":"o","userId":"u","email":"a@b.c","items":[{"productId":"p","quantity":1}],"total":"9.99"}"#.to_owned()),
                        Just(r#"{"orderId":"o","userId":" ","email":"a@b.c","items":[{"productId":"p","quantity":1}],"total":9}"#.to_owned()),
                        "[a-z ]{0,6}".prop_map(|s| format!("\"{s}\"")),
                    ],
                ),
                0..7,
            )
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let text = format!("{{{}}}", body.join(","));
            agree(&text)?;
            // After an id, as our producers write it (the type, when it comes next, is found
            // without reading keys).
            agree(&format!(r#"{{"eventId":"e",{}}}"#, body.join(",")))?;
            // The same fields as a payload, inside a valid envelope.
            agree(&format!(r#"{{"eventType":"ORDER_PLACED","payload":{text}}}"#))?;
        }
    }
}
