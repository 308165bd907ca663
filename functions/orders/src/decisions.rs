//! What inventory decided about an order, as inventory-updater publishes it on the order stream:
//! `INVENTORY_RESERVED`, `INVENTORY_REJECTED` and `INVENTORY_RELEASED`, each with an
//! [`InventoryDecision`] for payload, under the partition key `orderId`.
//!
//! A decision carries what its readers need, so that none of them looks anything up: the order,
//! its customer and contact address (when the placement had one), its lines and total, and, for a
//! rejection or a release, why. Its envelope's `eventId` is derived from the event that caused it
//! and the step, so a retry publishes the same id and every reader drops the copy;
//! `causationId` names the causing event.

use serde::{Deserialize, Serialize};

/// `INVENTORY_RESERVED`: every line of the order is held.
pub const INVENTORY_RESERVED: &str = "INVENTORY_RESERVED";
/// `INVENTORY_REJECTED`: the order cannot be reserved; nothing is held.
pub const INVENTORY_REJECTED: &str = "INVENTORY_REJECTED";
/// `INVENTORY_RELEASED`: what the order held was given back (it was cancelled, or its payment
/// failed).
pub const INVENTORY_RELEASED: &str = "INVENTORY_RELEASED";

/// Why inventory rejected or released an order, for a program (the `reason` says it for a
/// person).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    /// A product has too few units.
    OutOfStock,
    /// A product is not in the catalogue.
    UnknownProduct,
    /// More distinct products than one order can hold.
    TooManyProducts,
    /// The customer cancelled the order (before it was placed, for a rejection).
    Cancelled,
    /// The order's payment failed (before it was placed, for a rejection).
    PaymentFailed,
}

impl ReasonCode {
    /// The wire name (`OUT_OF_STOCK`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::OutOfStock => "OUT_OF_STOCK",
            ReasonCode::UnknownProduct => "UNKNOWN_PRODUCT",
            ReasonCode::TooManyProducts => "TOO_MANY_PRODUCTS",
            ReasonCode::Cancelled => "CANCELLED",
            ReasonCode::PaymentFailed => "PAYMENT_FAILED",
        }
    }

    /// Reads a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        use ReasonCode::*;
        [
            OutOfStock,
            UnknownProduct,
            TooManyProducts,
            Cancelled,
            PaymentFailed,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// One line of a decision: a product and how many units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionLine {
    /// The product.
    pub product_id: String,
    /// How many units.
    pub quantity: u64,
}

/// The payload of `INVENTORY_RESERVED`, `INVENTORY_REJECTED` and `INVENTORY_RELEASED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryDecision {
    /// The order.
    pub order_id: String,
    /// The customer, when the placement named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Where the customer hears of it, when the placement had an address (the article's
    /// `ORDER_CREATED` has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The lines: those reserved or released; of a rejection, those asked for.
    pub items: Vec<DecisionLine>,
    /// The order's total as the placement wrote it, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// Why it was rejected or released, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it was rejected or released, as a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<ReasonCode>,
    /// The id of the event that caused the decision (its idempotency key).
    pub causation_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip() {
        for code in [
            ReasonCode::OutOfStock,
            ReasonCode::UnknownProduct,
            ReasonCode::TooManyProducts,
            ReasonCode::Cancelled,
            ReasonCode::PaymentFailed,
        ] {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ReasonCode::parse("nope"), None);
    }

    #[test]
    fn a_decision_on_the_wire() {
        let d = InventoryDecision {
            order_id: "o-1".into(),
            user_id: None,
            email: None,
            items: vec![DecisionLine {
                product_id: "p".into(),
                quantity: 2,
            }],
            total: Some("9.50".into()),
            reason: Some("insufficient stock".into()),
            reason_code: Some(ReasonCode::OutOfStock),
            causation_id: "evt-1".into(),
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"orderId": "o-1", "items": [{"productId": "p", "quantity": 2}],
                "total": "9.50", "reason": "insufficient stock", "reasonCode": "OUT_OF_STOCK",
                "causationId": "evt-1"})
        );
        assert_eq!(serde_json::from_value::<InventoryDecision>(v).unwrap(), d);
    }
}
