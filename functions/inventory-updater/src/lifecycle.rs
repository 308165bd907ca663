//! An order's lifecycle in inventory: what each event does to an order, given what is recorded
//! for it. One pure decision ([`transition`]), which the DynamoDB store and the in-memory fake
//! both make, so that they cannot drift; and the one wording of why stock refuses an order
//! ([`shortage`]).
//!
//! | recorded | `ORDER_PLACED` / `ORDER_CREATED` | `ORDER_CANCELLED` |
//! |---|---|---|
//! | nothing | reserve every line (or reject: too many products, or the stock refuses) | a tombstone (`CANCELLED`) |
//! | `RESERVED` | already recorded | release the lines (`RELEASED`) |
//! | `REJECTED` | already recorded | nothing reserved |
//! | `RELEASED` | already recorded | already released |
//! | `CANCELLED` | rejected: cancelled before it was placed (`REJECTED`) | already released |
//!
//! An event applied before (its marker) changes nothing. The stores look for the marker where
//! they would write one: a placement always (its write carries the marker); a cancellation only
//! when the table says it changes something (the order is read first, and a cancellation that
//! changes nothing writes no marker).

use std::collections::BTreeMap;

use orders::Quantity;

/// Why a placement of an order that was cancelled first is rejected.
pub const CANCELLED_BEFORE_PLACED: &str = "cancelled before it was placed";

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
    /// The order was cancelled and its stock given back.
    Released,
    /// The order was cancelled before it was placed here: a tombstone, holding nothing.
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

/// An order's reservation as the inventory store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Where it stands.
    pub status: ReservationStatus,
    /// What is held, per SKU (empty when nothing is).
    pub lines: BTreeMap<String, u64>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The event that cancelled the order before it was placed (a tombstone's, or a rejection's
    /// that followed one).
    pub cancelled_by: Option<String>,
}

impl Reservation {
    /// A reservation of `status` holding nothing, with no reason.
    pub fn empty(status: ReservationStatus) -> Self {
        Self {
            status,
            lines: BTreeMap::new(),
            reason: None,
            cancelled_by: None,
        }
    }

    /// The order's stock held: every line (`RESERVED`).
    pub fn reserved(lines: &BTreeMap<&str, Quantity>) -> Self {
        Self {
            lines: lines
                .iter()
                .map(|(k, q)| ((*k).to_owned(), q.get()))
                .collect(),
            ..Self::empty(ReservationStatus::Reserved)
        }
    }

    /// The order refused, for `reason` (`REJECTED`).
    pub fn rejected(reason: &str) -> Self {
        Self {
            reason: Some(reason.to_owned()),
            ..Self::empty(ReservationStatus::Rejected)
        }
    }

    /// The order cancelled before it was placed, by the event of key `cancelled_by`
    /// (`CANCELLED`).
    pub fn tombstone(cancelled_by: &str) -> Self {
        Self {
            cancelled_by: Some(cancelled_by.to_owned()),
            ..Self::empty(ReservationStatus::Cancelled)
        }
    }
}

/// What happens to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `ORDER_PLACED` or `ORDER_CREATED`, of this many distinct products.
    Placed {
        /// How many distinct products the order holds.
        products: usize,
    },
    /// `ORDER_CANCELLED`.
    Cancelled,
}

/// What an event does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Nothing recorded: reserve every line, all or none (`RESERVED`), or record the rejection
    /// if the stock refuses ([`shortage`]).
    Reserve,
    /// Nothing recorded, and the order cannot be reserved whatever the stock: record the
    /// rejection (`REJECTED`), with this reason.
    Reject(String),
    /// The order's tombstone is there: the tombstone becomes the rejection, as
    /// [`CANCELLED_BEFORE_PLACED`], and no stock is taken.
    RejectCancelled,
    /// Nothing recorded: record the cancellation (`CANCELLED`), so that a placement arriving later
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
    /// A cancellation of an order that holds nothing (it was rejected).
    NothingReserved,
    /// A cancellation of an order already released, or cancelled before it was placed.
    AlreadyReleased,
}

/// What `event` does to an order of which `recorded` is recorded (`None`: nothing yet).
pub fn transition(recorded: Option<ReservationStatus>, event: &Event) -> Transition {
    use ReservationStatus::*;
    match (recorded, event) {
        (None, Event::Placed { products }) if *products > MAX_LINES => {
            Transition::Reject(format!("more than {MAX_LINES} distinct products"))
        }
        (None, Event::Placed { .. }) => Transition::Reserve,
        (Some(Cancelled), Event::Placed { .. }) => Transition::RejectCancelled,
        (Some(Reserved | Rejected | Released), Event::Placed { .. }) => {
            Transition::Unchanged(Unchanged::AlreadyRecorded)
        }
        (None, Event::Cancelled) => Transition::Tombstone,
        (Some(Reserved), Event::Cancelled) => Transition::Release,
        (Some(Rejected), Event::Cancelled) => Transition::Unchanged(Unchanged::NothingReserved),
        (Some(Released | Cancelled), Event::Cancelled) => {
            Transition::Unchanged(Unchanged::AlreadyReleased)
        }
    }
}

/// Why the stock refuses `wanted` of `sku`, of which `available` units are there (`None`: no such
/// product).
pub fn shortage(sku: &str, available: Option<u64>, wanted: u64) -> String {
    match available {
        Some(n) => format!("insufficient stock for {sku}: {n} available, {wanted} wanted"),
        None => format!("unknown product {sku}"),
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
        let reject = Transition::Reject("more than 98 distinct products".into());
        let rows: [(Option<ReservationStatus>, &Event, Transition); 15] = [
            (None, &placed, Transition::Reserve),
            (None, &too_many, reject),
            (None, &Event::Cancelled, Transition::Tombstone),
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
            (Some(Reserved), &Event::Cancelled, Transition::Release),
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
                &Event::Cancelled,
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
                &Event::Cancelled,
                Transition::Unchanged(Unchanged::AlreadyReleased),
            ),
            (Some(Cancelled), &placed, Transition::RejectCancelled),
            (Some(Cancelled), &too_many, Transition::RejectCancelled),
            (
                Some(Cancelled),
                &Event::Cancelled,
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
        assert_eq!(
            shortage("sku-a", Some(1), 3),
            "insufficient stock for sku-a: 1 available, 3 wanted"
        );
        assert_eq!(shortage("sku-x", None, 1), "unknown product sku-x");
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
