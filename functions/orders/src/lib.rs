//! The order contract: the names of the order events every producer and consumer of the stream
//! shares, and the values an order payload is made of, each checking itself as it is read.
//!
//! The engine (`shared`) knows none of this. Each function derives its own payload for each event
//! type it handles from these values (`#[derive(Deserialize)]`), so it validates exactly what its
//! rule uses, and a value that is wrong names its field.
//!
//! What producers write is accepted where it means the same thing: ids as strings (or integers),
//! quantities as integers or integral floats (`2.0`), money as a JSON number or a decimal string.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `ORDER_PLACED`: a customer placed an order.
pub const ORDER_PLACED: &str = "ORDER_PLACED";
/// `ORDER_CREATED`: an order was created by another channel.
pub const ORDER_CREATED: &str = "ORDER_CREATED";
/// `ORDER_CANCELLED`: an order was cancelled.
pub const ORDER_CANCELLED: &str = "ORDER_CANCELLED";
/// `PAYMENT_CAPTURED`: the payment of an order was taken.
pub const PAYMENT_CAPTURED: &str = "PAYMENT_CAPTURED";
/// `PAYMENT_FAILED`: the payment of an order failed; the saga gives its stock back.
pub const PAYMENT_FAILED: &str = "PAYMENT_FAILED";

pub mod decisions;
pub use decisions::{
    DecisionLine, InventoryDecision, ReasonCode, INVENTORY_REJECTED, INVENTORY_RELEASED,
    INVENTORY_RESERVED,
};

/// Text as the producer wrote it, borrowed from the record's data unless it had escapes. An
/// integer is taken as its decimal text (some producers write numeric ids).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }
        }
        deserializer.deserialize_any(V).map(Text)
    }
}

/// Whether a char of `s` is one `test` holds for; ASCII text (the common case) is tested a byte at
/// a time, without decoding UTF-8 (an ASCII byte is its char).
fn any_char(s: &str, test: impl Fn(char) -> bool) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| test(char::from(b)))
    } else {
        s.chars().any(test)
    }
}

/// A value that is text checked by `parse`, as it is deserialised.
macro_rules! deserialize_via_parse {
    ($name:ident) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let Text(text) = Text::deserialize(deserializer)?;
                $name::parse(text).map_err(de::Error::custom)
            }
        }
    };
}

macro_rules! non_empty_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub struct $name<'a>(Cow<'a, str>);

        impl<'a> $name<'a> {
            /// Validates: not blank, no control characters, at most 256 bytes.
            pub fn parse(s: Cow<'a, str>) -> Result<Self, String> {
                if s.trim().is_empty() {
                    return Err(concat!($field, " is empty").into());
                }
                if s.len() > 256 || any_char(&s, char::is_control) {
                    return Err(concat!($field, " is too long or has control characters").into());
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

        deserialize_via_parse!($name);
    };
}

non_empty_id!(
    /// An order id.
    OrderId,
    "orderId"
);
non_empty_id!(
    /// A customer id.
    UserId,
    "userId"
);
non_empty_id!(
    /// A product id (stock keeping unit).
    Sku,
    "productId"
);

/// A validated email address. Its `Debug` never prints it, so it cannot leak into logs.
///
/// It serialises as the address only so that a payload holding it can be hashed (the engine's
/// payload validation).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Email<'a>(Cow<'a, str>);

impl<'a> Email<'a> {
    /// Validates the shape SES accepts: one `@`, a non-empty local part, a dotted domain, no spaces.
    pub fn parse(s: Cow<'a, str>) -> Result<Self, String> {
        // `@` and `.` are ASCII: found as bytes, they are the chars.
        let bytes = s.as_bytes();
        let valid = match bytes.iter().position(|&b| b == b'@') {
            Some(at) => {
                let (local, domain) = (&bytes[..at], &bytes[at + 1..]);
                !local.is_empty()
                    && local.len() <= 64
                    && bytes.len() <= 254
                    && !domain.contains(&b'@')
                    && domain.contains(&b'.')
                    && domain.first() != Some(&b'.')
                    && domain.last() != Some(&b'.')
                    && !any_char(&s, |c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if valid {
            Ok(Email(s))
        } else {
            Err("email is not a valid address".into())
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

deserialize_via_parse!(Email);

/// A quantity of one product: a whole number from 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Quantity(u64);

impl Quantity {
    /// The largest quantity we accept on one order line (DynamoDB numbers are exact to 38 digits,
    /// but an order of more than a million of one thing is a data error).
    pub const MAX: u64 = 1_000_000;

    /// Validates a quantity.
    pub fn new(q: u64) -> Result<Self, String> {
        if (1..=Self::MAX).contains(&q) {
            Ok(Quantity(q))
        } else {
            Err(Self::refused(q))
        }
    }

    /// Why `value` is not a quantity.
    fn refused(value: impl fmt::Display) -> String {
        format!(
            "quantity {value} is not a whole number from 1 to {}",
            Self::MAX
        )
    }

    /// The quantity as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// An integer, or a float with no fractional part (`2.0`, as a Python producer that computes
    /// quantities as floats writes them); `2.5` is refused.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number from 1 to {}", Quantity::MAX)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Quantity::new(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                match u64::try_from(v) {
                    Ok(v) => Quantity::new(v).map_err(E::custom),
                    Err(_) => Err(E::custom(Quantity::refused(v))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if v.fract() == 0.0 && (1.0..=Quantity::MAX as f64).contains(&v) {
                    Ok(Quantity(v as u64))
                } else {
                    Err(E::custom(Quantity::refused(v)))
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OrderLine<'a> {
    /// The product.
    #[serde(rename = "productId", borrow)]
    pub sku: Sku<'a>,
    /// How many.
    pub quantity: Quantity,
}

/// An order's lines: at least one, as they came (a SKU may repeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLines<'a>(Vec<OrderLine<'a>>);

impl<'a> OrderLines<'a> {
    /// Validates: at least one line.
    pub fn new(lines: Vec<OrderLine<'a>>) -> Result<Self, String> {
        if lines.is_empty() {
            Err("items is empty".into())
        } else {
            Ok(Self(lines))
        }
    }

    /// The lines, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, OrderLine<'a>> {
        self.0.iter()
    }

    /// The quantity per SKU, with repeated SKUs summed, in SKU order.
    pub fn quantities(&self) -> Result<BTreeMap<&str, Quantity>, String> {
        let mut out: BTreeMap<&str, Quantity> = BTreeMap::new();
        for line in &self.0 {
            let entry = out.entry(line.sku.as_str()).or_insert(Quantity(0));
            entry.0 = entry
                .0
                .checked_add(line.quantity.0)
                .filter(|q| *q <= Quantity::MAX)
                .ok_or_else(|| format!("quantity of {} out of range", line.sku))?;
        }
        Ok(out)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for OrderLines<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        OrderLines::new(Vec::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// A non-negative amount, kept as the producer wrote it (producers send `"12.50"` or `12.5`), so it
/// is shown exactly and never rounded through a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money<'a>(Cow<'a, str>);

impl<'a> Money<'a> {
    /// Validates a plain decimal number: digits, optionally a point and more digits.
    pub fn parse(text: Cow<'a, str>) -> Result<Self, String> {
        let (whole, frac) = text.split_once('.').unwrap_or((&text, "0"));
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if digits(whole) && digits(frac) {
            Ok(Money(text))
        } else {
            Err("total must be a non-negative decimal number".into())
        }
    }

    /// The amount as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Money<'a> {
    /// A JSON number, as its text (so `12.50` stays `12.50`), or a string holding one.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?.get();
        let text = match raw.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            // A string without escapes is its own content; an escaped one is unescaped.
            Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
            Some(_) => Cow::Owned(serde_json::from_str(raw).map_err(de::Error::custom)?),
            None => Cow::Borrowed(raw),
        };
        Money::parse(text).map_err(de::Error::custom)
    }
}

/// A whole order, as a placement carries it: every field, each checking itself.
#[derive(Debug, Deserialize, Serialize)]
pub struct PlacedOrder<'a> {
    /// The order.
    #[serde(rename = "orderId", borrow)]
    pub order_id: OrderId<'a>,
    /// The customer.
    #[serde(rename = "userId", borrow)]
    pub user_id: UserId<'a>,
    /// Where a confirmation goes.
    #[serde(borrow)]
    pub email: Email<'a>,
    /// The ordered lines.
    #[serde(borrow)]
    pub items: OrderLines<'a>,
    /// The order total, as the producer wrote it.
    #[serde(borrow)]
    pub total: Money<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        items: OrderLines<'a>,
        #[serde(borrow)]
        total: Money<'a>,
    }

    fn read(text: &str) -> Result<Line<'_>, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn quantities_may_be_integral_floats() {
        let line = read(r#"{"items":[{"productId":"p","quantity":2.0}],"total":1}"#).unwrap();
        assert_eq!(line.items.iter().next().unwrap().quantity.get(), 2);
        for bad in ["2.5", "0", "-1", "1000001", "1e7", "\"2\"", "null"] {
            let text = format!(r#"{{"items":[{{"productId":"p","quantity":{bad}}}],"total":1}}"#);
            let err = read(&text).unwrap_err();
            assert!(
                err.contains("quantity") || err.contains("whole number"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn money_is_taken_as_written() {
        let total = |raw: &str| {
            read(&format!(
                r#"{{"items":[{{"productId":"p","quantity":1}}],"total":{raw}}}"#
            ))
            .map(|l| l.total.as_str().to_owned())
        };
        assert_eq!(total(r#""12.50""#).unwrap(), "12.50");
        assert_eq!(total("12.50").unwrap(), "12.50");
        assert_eq!(total(r#""1\u0032.5""#).unwrap(), "12.5");
        for bad in [
            r#""12a""#,
            r#""-1""#,
            r#""""#,
            "-1",
            r#""1.2.3""#,
            "1e3",
            "null",
        ] {
            assert!(total(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_are_not_empty_and_sum_per_sku() {
        assert!(read(r#"{"items":[],"total":1}"#)
            .unwrap_err()
            .contains("items is empty"));
        let line = read(
            r#"{"items":[{"productId":"a","quantity":2},{"productId":"b","quantity":1},{"productId":"a","quantity":3}],"total":1}"#,
        )
        .unwrap();
        let q = line.items.quantities().unwrap();
        assert_eq!(q["a"].get(), 5);
        assert_eq!(q["b"].get(), 1);
        let too_many = read(
            r#"{"items":[{"productId":"a","quantity":1000000},{"productId":"a","quantity":1}],"total":1}"#,
        )
        .unwrap();
        assert!(too_many.items.quantities().is_err());
    }

    #[test]
    fn ids_and_addresses_check_themselves() {
        fn id(s: &str) -> Result<OrderId<'_>, String> {
            OrderId::parse(Cow::Borrowed(s))
        }
        assert!(id("o-1").is_ok());
        assert_eq!(id(" ").unwrap_err(), "orderId is empty");
        assert!(id("a\u{1}b").is_err());
        assert!(id(&"x".repeat(257)).is_err());
        let email = |s: &str| Email::parse(Cow::Borrowed(s)).is_ok();
        assert!(email("ada@example.com"));
        for bad in [
            "", "ada", "@x.co", "a@b", "a@.co", "a@co.", "a b@c.co", "a@b@c.co",
        ] {
            assert!(!email(bad), "{bad}");
        }
        assert_eq!(
            format!("{:?}", Email::parse(Cow::Borrowed("a@b.co")).unwrap()),
            "Email(<redacted>)"
        );
        // Numeric ids are taken as their text; other types are refused.
        let o: OrderId<'_> = serde_json::from_str("1001").unwrap();
        assert_eq!(o.as_str(), "1001");
        assert!(serde_json::from_str::<OrderId<'_>>("true").is_err());
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let o: OrderId<'_> = serde_json::from_str(r#""o-1""#).unwrap();
        assert!(matches!(o.0, Cow::Borrowed(_)));
        let o: OrderId<'_> = serde_json::from_str(r#""o\u002d1""#).unwrap();
        assert_eq!(o.as_str(), "o-1");
    }

    /// A whole order as producers write it reads; each value that is wrong names its field.
    #[test]
    fn a_placed_order_checks_every_field() {
        let good = serde_json::json!({
            "orderId": "o-1", "userId": "u-1", "email": "user-1@example.com",
            "items": [{"productId": "sku-apple", "quantity": 2}, {"productId": "sku-pear", "quantity": 1}],
            "total": "12.50", "coupon": "SAVE10"
        });
        let text = good.to_string();
        let order: PlacedOrder<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(order.order_id.as_str(), "o-1");
        assert_eq!(order.email.as_str(), "user-1@example.com");
        assert_eq!(order.total.as_str(), "12.50");
        assert_eq!(order.items.quantities().unwrap()["sku-apple"].get(), 2);
        assert!(!format!("{order:?}").contains("user-1@example.com"));

        let wrong = |mutate: &dyn Fn(&mut serde_json::Value)| {
            let mut order = good.clone();
            mutate(&mut order);
            serde_json::from_str::<PlacedOrder<'_>>(&order.to_string())
                .unwrap_err()
                .to_string()
        };
        assert!(wrong(&|o| o["email"] = "nobody".into()).contains("email"));
        assert!(wrong(&|o| o["email"] = "a b@example.com".into()).contains("email"));
        assert!(wrong(&|o| o["items"] = serde_json::json!([])).contains("items"));
        assert!(wrong(&|o| o["items"][0]["quantity"] = 0.into()).contains("quantity"));
        assert!(wrong(&|o| o["items"][0]["quantity"] = (-1).into()).contains("-1"));
        assert!(wrong(&|o| o["items"][0]["productId"] = "".into()).contains("productId"));
        assert!(wrong(&|o| o["orderId"] = " ".into()).contains("orderId"));
        assert!(wrong(&|o| o["total"] = "-3".into()).contains("total"));
        assert!(wrong(&|o| o["total"] = "abc".into()).contains("total"));
        assert!(wrong(&|o| o.as_object_mut().unwrap().clear()).contains("missing field"));
        let mut number = good.clone();
        number["total"] = serde_json::json!(12.5);
        let text = number.to_string();
        let order: PlacedOrder<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(order.total.as_str(), "12.5", "kept as written");
    }
}
