//! An in-memory [`InventoryStore`]: all lines of an order or none, stock never below zero, each
//! event once, deciding by [`crate::lifecycle`] as the DynamoDB store does; with failures tests
//! can plan.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use orders::OrderId;
use shared::fakes::{lock, stored_hash, FailurePlan};
use shared::idempotency::{EffectKey, PAYLOAD_REUSED};
use shared::{EffectError, ErrorClass};

use crate::lifecycle::{
    shortage, transition, Ending, Event, Rejection, Reservation, ReservationStatus, Transition,
    Unchanged,
};
use crate::ports::{Held, InventoryStore, Placement, ReleaseOutcome, ReserveOutcome};

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

    /// Records the order's rejection by the event of key `by`.
    fn reject(&mut self, order_id: &str, rejection: Rejection, by: &str) -> ReserveOutcome {
        let record = Reservation::rejected(&rejection, by);
        self.reservations.insert(order_id.to_owned(), record);
        ReserveOutcome::Rejected(rejection)
    }

    /// What the order's record says `event` decided, for an event applied before.
    fn decided_by(&self, order_id: &str, event: &EffectKey<'_>) -> ReserveOutcome {
        let decided = self.reservations.get(order_id);
        ReserveOutcome::AlreadyRecorded(decided.and_then(|r| r.placement_by(&event.key)))
    }

    /// What the order held, if `event` released it.
    fn released_by(&self, order_id: &str, event: &EffectKey<'_>) -> Option<Held> {
        let r = self.reservations.get(order_id)?;
        r.released_by(&event.key).then(|| Held {
            lines: r.lines.clone(),
            customer: r.customer.clone(),
        })
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
        placement: &Placement<'_>,
    ) -> Result<ReserveOutcome, EffectError> {
        let order_id = placement.order_id.as_str();
        let lines = &placement.lines;
        self.failures.take(order_id)?;
        let mut s = lock(&self.state);
        if s.applied_before(event)? {
            return Ok(s.decided_by(order_id, event));
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
                    Some(rejection) => s.reject(order_id, rejection, &event.key),
                    None => {
                        for (sku, q) in lines {
                            if let Some(have) = s.stock.get_mut(*sku) {
                                *have -= q.get();
                            }
                        }
                        let reservation =
                            Reservation::reserved(lines, &placement.customer, &event.key);
                        s.reservations.insert(order_id.to_owned(), reservation);
                        ReserveOutcome::Reserved
                    }
                }
            }
            Transition::Reject(rejection) => s.reject(order_id, rejection, &event.key),
            // The tombstone becomes the rejection, keeping the event that ended it.
            Transition::RejectEnded => {
                let Some(r) = s.reservations.get_mut(order_id) else {
                    return Err(EffectError::retryable("the tombstone is gone"));
                };
                let rejection = r.ending().before_placed();
                r.status = ReservationStatus::Rejected;
                r.reason = Some(rejection.reason.clone());
                r.code = Some(rejection.code);
                r.placed_by = Some(event.key.clone().into_owned());
                ReserveOutcome::Rejected(rejection)
            }
            // A placement changes nothing else; nothing is marked.
            _ => return Ok(ReserveOutcome::AlreadyRecorded(None)),
        };
        s.mark(event);
        Ok(outcome)
    }

    async fn release(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
        ending: Ending,
    ) -> Result<ReleaseOutcome, EffectError> {
        let order_id = order_id.as_str();
        self.failures.take(order_id)?;
        let mut s = lock(&self.state);
        // The order's state decides first, as in DynamoDB, which reads the order and writes the
        // event's marker only with a change: only a change finds a marker there.
        let outcome = match transition(s.status(order_id), &Event::Ended(ending)) {
            Transition::Tombstone | Transition::Release if s.applied_before(event)? => {
                return Ok(ReleaseOutcome::AlreadyReleased(
                    s.released_by(order_id, event),
                ))
            }
            Transition::Tombstone => {
                let tombstone = Reservation::tombstone(&event.key, ending);
                s.reservations.insert(order_id.to_owned(), tombstone);
                ReleaseOutcome::EndedFirst
            }
            Transition::Release => {
                let InventoryState {
                    stock,
                    reservations,
                    ..
                } = &mut *s;
                let Some(reservation) = reservations.get_mut(order_id) else {
                    return Err(EffectError::retryable("the reservation is gone"));
                };
                for (sku, q) in &reservation.lines {
                    *stock.entry(sku.clone()).or_default() += q;
                }
                reservation.status = ReservationStatus::Released;
                reservation.released_by = Some(event.key.clone().into_owned());
                reservation.reason = Some(ending.reason().to_owned());
                reservation.code = Some(ending.code());
                ReleaseOutcome::Released(Held {
                    lines: reservation.lines.clone(),
                    customer: reservation.customer.clone(),
                })
            }
            Transition::Unchanged(Unchanged::NothingReserved) => {
                return Ok(ReleaseOutcome::NothingReserved)
            }
            _ => {
                return Ok(ReleaseOutcome::AlreadyReleased(
                    s.released_by(order_id, event),
                ))
            }
        };
        s.mark(event);
        Ok(outcome)
    }
}
