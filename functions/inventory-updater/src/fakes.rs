//! An in-memory [`InventoryStore`]: all lines of an order or none, stock never below zero, each
//! event once, deciding by [`crate::lifecycle`] as the DynamoDB store does; with failures tests
//! can plan.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use orders::{OrderId, Quantity};
use shared::fakes::{lock, stored_hash, FailurePlan};
use shared::idempotency::{EffectKey, PAYLOAD_REUSED};
use shared::{EffectError, ErrorClass};

use crate::lifecycle::{
    shortage, transition, Event, Reservation, ReservationStatus, Transition, Unchanged,
    CANCELLED_BEFORE_PLACED,
};
use crate::ports::{InventoryStore, ReleaseOutcome, ReserveOutcome};

#[derive(Debug, Default)]
struct InventoryState {
    stock: BTreeMap<String, u64>,
    reservations: BTreeMap<String, Reservation>,
    /// The applied events' keys, with their payloads' hashes.
    markers: HashMap<String, Option<String>>,
}

impl InventoryState {
    /// Whether `event` was applied before, as its marker says; an error if with another payload.
    fn applied_before(&self, event: &EffectKey<'_>) -> Result<bool, EffectError> {
        match self.markers.get(&*event.key) {
            None => Ok(false),
            Some(stored) if event.reused(stored.as_deref()) => {
                Err(EffectError::bad_data(PAYLOAD_REUSED))
            }
            Some(_) => Ok(true),
        }
    }

    /// Writes `event`'s marker.
    fn mark(&mut self, event: &EffectKey<'_>) {
        self.markers
            .insert(event.key.clone().into_owned(), stored_hash(event));
    }

    /// The order's recorded status.
    fn status(&self, order_id: &str) -> Option<ReservationStatus> {
        self.reservations.get(order_id).map(|r| r.status)
    }

    /// Records the order's rejection, with `reason`.
    fn reject(&mut self, order_id: &str, reason: String) -> ReserveOutcome {
        let rejection = Reservation::rejected(&reason);
        self.reservations.insert(order_id.to_owned(), rejection);
        ReserveOutcome::Rejected(reason)
    }
}

/// An [`InventoryStore`] in memory.
#[derive(Debug, Default)]
pub struct FakeInventory {
    state: Mutex<InventoryState>,
    failures: FailurePlan,
}

impl FakeInventory {
    /// A store with this stock per SKU.
    pub fn with_stock<'a>(stock: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let fake = Self::default();
        lock(&fake.state).stock = stock.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        fake
    }

    /// The next `times` calls for `order_id` fail with `class`, changing nothing.
    pub fn fail_order(&self, order_id: &str, class: ErrorClass, times: usize) {
        self.failures.plan(order_id, class, times);
    }

    /// The stock of one SKU.
    pub fn stock(&self, sku: &str) -> Option<u64> {
        lock(&self.state).stock.get(sku).copied()
    }

    /// The reservation of one order.
    pub fn reservation(&self, order_id: &str) -> Option<Reservation> {
        lock(&self.state).reservations.get(order_id).cloned()
    }
}

impl InventoryStore for FakeInventory {
    async fn reserve(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
        lines: &BTreeMap<&str, Quantity>,
    ) -> Result<ReserveOutcome, EffectError> {
        let order_id = order_id.as_str();
        self.failures.take(order_id)?;
        let mut s = lock(&self.state);
        if s.applied_before(event)? {
            return Ok(ReserveOutcome::AlreadyRecorded);
        }
        let placed = Event::Placed {
            products: lines.len(),
        };
        let outcome = match transition(s.status(order_id), &placed) {
            Transition::Reserve => {
                let refused = lines.iter().find_map(|(sku, q)| {
                    let available = s.stock.get(*sku).copied();
                    match available {
                        Some(have) if have >= q.get() => None,
                        _ => Some(shortage(sku, available, q.get())),
                    }
                });
                match refused {
                    Some(reason) => s.reject(order_id, reason),
                    None => {
                        for (sku, q) in lines {
                            if let Some(have) = s.stock.get_mut(*sku) {
                                *have -= q.get();
                            }
                        }
                        let reservation = Reservation::reserved(lines);
                        s.reservations.insert(order_id.to_owned(), reservation);
                        ReserveOutcome::Reserved
                    }
                }
            }
            Transition::Reject(reason) => s.reject(order_id, reason),
            // The tombstone becomes the rejection, keeping the event that cancelled it.
            Transition::RejectCancelled => {
                if let Some(r) = s.reservations.get_mut(order_id) {
                    r.status = ReservationStatus::Rejected;
                    r.reason = Some(CANCELLED_BEFORE_PLACED.into());
                }
                ReserveOutcome::Rejected(CANCELLED_BEFORE_PLACED.into())
            }
            // A placement changes nothing else; nothing is marked.
            _ => return Ok(ReserveOutcome::AlreadyRecorded),
        };
        s.mark(event);
        Ok(outcome)
    }

    async fn release(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
    ) -> Result<ReleaseOutcome, EffectError> {
        let order_id = order_id.as_str();
        self.failures.take(order_id)?;
        let mut s = lock(&self.state);
        // The order's state decides first, as in DynamoDB, which reads the order and writes the
        // event's marker only with a change: only a change finds a marker there.
        let outcome = match transition(s.status(order_id), &Event::Cancelled) {
            Transition::Tombstone | Transition::Release if s.applied_before(event)? => {
                return Ok(ReleaseOutcome::AlreadyReleased)
            }
            Transition::Tombstone => {
                let tombstone = Reservation::tombstone(&event.key);
                s.reservations.insert(order_id.to_owned(), tombstone);
                ReleaseOutcome::CancelledFirst
            }
            Transition::Release => {
                let InventoryState {
                    stock,
                    reservations,
                    ..
                } = &mut *s;
                if let Some(reservation) = reservations.get_mut(order_id) {
                    for (sku, q) in &reservation.lines {
                        *stock.entry(sku.clone()).or_default() += q;
                    }
                    reservation.status = ReservationStatus::Released;
                }
                ReleaseOutcome::Released
            }
            Transition::Unchanged(Unchanged::NothingReserved) => {
                return Ok(ReleaseOutcome::NothingReserved)
            }
            _ => return Ok(ReleaseOutcome::AlreadyReleased),
        };
        s.mark(event);
        Ok(outcome)
    }
}
