//! An order's status as the read side keeps it: what each event says about its order (a
//! [`Fact`]), and how the facts seen make one [`OrderState`], whatever order they came in. One
//! pure rule, which the DynamoDB store (as conditions) and the in-memory fake (as code) both
//! apply, so that they cannot drift.
//!
//! ## The status is the highest one seen
//!
//! Each event type stands for a status, and each status has a rank:
//!
//! | rank | status | events |
//! |---|---|---|
//! | 1 | `PLACED` | `ORDER_PLACED`, `ORDER_CREATED` |
//! | 2 | `RESERVED` | `INVENTORY_RESERVED` |
//! | 3 | `PAID` | `PAYMENT_CAPTURED` |
//! | 4 | `PAYMENT_FAILED` | `PAYMENT_FAILED`; `INVENTORY_RELEASED` with `reasonCode` `PAYMENT_FAILED` |
//! | 5 | `CANCELLED` | `ORDER_CANCELLED`; `INVENTORY_RELEASED` with any other `reasonCode`, or none |
//! | 6 | `REJECTED` | `INVENTORY_REJECTED` |
//!
//! An order's status is the highest-ranked one among the events seen for it. The events of one
//! order do not arrive in the order they happened: a placement and inventory's decision about it
//! may ride different shards, and Lambda delivers a record again after a failure. So the status
//! must follow from the *set* of events seen, not from their sequence. The highest rank does:
//! `max` is
//!
//! - **commutative** (`max(a, b) = max(b, a)`): two events give the same status in either order;
//! - **associative** (`max(max(a, b), c) = max(a, max(b, c))`): so, with commutativity, any
//!   arrival order of any number of events gives the same status, whatever the shards interleave;
//! - **idempotent** (`max(a, a) = a`): an event seen twice (a redelivery, a replay) changes
//!   nothing the second time.
//!
//! These three make the statuses with `max` a join-semilattice: the status after any sequence of
//! events is the join of the set of them, so it is the same for every permutation of the events
//! and every duplication of them. The ranks are also the saga's story read forwards: an order
//! moves on from placed, to reserved, to paid, unless it fails, is cancelled or is rejected,
//! which end it; a late or repeated event of an earlier step never moves it back.
//!
//! ## The reason goes with the status
//!
//! A refusal carries its reason in words (`INVENTORY_REJECTED`, `INVENTORY_RELEASED`,
//! `PAYMENT_FAILED`). What is compared is the [`Claim`]: the status and that reason, ordered by
//! rank first, then by reason (none before any, then the text byte by byte, as DynamoDB compares
//! strings). The claim with the highest rank wins and brings its reason, or no reason (a
//! cancellation without one clears that of a payment failure it overtakes); of two claims of the
//! same rank, the one with a reason beats the one without, and between two reasons the greater
//! text wins. That is a total order, so its `max` is again commutative, associative and
//! idempotent: the reason follows from the set of events too.
//!
//! ## The details: the placement's, else the first seen
//!
//! The lines, the total and the customer ([`Details`]) are the same in every event of an order
//! that carries them: inventory's decisions copy the placement's lines and total, payments its
//! total. They are not compared but taken: a placement (`ORDER_PLACED`, `ORDER_CREATED`) writes
//! its own over whatever is there ([`Precedence::Placement`]), any other event only fills what is
//! still missing ([`Precedence::Fill`]). When the sources agree, as the contract says they do,
//! any order of the events gives the same details. If they ever disagree, the placement's win
//! whenever the placement was seen; between two other events the first applied wins, which a
//! rebuild need not repeat. Lines are kept one per product, summed, in product order (however
//! the event listed them), so that two events listing the same lines differently agree.
//!
//! ## The history
//!
//! Every event seen is kept once, under its id ([`HistoryEntry`]): a set, which any order of
//! delivery fills the same. It is shown sorted by time (as the producer wrote it), then event id.

use std::cmp::Ordering;

use orders::ReasonCode;
use serde::{Deserialize, Serialize};

/// Where an order stands, in rank order (each later one outranks the earlier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Placed or created; nothing decided yet (rank 1).
    Placed,
    /// Its stock is held (rank 2).
    Reserved,
    /// Its payment was taken (rank 3).
    Paid,
    /// Its payment failed; its stock is given back (rank 4).
    PaymentFailed,
    /// It was cancelled (rank 5).
    Cancelled,
    /// Inventory refused it (rank 6).
    Rejected,
}

impl Status {
    /// Every status, by rank.
    pub const ALL: [Status; 6] = [
        Status::Placed,
        Status::Reserved,
        Status::Paid,
        Status::PaymentFailed,
        Status::Cancelled,
        Status::Rejected,
    ];

    /// Its rank: 1 (`PLACED`) to 6 (`REJECTED`).
    pub fn rank(self) -> u8 {
        match self {
            Status::Placed => 1,
            Status::Reserved => 2,
            Status::Paid => 3,
            Status::PaymentFailed => 4,
            Status::Cancelled => 5,
            Status::Rejected => 6,
        }
    }

    /// The stored and shown name (`PLACED`, ..., `PAYMENT_FAILED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Placed => "PLACED",
            Status::Reserved => "RESERVED",
            Status::Paid => "PAID",
            Status::PaymentFailed => "PAYMENT_FAILED",
            Status::Cancelled => "CANCELLED",
            Status::Rejected => "REJECTED",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// What an event says happened to its order, as far as its status goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `ORDER_PLACED` or `ORDER_CREATED`.
    Placed,
    /// `ORDER_CANCELLED`.
    Cancelled,
    /// `INVENTORY_RESERVED`.
    Reserved,
    /// `INVENTORY_REJECTED`.
    Rejected,
    /// `INVENTORY_RELEASED`, with its `reasonCode` if it had one.
    Released(Option<ReasonCode>),
    /// `PAYMENT_CAPTURED`.
    Captured,
    /// `PAYMENT_FAILED`.
    PaymentFailed,
}

impl EventKind {
    /// The status it stands for (the table in this module's documentation).
    pub fn status(self) -> Status {
        match self {
            EventKind::Placed => Status::Placed,
            EventKind::Reserved => Status::Reserved,
            EventKind::Captured => Status::Paid,
            EventKind::PaymentFailed | EventKind::Released(Some(ReasonCode::PaymentFailed)) => {
                Status::PaymentFailed
            }
            EventKind::Cancelled | EventKind::Released(_) => Status::Cancelled,
            EventKind::Rejected => Status::Rejected,
        }
    }

    /// Whether its reason, if it has one, is kept with its status: a refusal's (inventory's
    /// rejection or release, a failed payment).
    pub fn keeps_reason(self) -> bool {
        matches!(
            self,
            EventKind::Rejected | EventKind::Released(_) | EventKind::PaymentFailed
        )
    }

    /// How its details are taken: a placement's over what is there, any other's where nothing is.
    pub fn precedence(self) -> Precedence {
        match self {
            EventKind::Placed => Precedence::Placement,
            _ => Precedence::Fill,
        }
    }
}

/// A status with the reason it came with: what events compare to decide an order's status.
///
/// Ordered by rank, then by reason (none first, then the text byte by byte): the greatest claim
/// seen is the order's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    /// The status.
    pub status: Status,
    /// Why, for a refusal that said.
    pub reason: Option<String>,
}

impl Claim {
    /// Whether this claim takes the place of `recorded` (none: nothing is recorded yet).
    pub fn wins_over(&self, recorded: Option<&Claim>) -> bool {
        recorded.is_none_or(|old| self > old)
    }
}

/// One line of an order: a product and how many units.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// The product.
    pub product_id: String,
    /// How many units.
    pub quantity: u64,
}

/// What an event may say of its order besides its status: each `None` when it did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Details {
    /// The lines, one per product, in product order.
    pub lines: Option<Vec<Line>>,
    /// The total, as the producer wrote it.
    pub total: Option<String>,
    /// The customer.
    pub user_id: Option<String>,
}

impl Details {
    /// Whether it says nothing.
    pub fn is_empty(&self) -> bool {
        self.lines.is_none() && self.total.is_none() && self.user_id.is_none()
    }

    /// `self` with what `other` says, taken as `precedence` says: a placement's over what is
    /// there, any other's only where nothing is.
    pub fn merged(mut self, other: &Details, precedence: Precedence) -> Details {
        fn take<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>, over: bool) {
            if theirs.is_some() && (over || mine.is_none()) {
                mine.clone_from(theirs);
            }
        }
        let over = precedence == Precedence::Placement;
        take(&mut self.lines, &other.lines, over);
        take(&mut self.total, &other.total, over);
        take(&mut self.user_id, &other.user_id, over);
        self
    }
}

/// How an event's details are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// Over what is there: the placement is where the lines, the total and the customer come
    /// from.
    Placement,
    /// Only where nothing is yet.
    Fill,
}

/// One event seen for an order, as its history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The event type's wire name (`ORDER_PLACED`, ...).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's id (its `eventId`, or its place in the stream when it had none).
    #[serde(rename = "eventId")]
    pub event_id: String,
    /// When the producer says it happened, as it wrote it.
    pub time: Option<String>,
}

impl Ord for HistoryEntry {
    /// By time (none first), then event id, then type.
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.time, &self.event_id, &self.event_type).cmp(&(
            &other.time,
            &other.event_id,
            &other.event_type,
        ))
    }
}

impl PartialOrd for HistoryEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What one event says about its order: everything the read side keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The order.
    pub order_id: String,
    /// The event, as the order's history shows it.
    pub entry: HistoryEntry,
    /// What it says happened.
    pub kind: EventKind,
    /// The status it claims, with its reason.
    pub claim: Claim,
    /// Its details.
    pub details: Details,
}

impl Fact {
    /// The fact of an event of `kind` about `order_id`, seen as `entry`, with `reason` (kept only
    /// for a refusal: [`EventKind::keeps_reason`]) and `details`.
    pub fn new(
        order_id: impl Into<String>,
        entry: HistoryEntry,
        kind: EventKind,
        reason: Option<String>,
        details: Details,
    ) -> Self {
        let reason = reason.filter(|_| kind.keeps_reason());
        Self {
            order_id: order_id.into(),
            entry,
            kind,
            claim: Claim {
                status: kind.status(),
                reason,
            },
            details,
        }
    }

    /// How its details are taken.
    pub fn precedence(&self) -> Precedence {
        self.kind.precedence()
    }
}

/// What is kept of one order: the winning claim and the details.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderState {
    /// The greatest claim seen: the status, and its reason.
    pub claim: Claim,
    /// The lines, the total, the customer.
    pub details: Details,
}

impl OrderState {
    /// The state after `fact`, of an order whose state was `recorded` (none: nothing yet).
    pub fn apply(recorded: Option<OrderState>, fact: &Fact) -> OrderState {
        let Some(mut state) = recorded else {
            return OrderState {
                claim: fact.claim.clone(),
                details: Details::default().merged(&fact.details, Precedence::Placement),
            };
        };
        if fact.claim.wins_over(Some(&state.claim)) {
            state.claim = fact.claim.clone();
        }
        state.details = state.details.merged(&fact.details, fact.precedence());
        state
    }

    /// The state after every fact of `facts` (all of one order), in the order given; `None` for
    /// none.
    pub fn fold<'f>(facts: impl IntoIterator<Item = &'f Fact>) -> Option<OrderState> {
        facts
            .into_iter()
            .fold(None, |state, fact| Some(OrderState::apply(state, fact)))
    }
}

/// An order as the read API shows it.
///
/// As JSON: `{"orderId", "status", "lines": [{"productId", "quantity"}], "total", "reason",
/// "history": [{"type", "eventId", "time"}]}`, `total`, `reason` and `time` `null` when unknown.
/// The customer is kept (and compared) but not shown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// The order.
    pub order_id: String,
    /// Where it stands.
    pub status: Status,
    /// Its lines, one per product, in product order (empty when no event said).
    pub lines: Vec<Line>,
    /// Its total, as the producer wrote it.
    pub total: Option<String>,
    /// Why it was refused, released or its payment failed, when the event said.
    pub reason: Option<String>,
    /// The customer, when an event named one (not shown).
    #[serde(skip)]
    pub user_id: Option<String>,
    /// Every event seen for it, by time, then event id.
    pub history: Vec<HistoryEntry>,
}

impl OrderView {
    /// The view of `order_id` in `state`, with the events seen for it in any order.
    pub fn new(
        order_id: impl Into<String>,
        state: OrderState,
        history: impl IntoIterator<Item = HistoryEntry>,
    ) -> Self {
        let mut history: Vec<HistoryEntry> = history.into_iter().collect();
        history.sort();
        history.dedup();
        let OrderState { claim, details } = state;
        Self {
            order_id: order_id.into(),
            status: claim.status,
            lines: details.lines.unwrap_or_default(),
            total: details.total,
            reason: claim.reason,
            user_id: details.user_id,
            history,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn entry(id: &str) -> HistoryEntry {
        HistoryEntry {
            event_type: "T".into(),
            event_id: id.into(),
            time: None,
        }
    }

    fn fact(kind: EventKind, reason: Option<&str>) -> Fact {
        Fact::new(
            "o-1",
            entry("e"),
            kind,
            reason.map(str::to_owned),
            Details::default(),
        )
    }

    /// Every kind of event, with the code `k` names it by in the table below.
    const KINDS: [(&str, EventKind); 11] = [
        ("placed", EventKind::Placed),
        ("cancelled", EventKind::Cancelled),
        ("reserved", EventKind::Reserved),
        ("rejected", EventKind::Rejected),
        (
            "rel:pay",
            EventKind::Released(Some(ReasonCode::PaymentFailed)),
        ),
        (
            "rel:cancel",
            EventKind::Released(Some(ReasonCode::Cancelled)),
        ),
        (
            "rel:stock",
            EventKind::Released(Some(ReasonCode::OutOfStock)),
        ),
        ("rel:none", EventKind::Released(None)),
        ("captured", EventKind::Captured),
        ("payfail", EventKind::PaymentFailed),
        // Released for every other code alike.
        (
            "rel:unknown",
            EventKind::Released(Some(ReasonCode::UnknownProduct)),
        ),
    ];

    /// The whole table: every event type applied in every state (nothing yet, then each status),
    /// and the status it leaves. Written out, not computed: it is the specification.
    #[test]
    fn every_event_in_every_state() {
        use Status::*;
        // Columns, in the order of `KINDS`.
        let table: [(Option<Status>, [Status; 11]); 7] = [
            (
                None,
                [
                    Placed,
                    Cancelled,
                    Reserved,
                    Rejected,
                    PaymentFailed,
                    Cancelled,
                    Cancelled,
                    Cancelled,
                    Paid,
                    PaymentFailed,
                    Cancelled,
                ],
            ),
            (
                Some(Placed),
                [
                    Placed,
                    Cancelled,
                    Reserved,
                    Rejected,
                    PaymentFailed,
                    Cancelled,
                    Cancelled,
                    Cancelled,
                    Paid,
                    PaymentFailed,
                    Cancelled,
                ],
            ),
            (
                Some(Reserved),
                [
                    Reserved,
                    Cancelled,
                    Reserved,
                    Rejected,
                    PaymentFailed,
                    Cancelled,
                    Cancelled,
                    Cancelled,
                    Paid,
                    PaymentFailed,
                    Cancelled,
                ],
            ),
            (
                Some(Paid),
                [
                    Paid,
                    Cancelled,
                    Paid,
                    Rejected,
                    PaymentFailed,
                    Cancelled,
                    Cancelled,
                    Cancelled,
                    Paid,
                    PaymentFailed,
                    Cancelled,
                ],
            ),
            (
                Some(PaymentFailed),
                [
                    PaymentFailed,
                    Cancelled,
                    PaymentFailed,
                    Rejected,
                    PaymentFailed,
                    Cancelled,
                    Cancelled,
                    Cancelled,
                    PaymentFailed,
                    PaymentFailed,
                    Cancelled,
                ],
            ),
            (
                Some(Cancelled),
                [
                    Cancelled, Cancelled, Cancelled, Rejected, Cancelled, Cancelled, Cancelled,
                    Cancelled, Cancelled, Cancelled, Cancelled,
                ],
            ),
            (
                Some(Rejected),
                [
                    Rejected, Rejected, Rejected, Rejected, Rejected, Rejected, Rejected, Rejected,
                    Rejected, Rejected, Rejected,
                ],
            ),
        ];
        for (recorded, row) in table {
            let state = recorded.map(|status| OrderState {
                claim: Claim {
                    status,
                    reason: None,
                },
                details: Details::default(),
            });
            for ((code, kind), expected) in KINDS.iter().zip(row) {
                let after = OrderState::apply(state.clone(), &fact(*kind, None));
                assert_eq!(after.claim.status, expected, "{recorded:?} then {code}");
            }
        }
        let ranks: Vec<u8> = Status::ALL.iter().map(|s| s.rank()).collect();
        assert_eq!(ranks, [1, 2, 3, 4, 5, 6]);
    }

    /// A refusal's reason goes with its status; an overtaking claim without a reason clears it;
    /// of one rank, a reason beats none and the greater text beats the lesser; a reason of an
    /// event that keeps none is dropped.
    #[test]
    fn the_reason_goes_with_the_status() {
        let declined = fact(EventKind::PaymentFailed, Some("card declined"));
        let state = OrderState::apply(None, &declined);
        assert_eq!(state.claim.reason.as_deref(), Some("card declined"));

        let cancelled = OrderState::apply(Some(state.clone()), &fact(EventKind::Cancelled, None));
        assert_eq!(cancelled.claim.status, Status::Cancelled);
        assert_eq!(cancelled.claim.reason, None);

        let released = fact(
            EventKind::Released(Some(ReasonCode::PaymentFailed)),
            Some("stock given back"),
        );
        let both = OrderState::apply(Some(state.clone()), &released);
        assert_eq!(both.claim.reason.as_deref(), Some("stock given back"));
        let other_way = OrderState::apply(Some(OrderState::apply(None, &released)), &declined);
        assert_eq!(other_way, both);

        let silent = fact(EventKind::PaymentFailed, None);
        assert_eq!(OrderState::apply(Some(state.clone()), &silent), state);

        let placed = fact(EventKind::Placed, Some("ignored"));
        assert_eq!(placed.claim.reason, None);
    }

    /// The placement's details go over what is there; any other event's only where nothing is.
    #[test]
    fn the_placement_s_details_win() {
        let details = |sku: &str, total: Option<&str>| Details {
            lines: Some(vec![Line {
                product_id: sku.into(),
                quantity: 1,
            }]),
            total: total.map(str::to_owned),
            user_id: None,
        };
        let with = |kind, d: Details| Fact::new("o-1", entry("e"), kind, None, d);
        let reserved = with(EventKind::Reserved, details("from-decision", Some("9.50")));
        let placed = with(EventKind::Placed, details("from-placement", None));
        for facts in [[&reserved, &placed], [&placed, &reserved]] {
            let state = OrderState::fold(facts).unwrap();
            assert_eq!(
                state.details.lines.as_ref().unwrap()[0].product_id,
                "from-placement"
            );
            // The placement said no total: the decision's fills it.
            assert_eq!(state.details.total.as_deref(), Some("9.50"));
        }
    }

    /// A view shows the history sorted by time then event id, once each.
    #[test]
    fn a_view_sorts_its_history() {
        let at = |id: &str, time: Option<&str>| HistoryEntry {
            event_type: "ORDER_PLACED".into(),
            event_id: id.into(),
            time: time.map(str::to_owned),
        };
        let state = OrderState::apply(None, &fact(EventKind::Placed, None));
        let view = OrderView::new(
            "o-1",
            state,
            [
                at("b", Some("2024-01-02")),
                at("a", Some("2024-01-02")),
                at("c", Some("2024-01-01")),
                at("z", None),
                at("a", Some("2024-01-02")),
            ],
        );
        let ids: Vec<&str> = view.history.iter().map(|h| h.event_id.as_str()).collect();
        assert_eq!(ids, ["z", "c", "a", "b"]);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json["history"][0],
            serde_json::json!({"type": "ORDER_PLACED", "eventId": "z", "time": null})
        );
        assert_eq!(json["status"], "PLACED");
    }

    /// Every status reads back from its stored name, and ranks as its place in `ALL`.
    #[test]
    fn statuses_round_trip() {
        for (i, status) in Status::ALL.into_iter().enumerate() {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(usize::from(status.rank()), i + 1);
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(Status::parse("placed"), None);
    }

    /// Every permutation of `items` (Heap's algorithm).
    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn go<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            go(k - 1, a, out);
            for i in 0..k - 1 {
                if k.is_multiple_of(2) {
                    a.swap(i, k - 1);
                } else {
                    a.swap(0, k - 1);
                }
                go(k - 1, a, out);
            }
        }
        let mut out = Vec::new();
        go(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    #[test]
    fn permutations_are_all_there() {
        let all = permutations(&[1, 2, 3, 4]);
        assert_eq!(all.len(), 24);
        assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 24);
    }

    fn any_kind() -> impl Strategy<Value = EventKind> {
        prop::sample::select(KINDS.map(|(_, kind)| kind).to_vec())
    }

    /// Events of one order: each of a kind, maybe with a reason, all with the same details
    /// (as the contract says), each its own event.
    fn any_facts() -> impl Strategy<Value = Vec<Fact>> {
        let reason = prop::option::of(prop::sample::select(vec!["a", "b", "out of stock"]));
        prop::collection::vec((any_kind(), reason), 1..=6).prop_map(|events| {
            let details = Details {
                lines: Some(vec![Line {
                    product_id: "sku-a".into(),
                    quantity: 2,
                }]),
                total: Some("12.50".into()),
                user_id: Some("u-1".into()),
            };
            events
                .into_iter()
                .enumerate()
                .map(|(i, (kind, reason))| {
                    let id = format!("e{i}");
                    let reason = reason.map(str::to_owned);
                    Fact::new("o-1", entry(&id), kind, reason, details.clone())
                })
                .collect()
        })
    }

    proptest! {
        /// Every permutation of a set of events gives the same state: the status, its reason,
        /// the details. The status is the highest rank among them.
        #[test]
        fn every_order_of_the_events_gives_one_state(facts in any_facts()) {
            let first = OrderState::fold(&facts).unwrap();
            let highest = facts.iter().map(|f| f.claim.status).max().unwrap();
            prop_assert_eq!(first.claim.status, highest);
            for permutation in permutations(&facts) {
                prop_assert_eq!(OrderState::fold(&permutation), Some(first.clone()));
            }
        }

        /// Any of those events delivered again, anywhere in the sequence, changes nothing.
        #[test]
        fn duplicates_change_nothing(
            facts in any_facts(),
            again in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..8),
        ) {
            let once = OrderState::fold(&facts).unwrap();
            let mut delivered: Vec<&Fact> = facts.iter().collect();
            for (which, at) in again {
                let fact = &facts[which.index(facts.len())];
                delivered.insert(at.index(delivered.len() + 1), fact);
            }
            prop_assert_eq!(OrderState::fold(delivered), Some(once));
        }
    }
}
