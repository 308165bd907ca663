//! An in-memory [`StatusStore`] and [`StatusReader`]: each order's state as
//! [`OrderState::apply`] makes it, and its events once each, written in the order the DynamoDB
//! store writes them (the order's state, then the event's marker); with failures tests can plan
//! before either write.

use std::collections::BTreeMap;
use std::sync::Mutex;

use shared::fakes::{lock, FailurePlan};
use shared::{EffectError, ErrorClass, Outcome};

use crate::ports::{StatusReader, StatusStore};
use crate::status::{Fact, HistoryEntry, OrderState, OrderView};

/// What is kept of one order.
#[derive(Debug, Clone)]
struct Stored {
    state: OrderState,
    /// The events seen, by id.
    events: BTreeMap<String, HistoryEntry>,
}

/// Order statuses in memory.
#[derive(Debug, Default)]
pub struct FakeStatus {
    orders: Mutex<BTreeMap<String, Stored>>,
    /// Failures before the order's state is written.
    failures: FailurePlan,
    /// Failures after the order's state is written, before the event's marker.
    marker_failures: FailurePlan,
}

impl FakeStatus {
    /// The next `times` records of `order_id` fail with `class` before anything is written.
    pub fn fail_order(&self, order_id: &str, class: ErrorClass, times: usize) {
        self.failures.plan(order_id, class, times);
    }

    /// The next `times` records of `order_id` write the order's state, then fail with `class`
    /// before the event's marker (as a write that times out between the two would).
    pub fn fail_marker(&self, order_id: &str, class: ErrorClass, times: usize) {
        self.marker_failures.plan(order_id, class, times);
    }

    /// The recorded state of one order.
    pub fn state(&self, order_id: &str) -> Option<OrderState> {
        lock(&self.orders).get(order_id).map(|s| s.state.clone())
    }

    /// How many events of `order_id` are recorded.
    pub fn events(&self, order_id: &str) -> usize {
        lock(&self.orders)
            .get(order_id)
            .map_or(0, |s| s.events.len())
    }
}

fn view(order_id: &str, stored: &Stored) -> OrderView {
    OrderView::new(
        order_id,
        stored.state.clone(),
        stored.events.values().cloned(),
    )
}

impl StatusStore for FakeStatus {
    async fn record(&self, fact: &Fact) -> Result<Outcome, EffectError> {
        let order_id = fact.order_id.as_str();
        self.failures.take(order_id)?;
        let mut orders = lock(&self.orders);
        let recorded = orders.get(order_id).map(|s| s.state.clone());
        let state = OrderState::apply(recorded, fact);
        let stored = orders.entry(order_id.to_owned()).or_insert_with(|| Stored {
            state: state.clone(),
            events: BTreeMap::new(),
        });
        stored.state = state;
        self.marker_failures.take(order_id)?;
        let id = &fact.entry.event_id;
        if stored.events.contains_key(id) {
            return Ok(Outcome::Duplicate);
        }
        stored.events.insert(id.clone(), fact.entry.clone());
        Ok(Outcome::Applied)
    }
}

impl StatusReader for FakeStatus {
    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, EffectError> {
        self.failures.take(order_id)?;
        Ok(lock(&self.orders).get(order_id).map(|s| view(order_id, s)))
    }

    async fn scan_all(&self) -> Result<BTreeMap<String, OrderView>, EffectError> {
        Ok(lock(&self.orders)
            .iter()
            .map(|(id, stored)| (id.clone(), view(id, stored)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Details, EventKind, Status};

    fn fact(id: &str, kind: EventKind) -> Fact {
        let entry = HistoryEntry {
            event_type: "T".into(),
            event_id: id.into(),
            time: None,
        };
        Fact::new("o-1", entry, kind, None, Details::default())
    }

    /// An event is applied once; its redelivery is a duplicate that changes nothing.
    #[tokio::test]
    async fn each_event_once() {
        let store = FakeStatus::default();
        let placed = fact("e1", EventKind::Placed);
        assert_eq!(store.record(&placed).await.unwrap(), Outcome::Applied);
        assert_eq!(store.record(&placed).await.unwrap(), Outcome::Duplicate);
        assert_eq!(store.events("o-1"), 1);
        let view = store.get("o-1").await.unwrap().unwrap();
        assert_eq!(view.status, Status::Placed);
        assert_eq!(store.get("o-2").await.unwrap(), None);
    }

    /// A failure between the order's state and the marker leaves no marker: the retry applies
    /// the event (its state again, which changes nothing) and writes it.
    #[tokio::test]
    async fn the_marker_is_written_last() {
        let store = FakeStatus::default();
        store.fail_marker("o-1", ErrorClass::Retryable, 1);
        let reserved = fact("e2", EventKind::Reserved);
        let err = store.record(&reserved).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert_eq!(store.state("o-1").unwrap().claim.status, Status::Reserved);
        assert_eq!(store.events("o-1"), 0);
        assert_eq!(store.record(&reserved).await.unwrap(), Outcome::Applied);
        assert_eq!(store.events("o-1"), 1);
    }

    /// A planned failure before anything is written changes nothing.
    #[tokio::test]
    async fn a_failure_first_writes_nothing() {
        let store = FakeStatus::default();
        store.fail_order("o-1", ErrorClass::Permanent, 1);
        let err = store
            .record(&fact("e1", EventKind::Placed))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(store.scan_all().await.unwrap().is_empty());
    }
}
