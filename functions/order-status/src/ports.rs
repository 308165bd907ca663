//! What order-status needs: a store that records what each event says about its order
//! ([`StatusStore`], for the projector), and reads orders back ([`StatusReader`], for the API and
//! for comparing a rebuilt table with the live one). The real one is over DynamoDB
//! ([`crate::dynamodb`]); the fake keeps it in memory. Both decide by [`crate::status`].

use std::collections::BTreeMap;
use std::future::Future;

use shared::{EffectError, Outcome};

use crate::status::{Fact, OrderView};

/// Records what events say about their orders.
pub trait StatusStore: Sync {
    /// Records `fact`: the order's state as [`crate::status::OrderState::apply`] says, then the
    /// event in its history. [`Outcome::Duplicate`] when the event was recorded before (the
    /// order's state is brought up to date all the same), else [`Outcome::Applied`].
    fn record(&self, fact: &Fact) -> impl Future<Output = Result<Outcome, EffectError>> + Send;
}

/// Reads orders back.
pub trait StatusReader: Sync {
    /// The order `order_id`, if any event of it was recorded.
    fn get(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderView>, EffectError>> + Send;

    /// Every order, by id: a value two stores can be compared by (a rebuilt table and the live
    /// one are the same when their dumps are equal).
    fn scan_all(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, OrderView>, EffectError>> + Send;
}
