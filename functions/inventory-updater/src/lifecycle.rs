//! An order's lifecycle in inventory: what each event does to an order, given what is recorded
//! for it. One pure decision ([`transition`]), which the DynamoDB store and the in-memory fake
//! both make, so that they cannot drift; and the one wording of why stock refuses an order
//! ([`shortage`]).
//!
//! An order ends ([`Ending`]) when it is cancelled (`ORDER_CANCELLED`) or its payment fails
//! (`PAYMENT_FAILED`, the saga's compensation): both give its stock back.
//!
//! | recorded | `ORDER_PLACED` / `ORDER_CREATED` | `ORDER_CANCELLED` / `PAYMENT_FAILED` |
//! |---|---|---|
//! | nothing | reserve every line (or reject: too many products, or the stock refuses) | a tombstone (`CANCELLED`), with why it ended |
//! | `RESERVED` | already recorded | release the lines (`RELEASED`) |
//! | `REJECTED` | already recorded | nothing reserved |
//! | `RELEASED` | already recorded | already released |
//! | `CANCELLED` | rejected: it ended before it was placed (`REJECTED`) | already released |
//!
//! An event applied before (its marker) changes nothing. The stores look for the marker where
//! they would write one: a placement always (its write carries the marker); an ending only
//! when the table says it changes something (the order is read first, and an ending that
//! changes nothing writes no marker).
//!
//! Each record says which event decided it (`placed_by`, `released_by`), so that the retry of an
//! event whose decision is recorded but not yet published learns what it decided, and publishes
//! it (see [`crate::saga`]).

use std::collections::BTreeMap;

use orders::{Quantity, ReasonCode};

/// Why a placement of an order that was cancelled first is rejected.
pub const CANCELLED_BEFORE_PLACED: &str = "cancelled before it was placed";

/// Why a placement of an order whose payment failed first is rejected.
pub const PAYMENT_FAILED_BEFORE_PLACED: &str = "payment failed before it was placed";

/// The largest number of products in one order: a DynamoDB transaction holds at most 100 actions,
/// and two are the order's own item and the idempotency marker.
pub const MAX_LINES: usize = 98;

/// Where an order's reservation stands, as the inventory store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Stock is held for the order.
    Reserved,
    /// The order could not be reserved; nothing is held.
    Rejected,
    /// The order ended and its stock was given back.
    Released,
    /// The order ended before it was placed here: a tombstone, holding nothing.
    Cancelled,
}

impl ReservationStatus {
    /// Every status.
    pub const ALL: [ReservationStatus; 4] = [
        ReservationStatus::Reserved,
        ReservationStatus::Rejected,
        ReservationStatus::Released,
        ReservationStatus::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "RESERVED",
            ReservationStatus::Rejected => "REJECTED",
            ReservationStatus::Released => "RELEASED",
            ReservationStatus::Cancelled => "CANCELLED",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// Why an order ends, giving its stock back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `ORDER_CANCELLED`: the customer cancelled it.
    Cancelled,
    /// `PAYMENT_FAILED`: its payment failed (the saga's compensation).
    PaymentFailed,
}

impl Ending {
    /// Its reason code, as a decision carries it.
    pub fn code(self) -> ReasonCode {
        match self {
            Ending::Cancelled => ReasonCode::Cancelled,
            Ending::PaymentFailed => ReasonCode::PaymentFailed,
        }
    }

    /// The ending a reason code stands for, if it is one.
    pub fn of_code(code: ReasonCode) -> Option<Self> {
        match code {
            ReasonCode::Cancelled => Some(Ending::Cancelled),
            ReasonCode::PaymentFailed => Some(Ending::PaymentFailed),
            _ => None,
        }
    }

    /// Why it ended, in words.
    pub fn reason(self) -> &'static str {
        match self {
            Ending::Cancelled => "the order was cancelled",
            Ending::PaymentFailed => "the payment failed",
        }
    }

    /// Why a placement arriving after it is rejected.
    pub fn before_placed(self) -> Rejection {
        Rejection {
            reason: match self {
                Ending::Cancelled => CANCELLED_BEFORE_PLACED,
                Ending::PaymentFailed => PAYMENT_FAILED_BEFORE_PLACED,
            }
            .to_owned(),
            code: self.code(),
        }
    }
}

/// Why an order was rejected: in words, and as a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// In words.
    pub reason: String,
    /// As a code.
    pub code: ReasonCode,
}

/// Who ordered, as the placement said (each part only when it said it): what a release's decision
/// carries, kept with the reservation because the ending event does not say it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customer {
    /// `userId`.
    pub user_id: Option<String>,
    /// `email`, as written (the reader that sends to it checks it).
    pub email: Option<String>,
    /// `total`, as written.
    pub total: Option<String>,
}

/// An order's reservation as the inventory store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Where it stands.
    pub status: ReservationStatus,
    /// What is held, per SKU (empty when nothing is); after a release, what was held.
    pub lines: BTreeMap<String, u64>,
    /// Why it was rejected, or (with `code`) why it ended.
    pub reason: Option<String>,
    /// Why it was rejected or why it ended, as a code.
    pub code: Option<ReasonCode>,
    /// The event that ended the order before it was placed (a tombstone's, or a rejection's
    /// that followed one).
    pub cancelled_by: Option<String>,
    /// The event that decided the placement (reserved or rejected).
    pub placed_by: Option<String>,
    /// The event that released the order.
    pub released_by: Option<String>,
    /// Who ordered: kept with a reservation, for its release.
    pub customer: Customer,
}

impl Reservation {
    /// A reservation of `status` holding nothing, with no reason.
    pub fn empty(status: ReservationStatus) -> Self {
        Self {
            status,
            lines: BTreeMap::new(),
            reason: None,
            code: None,
            cancelled_by: None,
            placed_by: None,
            released_by: None,
            customer: Customer::default(),
        }
    }

    /// The order's stock held: every line (`RESERVED`), by the event of key `placed_by`.
    pub fn reserved(
        lines: &BTreeMap<&str, Quantity>,
        customer: &Customer,
        placed_by: &str,
    ) -> Self {
        Self {
            lines: lines
                .iter()
                .map(|(k, q)| ((*k).to_owned(), q.get()))
                .collect(),
            placed_by: Some(placed_by.to_owned()),
            customer: customer.clone(),
            ..Self::empty(ReservationStatus::Reserved)
        }
    }

    /// The order refused (`REJECTED`), by the event of key `placed_by`.
    pub fn rejected(rejection: &Rejection, placed_by: &str) -> Self {
        Self {
            reason: Some(rejection.reason.clone()),
            code: Some(rejection.code),
            placed_by: Some(placed_by.to_owned()),
            ..Self::empty(ReservationStatus::Rejected)
        }
    }

    /// The order ended before it was placed, by the event of key `cancelled_by` (`CANCELLED`).
    pub fn tombstone(cancelled_by: &str, ending: Ending) -> Self {
        Self {
            cancelled_by: Some(cancelled_by.to_owned()),
            reason: Some(ending.reason().to_owned()),
            code: Some(ending.code()),
            ..Self::empty(ReservationStatus::Cancelled)
        }
    }

    /// Why the order ended, for a tombstone or a release (a record of before payments could end
    /// an order: cancelled).
    pub fn ending(&self) -> Ending {
        self.code
            .and_then(Ending::of_code)
            .unwrap_or(Ending::Cancelled)
    }

    /// What the placement of event `key` decided, if that event decided it.
    pub fn placement_by(&self, key: &str) -> Option<Decided> {
        if self.placed_by.as_deref() != Some(key) {
            return None;
        }
        match self.status {
            ReservationStatus::Rejected => Some(Decided::Rejected(Rejection {
                reason: self.reason.clone().unwrap_or_default(),
                code: self.code.unwrap_or(ReasonCode::OutOfStock),
            })),
            // Reserved, or reserved and released since.
            _ => Some(Decided::Reserved),
        }
    }

    /// Whether the event of key `key` released the order.
    pub fn released_by(&self, key: &str) -> bool {
        self.status == ReservationStatus::Released && self.released_by.as_deref() == Some(key)
    }
}

/// What a placement decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Every line held.
    Reserved,
    /// Refused.
    Rejected(Rejection),
}

/// What happens to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `ORDER_PLACED` or `ORDER_CREATED`, of this many distinct products.
    Placed {
        /// How many distinct products the order holds.
        products: usize,
    },
    /// `ORDER_CANCELLED` or `PAYMENT_FAILED`.
    Ended(Ending),
}

/// What an event does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Nothing recorded: reserve every line, all or none (`RESERVED`), or record the rejection
    /// if the stock refuses ([`shortage`]).
    Reserve,
    /// Nothing recorded, and the order cannot be reserved whatever the stock: record the
    /// rejection (`REJECTED`).
    Reject(Rejection),
    /// The order's tombstone is there: the tombstone becomes the rejection
    /// ([`Ending::before_placed`]), and no stock is taken.
    RejectEnded,
    /// Nothing recorded: record the ending (`CANCELLED`), so that a placement arriving later
    /// takes no stock.
    Tombstone,
    /// The order holds stock: give it back (`RELEASED`).
    Release,
    /// Nothing changes.
    Unchanged(Unchanged),
}

/// Why nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    /// A placement of an order already recorded (reserved, rejected or released).
    AlreadyRecorded,
    /// An ending of an order that holds nothing (it was rejected).
    NothingReserved,
    /// An ending of an order already released, or ended before it was placed.
    AlreadyReleased,
}

/// What `event` does to an order of which `recorded` is recorded (`None`: nothing yet).
pub fn transition(recorded: Option<ReservationStatus>, event: &Event) -> Transition {
    use ReservationStatus::*;
    match (recorded, event) {
        (None, Event::Placed { products }) if *products > MAX_LINES => {
            Transition::Reject(Rejection {
                reason: format!("more than {MAX_LINES} distinct products"),
                code: ReasonCode::TooManyProducts,
            })
        }
        (None, Event::Placed { .. }) => Transition::Reserve,
        (Some(Cancelled), Event::Placed { .. }) => Transition::RejectEnded,
        (Some(Reserved | Rejected | Released), Event::Placed { .. }) => {
            Transition::Unchanged(Unchanged::AlreadyRecorded)
        }
        (None, Event::Ended(_)) => Transition::Tombstone,
        (Some(Reserved), Event::Ended(_)) => Transition::Release,
        (Some(Rejected), Event::Ended(_)) => Transition::Unchanged(Unchanged::NothingReserved),
        (Some(Released | Cancelled), Event::Ended(_)) => {
            Transition::Unchanged(Unchanged::AlreadyReleased)
        }
    }
}

/// Why the stock refuses `wanted` of `sku`, of which `available` units are there (`None`: no such
/// product).
pub fn shortage(sku: &str, available: Option<u64>, wanted: u64) -> Rejection {
    match available {
        Some(n) => Rejection {
            reason: format!("insufficient stock for {sku}: {n} available, {wanted} wanted"),
            code: ReasonCode::OutOfStock,
        },
        None => Rejection {
            reason: format!("unknown product {sku}"),
            code: ReasonCode::UnknownProduct,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table: every event in every state.
    #[test]
    fn every_event_in_every_state() {
        use ReservationStatus::*;
        let placed = Event::Placed { products: 2 };
        let too_many = Event::Placed {
            products: MAX_LINES + 1,
        };
        let reject = Transition::Reject(Rejection {
            reason: "more than 98 distinct products".into(),
            code: ReasonCode::TooManyProducts,
        });
        let cancelled = Event::Ended(Ending::Cancelled);
        let payment_failed = Event::Ended(Ending::PaymentFailed);
        let rows: [(Option<ReservationStatus>, &Event, Transition); 20] = [
            (None, &placed, Transition::Reserve),
            (None, &too_many, reject),
            (None, &cancelled, Transition::Tombstone),
            (None, &payment_failed, Transition::Tombstone),
            (
                Some(Reserved),
                &placed,
                Transition::Unchanged(Unchanged::AlreadyRecorded),
            ),
            (
                Some(Reserved),
                &too_many,
                Transition::Unchanged(Unchanged::AlreadyRecorded),
            ),
            (Some(Reserved), &cancelled, Transition::Release),
            (Some(Reserved), &payment_failed, Transition::Release),
            (
                Some(Rejected),
                &placed,
                Transition::Unchanged(Unchanged::AlreadyRecorded),
            ),
            (
                Some(Rejected),
                &too_many,
                Transition::Unchanged(Unchanged::AlreadyRecorded),
            ),
            (
                Some(Rejected),
                &cancelled,
                Transition::Unchanged(Unchanged::NothingReserved),
            ),
            (
                Some(Rejected),
                &payment_failed,
                Transition::Unchanged(Unchanged::NothingReserved),
            ),
            (
                Some(Released),
                &placed,
                Transition::Unchanged(Unchanged::AlreadyRecorded),
            ),
            (
                Some(Released),
                &too_many,
                Transition::Unchanged(Unchanged::AlreadyRecorded),
            ),
            (
                Some(Released),
                &cancelled,
                Transition::Unchanged(Unchanged::AlreadyReleased),
            ),
            (
                Some(Released),
                &payment_failed,
                Transition::Unchanged(Unchanged::AlreadyReleased),
            ),
            (Some(Cancelled), &placed, Transition::RejectEnded),
            (Some(Cancelled), &too_many, Transition::RejectEnded),
            (
                Some(Cancelled),
                &cancelled,
                Transition::Unchanged(Unchanged::AlreadyReleased),
            ),
            (
                Some(Cancelled),
                &payment_failed,
                Transition::Unchanged(Unchanged::AlreadyReleased),
            ),
        ];
        for (recorded, event, expected) in rows {
            assert_eq!(
                transition(recorded, event),
                expected,
                "{recorded:?}, {event:?}"
            );
        }
        assert_eq!(
            transition(
                None,
                &Event::Placed {
                    products: MAX_LINES
                }
            ),
            Transition::Reserve
        );
    }

    /// The stock's refusal names the product, and what there was against what was wanted.
    #[test]
    fn shortages() {
        let short = shortage("sku-a", Some(1), 3);
        assert_eq!(
            short.reason,
            "insufficient stock for sku-a: 1 available, 3 wanted"
        );
        assert_eq!(short.code, ReasonCode::OutOfStock);
        let unknown = shortage("sku-x", None, 1);
        assert_eq!(unknown.reason, "unknown product sku-x");
        assert_eq!(unknown.code, ReasonCode::UnknownProduct);
    }

    /// A record tells the event that decided it: its placement, or its release.
    #[test]
    fn who_decided() {
        let lines: BTreeMap<&str, Quantity> = [("p", Quantity::new(2).unwrap())].into();
        let mut r = Reservation::reserved(&lines, &Customer::default(), "e-1");
        assert_eq!(r.placement_by("e-1"), Some(Decided::Reserved));
        assert_eq!(r.placement_by("e-2"), None);
        assert!(!r.released_by("e-2"));
        r.status = ReservationStatus::Released;
        r.released_by = Some("e-2".into());
        assert!(r.released_by("e-2"));
        assert_eq!(r.placement_by("e-1"), Some(Decided::Reserved));
        let refused = shortage("p", Some(0), 1);
        let r = Reservation::rejected(&refused, "e-3");
        assert_eq!(r.placement_by("e-3"), Some(Decided::Rejected(refused)));
        let t = Reservation::tombstone("e-4", Ending::PaymentFailed);
        assert_eq!(t.ending(), Ending::PaymentFailed);
        assert_eq!(t.placement_by("e-4"), None);
        assert_eq!(
            Ending::PaymentFailed.before_placed().reason,
            PAYMENT_FAILED_BEFORE_PLACED
        );
    }

    /// Every status reads back from its stored name.
    #[test]
    fn statuses_round_trip() {
        for status in ReservationStatus::ALL {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ReservationStatus::parse("reserved"), None);
    }
}
