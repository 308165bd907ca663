//! [`InventoryStore`] over DynamoDB.
//!
//! One table holds the stock and the reservations, keyed by the string attribute `pk`:
//! - `SKU#<productId>`: `available` (number), the stock that can still be reserved;
//! - `ORDER#<orderId>`: `status` (`RESERVED`, `REJECTED`, `RELEASED`, `CANCELLED`), `lines` (a
//!   map of product id to quantity held), `reason` and `reasonCode` (why it was rejected, or why
//!   it ended), `cancelledBy` (the event that ended the order before it was placed), `placedBy`
//!   and `releasedBy` (the events that decided its placement and its release), and, with a
//!   reservation, `userId`, `email` and `total` as the placement wrote them (its release's
//!   decision carries them).
//!
//! A reservation is one `TransactWriteItems`: a conditional decrement per product (`available >=
//! quantity`, which also fails for an unknown product), the order's item, written only if it does
//! not exist yet, and the event's idempotency marker in the ledger table, written only if it does
//! not exist yet (`shared::adapters::Markers`). So an order is reserved whole or not at all, and a
//! redelivered event changes nothing. Releases and recorded rejections carry the marker in their
//! transaction too.
//!
//! What each event does to an order is [`crate::lifecycle::transition`]'s to decide: a placement
//! is tried as if nothing were recorded, and a failed condition tells what is (the item comes back
//! with the cancellation); a cancellation reads the order first.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use orders::{OrderId, ReasonCode};
use shared::adapters::Markers;
use shared::idempotency::EffectKey;
use shared::{EffectError, ErrorClass};

use crate::lifecycle::{
    shortage, transition, Customer, Ending, Event, Rejection, Reservation, ReservationStatus,
    Transition, Unchanged,
};
use crate::ports::{Held, InventoryStore, Placement, ReleaseOutcome, ReserveOutcome};

/// The key of a product's stock item.
pub fn sku_key(sku: &str) -> String {
    format!("SKU#{sku}")
}

/// The key of an order's reservation item.
pub fn order_key(order_id: &str) -> String {
    format!("ORDER#{order_id}")
}

type Item = HashMap<String, AttributeValue>;

impl TryFrom<&Item> for Reservation {
    type Error = EffectError;
    fn try_from(item: &Item) -> Result<Self, EffectError> {
        let bad = |what: &str| EffectError::retryable(format!("reservation item has a bad {what}"));
        let status = item
            .get("status")
            .and_then(|v| v.as_s().ok())
            .and_then(|s| ReservationStatus::parse(s))
            .ok_or_else(|| bad("status"))?;
        let mut lines = BTreeMap::new();
        if let Some(map) = item.get("lines").and_then(|v| v.as_m().ok()) {
            for (sku, q) in map {
                let q = q
                    .as_n()
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| bad("line"))?;
                lines.insert(sku.clone(), q);
            }
        }
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(Reservation {
            status,
            lines,
            reason: text("reason"),
            code: text("reasonCode").and_then(|c| ReasonCode::parse(&c)),
            cancelled_by: text("cancelledBy"),
            placed_by: text("placedBy"),
            released_by: text("releasedBy"),
            customer: Customer {
                user_id: text("userId"),
                email: text("email"),
                total: text("total"),
            },
        })
    }
}

impl From<&Reservation> for Item {
    fn from(r: &Reservation) -> Item {
        let mut item = Item::new();
        item.insert("status".into(), AttributeValue::S(r.status.as_str().into()));
        let lines = r
            .lines
            .iter()
            .map(|(sku, q)| (sku.clone(), AttributeValue::N(q.to_string())))
            .collect();
        item.insert("lines".into(), AttributeValue::M(lines));
        let code = r.code.map(|c| c.as_str().to_owned());
        let texts = [
            ("reason", &r.reason),
            ("reasonCode", &code),
            ("cancelledBy", &r.cancelled_by),
            ("placedBy", &r.placed_by),
            ("releasedBy", &r.released_by),
            ("userId", &r.customer.user_id),
            ("email", &r.customer.email),
            ("total", &r.customer.total),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                item.insert(name.into(), AttributeValue::S(value.clone()));
            }
        }
        item
    }
}

/// What the order held, if the event of `event` released it.
fn held_if_released_by(r: Reservation, event: &EffectKey<'_>) -> Option<Held> {
    r.released_by(&event.key).then_some(Held {
        lines: r.lines,
        customer: r.customer,
    })
}

/// Reserves and releases stock in a DynamoDB table, with idempotency markers in the ledger's.
#[derive(Debug, Clone)]
pub struct DynamoInventory {
    client: aws_sdk_dynamodb::Client,
    table: String,
    markers: Markers,
}

/// The reasons a transaction was cancelled, one per action, when that is why it failed.
fn cancellation_reasons<R>(
    err: &SdkError<TransactWriteItemsError, R>,
) -> Option<&[CancellationReason]> {
    match err {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(tc) => {
                Some(tc.cancellation_reasons()).filter(|r| !r.is_empty())
            }
            _ => None,
        },
        _ => None,
    }
}

fn is_condition_failure(reason: &CancellationReason) -> bool {
    reason.code() == Some("ConditionalCheckFailed")
}

/// Whether a transaction was cancelled by failed conditions alone (no throttling, no conflict).
fn only_condition_failures(reasons: &[CancellationReason]) -> bool {
    reasons.iter().any(is_condition_failure) && classify_reasons(reasons).is_none()
}

/// The class of a cancelled transaction for the reasons that are not condition failures, if any:
/// a validation error is ours (permanent); anything else (throttling, a conflicting transaction)
/// passes.
fn classify_reasons(reasons: &[CancellationReason]) -> Option<ErrorClass> {
    let mut class = None;
    for code in reasons.iter().filter_map(CancellationReason::code) {
        match code {
            "None" | "ConditionalCheckFailed" => {}
            "ValidationError" => {
                class.get_or_insert(ErrorClass::Permanent);
            }
            _ => return Some(ErrorClass::Retryable),
        }
    }
    class
}

/// What is recorded for the order whose item's condition failed, as the item that came back with
/// the cancellation says (`None`: it did not come back).
fn recorded_item(reason: &CancellationReason) -> Option<Reservation> {
    reason
        .item()
        .and_then(|item| Reservation::try_from(item).ok())
}

impl DynamoInventory {
    /// An adapter over `table`, marking applied events with `markers`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, markers: Markers) -> Self {
        Self {
            client,
            table,
            markers,
        }
    }

    /// The order's reservation, if anything is recorded for it.
    async fn recorded(&self, order_id: &str) -> Result<Option<Reservation>, EffectError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(order_key(order_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| EffectError::from_sdk("GetItem", e))?;
        got.item().map(Reservation::try_from).transpose()
    }

    fn order_put(&self, order_id: &str, r: &Reservation) -> Result<TransactWriteItem, EffectError> {
        let mut item = Item::from(r);
        item.insert("pk".into(), AttributeValue::S(order_key(order_id)));
        item.insert("orderId".into(), AttributeValue::S(order_id.to_owned()));
        // The item that is there already comes back with the cancellation: a tombstone
        // (`CANCELLED`) is told apart from an order recorded before.
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(EffectError::unbuildable)?)
            .build())
    }

    fn stock_update(
        &self,
        sku: &str,
        quantity: u64,
        reserve: bool,
    ) -> Result<TransactWriteItem, EffectError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(sku_key(sku)))
            .expression_attribute_values(":q", AttributeValue::N(quantity.to_string()));
        let update = if reserve {
            update
                .update_expression("SET available = available - :q")
                .condition_expression("available >= :q")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
        } else {
            update
                .update_expression("SET available = available + :q")
                .condition_expression("attribute_exists(pk)")
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(EffectError::unbuildable)?)
            .build())
    }

    /// Moves the order's item from status `from` to `to`, setting the text attributes `set`, only
    /// if it is at `from`.
    fn status_change(
        &self,
        order_id: &str,
        from: ReservationStatus,
        to: ReservationStatus,
        set: &[(&str, &str)],
    ) -> Result<TransactWriteItem, EffectError> {
        let status = |s: ReservationStatus| AttributeValue::S(s.as_str().into());
        let mut expression = String::from("SET #s = :to");
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(order_key(order_id)))
            .condition_expression("#s = :from")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":from", status(from))
            .expression_attribute_values(":to", status(to));
        for (i, (name, value)) in set.iter().enumerate() {
            expression.push_str(&format!(", #a{i} = :a{i}"));
            update = update
                .expression_attribute_names(format!("#a{i}"), *name)
                .expression_attribute_values(format!(":a{i}"), AttributeValue::S((*value).into()));
        }
        let update = update.update_expression(expression);
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(EffectError::unbuildable)?)
            .build())
    }

    /// What the placement of `event` decided, for an event applied before (`None`: another
    /// decided it, or nothing is recorded).
    async fn decided_before(
        &self,
        event: &EffectKey<'_>,
        order_id: &str,
    ) -> Result<ReserveOutcome, EffectError> {
        let recorded = self.recorded(order_id).await?;
        Ok(ReserveOutcome::AlreadyRecorded(
            recorded.and_then(|r| r.placement_by(&event.key)),
        ))
    }

    /// What the order held, for an event applied before that released it (`None`: it did not).
    async fn released_before(
        &self,
        event: &EffectKey<'_>,
        order_id: &str,
    ) -> Result<ReleaseOutcome, EffectError> {
        let recorded = self.recorded(order_id).await?;
        Ok(ReleaseOutcome::AlreadyReleased(
            recorded.and_then(|r| held_if_released_by(r, event)),
        ))
    }

    /// Records that the order was rejected, unless something is already recorded for it.
    async fn record_rejection(
        &self,
        event: &EffectKey<'_>,
        order_id: &str,
        rejection: Rejection,
    ) -> Result<ReserveOutcome, EffectError> {
        let actions = vec![
            self.order_put(order_id, &Reservation::rejected(&rejection, &event.key))?,
            self.markers.put(event)?,
        ];
        let err = match self.transact(actions).await {
            Ok(()) => return Ok(ReserveOutcome::Rejected(rejection)),
            Err(err) => err,
        };
        if let Some(reasons) = cancellation_reasons(&err) {
            if let Some(recorded) = self.recorded_before(reasons, event, order_id).await {
                return recorded;
            }
        }
        Err(EffectError::from_sdk("TransactWriteItems", err))
    }

    /// What a placement comes to when its transaction, whose last two actions are the order's
    /// item and the event's marker (each written only if absent), was cancelled by either: this
    /// event was applied before (unless with another payload: poison); or something is recorded
    /// for the order, and [`transition`] says what the placement does to it. `None` when neither
    /// failed its condition.
    async fn recorded_before(
        &self,
        reasons: &[CancellationReason],
        event: &EffectKey<'_>,
        order_id: &str,
    ) -> Option<Result<ReserveOutcome, EffectError>> {
        let [.., order, marker] = reasons else {
            return None;
        };
        if is_condition_failure(marker) {
            return Some(match self.markers.check_reuse(marker, event).await {
                Ok(()) => self.decided_before(event, order_id).await,
                Err(e) => Err(e),
            });
        }
        if !is_condition_failure(order) {
            return None;
        }
        // Not every server returns the item with the cancellation: then it is read.
        let recorded = match recorded_item(order) {
            Some(recorded) => recorded,
            None => match self.recorded(order_id).await {
                Ok(Some(reservation)) => reservation,
                Ok(None) => {
                    return Some(Err(EffectError::retryable(
                        "the order's item was there, then gone",
                    )))
                }
                Err(e) => return Some(Err(e)),
            },
        };
        Some(
            match transition(Some(recorded.status), &Event::Placed { products: 0 }) {
                Transition::RejectEnded => {
                    self.reject_ended(event, order_id, recorded.ending()).await
                }
                _ => Ok(ReserveOutcome::AlreadyRecorded(None)),
            },
        )
    }

    /// Records an order ended before it was placed: a tombstone, with the event that ended it
    /// and why, written only if the order has no item yet.
    async fn record_tombstone(
        &self,
        event: &EffectKey<'_>,
        order_id: &str,
        ending: Ending,
    ) -> Result<ReleaseOutcome, EffectError> {
        let actions = vec![
            self.order_put(order_id, &Reservation::tombstone(&event.key, ending))?,
            self.markers.put(event)?,
        ];
        match self.transact(actions).await {
            Ok(()) => Ok(ReleaseOutcome::EndedFirst),
            Err(e) => match cancellation_reasons(&e) {
                // This event was applied before.
                Some([_, marker]) if is_condition_failure(marker) => {
                    self.markers.check_reuse(marker, event).await?;
                    self.released_before(event, order_id).await
                }
                // The order was placed between our read and our write: retried, it is released.
                Some([order, _]) if is_condition_failure(order) => Err(EffectError::new(
                    ErrorClass::Retryable,
                    "the order was recorded while its cancellation was written",
                    Some(Box::new(e)),
                )),
                _ => Err(EffectError::from_sdk("TransactWriteItems", e)),
            },
        }
    }

    /// Rejects the placement of an order whose tombstone is there: the tombstone becomes the
    /// rejection ([`Ending::before_placed`]), and no stock is taken.
    async fn reject_ended(
        &self,
        event: &EffectKey<'_>,
        order_id: &str,
        ending: Ending,
    ) -> Result<ReserveOutcome, EffectError> {
        let rejection = ending.before_placed();
        let reject = self.status_change(
            order_id,
            ReservationStatus::Cancelled,
            ReservationStatus::Rejected,
            &[
                ("reason", &rejection.reason),
                ("reasonCode", rejection.code.as_str()),
                ("placedBy", &event.key),
            ],
        )?;
        let actions = vec![reject, self.markers.put(event)?];
        match self.transact(actions).await {
            Ok(()) => Ok(ReserveOutcome::Rejected(rejection)),
            // Another event of the order, or this one (with this payload), got there first.
            Err(e) => match cancellation_reasons(&e) {
                Some(reasons @ [_, marker]) if only_condition_failures(reasons) => {
                    if is_condition_failure(marker) {
                        self.markers.check_reuse(marker, event).await?;
                    }
                    self.decided_before(event, order_id).await
                }
                _ => Err(EffectError::from_sdk("TransactWriteItems", e)),
            },
        }
    }

    async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
    ) -> Result<(), SdkError<TransactWriteItemsError, aws_smithy_runtime_api::http::Response>> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
            .map(drop)
    }
}

impl InventoryStore for DynamoInventory {
    async fn reserve(
        &self,
        event: &EffectKey<'_>,
        placement: &Placement<'_>,
    ) -> Result<ReserveOutcome, EffectError> {
        let order_id = placement.order_id.as_str();
        let lines = &placement.lines;
        // Tried as if nothing were recorded for the order; a failed condition says what is.
        let placed = Event::Placed {
            products: lines.len(),
        };
        match transition(None, &placed) {
            Transition::Reserve => {}
            Transition::Reject(rejection) => {
                return self.record_rejection(event, order_id, rejection).await
            }
            other => {
                return Err(EffectError::permanent(format!(
                    "a placement of an unrecorded order came to {other:?}"
                )))
            }
        }
        let mut actions = Vec::with_capacity(lines.len() + 2);
        for (sku, q) in lines {
            actions.push(self.stock_update(sku, q.get(), true)?);
        }
        let reserved = Reservation::reserved(lines, &placement.customer, &event.key);
        actions.push(self.order_put(order_id, &reserved)?);
        actions.push(self.markers.put(event)?);

        let err = match self.transact(actions).await {
            Ok(()) => return Ok(ReserveOutcome::Reserved),
            Err(err) => err,
        };
        let Some(reasons) = cancellation_reasons(&err) else {
            return Err(EffectError::from_sdk("TransactWriteItems", err));
        };
        if let Some(recorded) = self.recorded_before(reasons, event, order_id).await {
            return recorded;
        }
        if let Some(class) = classify_reasons(reasons) {
            return Err(EffectError::new(
                class,
                "TransactWriteItems was cancelled",
                Some(Box::new(err)),
            ));
        }
        // The first product whose stock refused: its item comes back with the cancellation (none:
        // there is no such product).
        let refused = lines
            .iter()
            .zip(reasons)
            .find(|(_, r)| is_condition_failure(r))
            .map(|((sku, q), r)| {
                let available = r
                    .item()
                    .and_then(|i| i.get("available"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok());
                shortage(sku, available, q.get())
            });
        match refused {
            Some(rejection) => self.record_rejection(event, order_id, rejection).await,
            None => Err(EffectError::new(
                ErrorClass::Retryable,
                "TransactWriteItems was cancelled for no stated reason",
                Some(Box::new(err)),
            )),
        }
    }

    async fn release(
        &self,
        event: &EffectKey<'_>,
        order_id: &OrderId<'_>,
        ending: Ending,
    ) -> Result<ReleaseOutcome, EffectError> {
        let order_id = order_id.as_str();
        let recorded = self.recorded(order_id).await?;
        let status = recorded.as_ref().map(|r| r.status);
        let held = match (transition(status, &Event::Ended(ending)), recorded) {
            (Transition::Tombstone, _) => {
                return self.record_tombstone(event, order_id, ending).await
            }
            (Transition::Release, Some(r)) => Held {
                lines: r.lines,
                customer: r.customer,
            },
            (Transition::Unchanged(Unchanged::NothingReserved), _) => {
                return Ok(ReleaseOutcome::NothingReserved)
            }
            (_, recorded) => {
                return Ok(ReleaseOutcome::AlreadyReleased(
                    recorded.and_then(|r| held_if_released_by(r, event)),
                ))
            }
        };
        let lines = &held.lines;
        let mut actions = Vec::with_capacity(lines.len() + 2);
        for (sku, q) in lines {
            actions.push(self.stock_update(sku, *q, false)?);
        }
        actions.push(self.status_change(
            order_id,
            ReservationStatus::Reserved,
            ReservationStatus::Released,
            &[
                ("releasedBy", &event.key),
                ("reason", ending.reason()),
                ("reasonCode", ending.code().as_str()),
            ],
        )?);
        actions.push(self.markers.put(event)?);

        let err = match self.transact(actions).await {
            Ok(()) => return Ok(ReleaseOutcome::Released(held)),
            Err(err) => err,
        };
        // This event, or another delivery, released it between our read and our write: the
        // order's item or the event's marker (the last two actions) already exists.
        match cancellation_reasons(&err) {
            Some([.., marker]) if is_condition_failure(marker) => {
                self.markers.check_reuse(marker, event).await?;
                self.released_before(event, order_id).await
            }
            Some([.., order, _]) if is_condition_failure(order) => {
                self.released_before(event, order_id).await
            }
            _ => Err(EffectError::from_sdk("TransactWriteItems", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use crate::lifecycle::Decided;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;
    use shared::fakes::{
        dynamodb_error as dynamo_error, effect_key as ev, ledger_settings as ledger_config,
    };
    use shared::idempotency::PAYLOAD_REUSED;

    fn order(id: &'static str) -> OrderId<'static> {
        OrderId::parse(Cow::Borrowed(id)).unwrap()
    }

    fn lines(l: &[(&'static str, u64)]) -> BTreeMap<&'static str, orders::Quantity> {
        l.iter()
            .map(|(s, q)| (*s, orders::Quantity::new(*q).unwrap()))
            .collect()
    }

    /// A placement of `order`'s `lines`, by customer `u-1` at `a@b.co`.
    fn placed<'a>(order: &'a OrderId<'a>, l: &[(&'static str, u64)]) -> Placement<'a> {
        Placement {
            order_id: order,
            lines: lines(l),
            customer: Customer {
                user_id: Some("u-1".into()),
                email: Some("a@b.co".into()),
                total: None,
            },
        }
    }

    /// The order's item as the table holds it, for a read.
    fn order_read(r: Reservation) -> GetItemOutput {
        GetItemOutput::builder()
            .set_item(Some(Item::from(&r)))
            .build()
    }

    fn inventory(client: Client) -> DynamoInventory {
        let markers = Markers::new(client.clone(), ledger_config(), "inventory-updater");
        DynamoInventory::new(client, "inventory".into(), markers)
    }

    fn no_retry(c: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
        c.retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
    }

    /// Reserving is one transaction: a conditional decrement per product, then the order's item
    /// and the event's marker, each written only if absent.
    #[tokio::test]
    async fn reserve_request_shape() {
        let rule = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let items = r.transact_items();
                let update = |i: usize| items[i].update().unwrap();
                let sku_ok = |i: usize, sku: &str, q: &str| {
                    let u = update(i);
                    u.table_name() == "inventory"
                        && u.key().get("pk") == Some(&AttributeValue::S(format!("SKU#{sku}")))
                        && u.update_expression() == "SET available = available - :q"
                        && u.condition_expression() == Some("available >= :q")
                        && u.expression_attribute_values().and_then(|v| v.get(":q"))
                            == Some(&AttributeValue::N(q.into()))
                };
                let put = items[2].put().unwrap();
                let held = put.item().get("lines").and_then(|v| v.as_m().ok());
                let marker = items[3].put().unwrap();
                items.len() == 4
                    && marker.table_name() == "idempotency"
                    && marker.item().get("pk")
                        == Some(&AttributeValue::S("inventory-updater#evt-1".into()))
                    && marker.item().contains_key("expiresAt")
                    && marker.condition_expression() == Some("attribute_not_exists(pk)")
                    && sku_ok(0, "sku-a", "3")
                    && sku_ok(1, "sku-b", "1")
                    && put.condition_expression() == Some("attribute_not_exists(pk)")
                    && put.item().get("pk") == Some(&AttributeValue::S("ORDER#o-1".into()))
                    && put.item().get("status") == Some(&AttributeValue::S("RESERVED".into()))
                    && put.item().get("placedBy") == Some(&AttributeValue::S("evt-1".into()))
                    && put.item().get("email") == Some(&AttributeValue::S("a@b.co".into()))
                    && held.and_then(|m| m.get("sku-a")) == Some(&AttributeValue::N("3".into()))
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let store = inventory(mock_client!(aws_sdk_dynamodb, [&rule]));
        let o = order("o-1");
        let out = store
            .reserve(&ev("evt-1"), &placed(&o, &[("sku-a", 3), ("sku-b", 1)]))
            .await
            .unwrap();
        assert_eq!(out, ReserveOutcome::Reserved);
        assert_eq!(rule.num_calls(), 1);
    }

    /// A failed stock condition is a business outcome: the rejection is recorded with its reason
    /// and nothing is retried.
    #[tokio::test]
    async fn out_of_stock_is_a_rejection() {
        let cancelled = mock!(Client::transact_write_items).then_http_response(dynamo_error(
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed, None]","CancellationReasons":[{"Code":"ConditionalCheckFailed","Message":"The conditional request failed","Item":{"pk":{"S":"SKU#sku-a"},"available":{"N":"1"}}},{"Code":"None"},{"Code":"None"}]}"#,
        ));
        let recorded = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let put = r.transact_items()[0].put().unwrap();
                r.transact_items().len() == 2
                    && r.transact_items()[1]
                        .put()
                        .is_some_and(|m| m.table_name() == "idempotency")
                    && put.item().get("status") == Some(&AttributeValue::S("REJECTED".into()))
                    && put.item().get("reasonCode")
                        == Some(&AttributeValue::S("OUT_OF_STOCK".into()))
                    && put.condition_expression() == Some("attribute_not_exists(pk)")
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&cancelled, &recorded],
            no_retry
        );
        let store = inventory(client);
        let o = order("o-1");
        let out = store
            .reserve(&ev("evt-1"), &placed(&o, &[("sku-a", 3)]))
            .await
            .unwrap();
        assert_eq!(out, ReserveOutcome::Rejected(shortage("sku-a", Some(1), 3)));
        assert_eq!((cancelled.num_calls(), recorded.num_calls()), (1, 1));
    }

    /// The hash `ev` carries, as stored.
    fn ev_hash() -> String {
        ev("evt-1").payload_hash.unwrap().to_string()
    }

    /// A cancellation whose last action, the marker, failed its condition, with the marker's
    /// item (holding `hash`) when `item` says so.
    fn marker_exists(hash: &str, item: bool) -> &'static str {
        let item = if item {
            format!(
                r#","Item":{{"pk":{{"S":"inventory-updater#evt-1"}},"status":{{"S":"DONE"}},"payloadHash":{{"S":"{hash}"}}}}"#
            )
        } else {
            String::new()
        };
        Box::leak(format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"cancelled","CancellationReasons":[{{"Code":"None"}},{{"Code":"None"}},{{"Code":"ConditionalCheckFailed"{item}}}]}}"#).into_boxed_str())
    }

    /// When the event's marker already exists with the same payload's hash, the event was applied
    /// before: nothing changes, and the order's item says what this event decided (to publish it
    /// again). With another payload's hash, the producer reused the event's id: poison. A marker
    /// not returned with the cancellation is read; a marker written before hashes were kept
    /// matches.
    #[tokio::test]
    async fn existing_marker_is_a_duplicate_unless_its_payload_differs() {
        let same = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let marker = r.transact_items().last().and_then(|i| i.put()).unwrap();
                marker.item().get("payloadHash") == Some(&AttributeValue::S(ev_hash()))
                    && marker.return_values_on_condition_check_failure()
                        == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .then_http_response(dynamo_error(marker_exists(&ev_hash(), true)));
        let other = mock!(Client::transact_write_items).then_http_response(dynamo_error(
            marker_exists("0123456789abcdef0123456789abcdef", true),
        ));
        let unreturned = mock!(Client::transact_write_items)
            .then_http_response(dynamo_error(marker_exists("", false)));
        let read = mock!(Client::get_item)
            .match_requests(|r| {
                r.table_name() == Some("idempotency")
                    && r.key().and_then(|k| k.get("pk"))
                        == Some(&AttributeValue::S("inventory-updater#evt-1".into()))
            })
            .then_output(|| {
                GetItemOutput::builder()
                    .item("pk", AttributeValue::S("inventory-updater#evt-1".into()))
                    .item("status", AttributeValue::S("DONE".into()))
                    .build()
            });
        let decided_here = mock!(Client::get_item)
            .match_requests(|r| {
                r.table_name() == Some("inventory")
                    && r.key().and_then(|k| k.get("pk"))
                        == Some(&AttributeValue::S("ORDER#o-1".into()))
            })
            .then_output(|| {
                let o = order("o-1");
                let p = placed(&o, &[("sku-a", 1)]);
                order_read(Reservation::reserved(&p.lines, &p.customer, "evt-1"))
            });
        let decided_elsewhere = mock!(Client::get_item).then_output(|| {
            let o = order("o-1");
            let p = placed(&o, &[("sku-a", 1)]);
            order_read(Reservation::reserved(&p.lines, &p.customer, "evt-0"))
        });
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [
                &same,
                &decided_here,
                &other,
                &unreturned,
                &read,
                &decided_elsewhere
            ],
            no_retry
        );
        let store = inventory(client);
        let (event, order) = (ev("evt-1"), order("o-1"));
        let placement = placed(&order, &[("sku-a", 1)]);
        let reserve = || store.reserve(&event, &placement);
        assert_eq!(
            reserve().await.unwrap(),
            ReserveOutcome::AlreadyRecorded(Some(Decided::Reserved))
        );
        let err = reserve().await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains(PAYLOAD_REUSED), "{err}");
        assert_eq!(
            reserve().await.unwrap(),
            ReserveOutcome::AlreadyRecorded(None)
        );
    }

    /// A placement that finds the order's tombstone (returned with the cancellation) turns it
    /// into a rejection, conditioned on it still being the tombstone, with the event's marker.
    #[tokio::test]
    async fn a_placement_after_its_cancellation_is_rejected() {
        let cancelled = mock!(Client::transact_write_items).then_http_response(dynamo_error(
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"cancelled","CancellationReasons":[{"Code":"None"},{"Code":"ConditionalCheckFailed","Item":{"pk":{"S":"ORDER#o-1"},"status":{"S":"CANCELLED"},"cancelledBy":{"S":"evt-0"}}},{"Code":"None"}]}"#,
        ));
        let reject = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let items = r.transact_items();
                let update = items[0].update().unwrap();
                items.len() == 2
                    && update.key().get("pk") == Some(&AttributeValue::S("ORDER#o-1".into()))
                    && update.condition_expression() == Some("#s = :from")
                    && update.update_expression() == "SET #s = :to, #a0 = :a0, #a1 = :a1, #a2 = :a2"
                    && update.expression_attribute_names().is_some_and(|n| {
                        n.get("#a0").map(String::as_str) == Some("reason")
                            && n.get("#a1").map(String::as_str) == Some("reasonCode")
                            && n.get("#a2").map(String::as_str) == Some("placedBy")
                    })
                    && update.expression_attribute_values().is_some_and(|v| {
                        v.get(":from") == Some(&AttributeValue::S("CANCELLED".into()))
                            && v.get(":to") == Some(&AttributeValue::S("REJECTED".into()))
                            && v.get(":a1") == Some(&AttributeValue::S("CANCELLED".into()))
                            && v.get(":a2") == Some(&AttributeValue::S("evt-1".into()))
                    })
                    && items[1].put().is_some_and(|m| {
                        m.item().get("pk")
                            == Some(&AttributeValue::S("inventory-updater#evt-1".into()))
                    })
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&cancelled, &reject],
            no_retry
        );
        let o = order("o-1");
        let out = inventory(client)
            .reserve(&ev("evt-1"), &placed(&o, &[("sku-a", 1)]))
            .await
            .unwrap();
        assert_eq!(
            out,
            ReserveOutcome::Rejected(Ending::Cancelled.before_placed())
        );
        assert_eq!(reject.num_calls(), 1);
    }

    /// A cancellation of an order with no item writes its tombstone, only if there is still none,
    /// with the event's marker.
    #[tokio::test]
    async fn a_cancellation_before_its_order_writes_a_tombstone() {
        let get = mock!(Client::get_item).then_output(|| GetItemOutput::builder().build());
        let write = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let items = r.transact_items();
                let put = items[0].put().unwrap();
                items.len() == 2
                    && put.item().get("pk") == Some(&AttributeValue::S("ORDER#o-1".into()))
                    && put.item().get("status") == Some(&AttributeValue::S("CANCELLED".into()))
                    && put.item().get("cancelledBy") == Some(&AttributeValue::S("evt-2".into()))
                    && put.item().get("reasonCode")
                        == Some(&AttributeValue::S("PAYMENT_FAILED".into()))
                    && put.condition_expression() == Some("attribute_not_exists(pk)")
                    && items[1].put().is_some_and(|m| {
                        m.item().get("pk")
                            == Some(&AttributeValue::S("inventory-updater#evt-2".into()))
                    })
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&get, &write]);
        assert_eq!(
            inventory(client)
                .release(&ev("evt-2"), &order("o-1"), Ending::PaymentFailed)
                .await
                .unwrap(),
            ReleaseOutcome::EndedFirst
        );
        assert_eq!(write.num_calls(), 1);
    }

    /// Throttling is retryable, and so is a transaction cancelled for throttling; a validation
    /// error is permanent.
    #[tokio::test]
    async fn error_classification() {
        let throttled = mock!(Client::transact_write_items).then_http_response(dynamo_error(
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
        ));
        let cancelled_throttled = mock!(Client::transact_write_items).then_http_response(dynamo_error(
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"cancelled","CancellationReasons":[{"Code":"ThrottlingError"},{"Code":"None"},{"Code":"None"}]}"#,
        ));
        let invalid = mock!(Client::transact_write_items).then_http_response(dynamo_error(
            r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"One or more parameter values were invalid"}"#,
        ));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&throttled, &cancelled_throttled, &invalid],
            no_retry
        );
        let store = inventory(client);
        let o = order("o-1");
        let p = placed(&o, &[("sku-a", 1)]);
        let err = store.reserve(&ev("evt-1"), &p).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable, "{err:?}");
        let err = store.reserve(&ev("evt-1"), &p).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable, "{err:?}");
        let err = store.reserve(&ev("evt-1"), &p).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
    }

    /// Releasing reads the reservation, then gives back each line and marks the order released,
    /// in one transaction conditioned on it still being reserved.
    #[tokio::test]
    async fn release_request_shape() {
        let get = mock!(Client::get_item)
            .match_requests(|r| r.consistent_read() == Some(true))
            .then_output(|| {
                let o = order("o-1");
                let p = placed(&o, &[("sku-a", 2)]);
                order_read(Reservation::reserved(&p.lines, &p.customer, "evt-1"))
            });
        let write = mock!(Client::transact_write_items)
            .match_requests(|r| {
                let items = r.transact_items();
                let give_back = items[0].update().unwrap();
                let mark = items[1].update().unwrap();
                items.len() == 3
                    && items[2].put().is_some_and(|m| {
                        m.item().get("pk")
                            == Some(&AttributeValue::S("inventory-updater#evt-2".into()))
                    })
                    && give_back.update_expression() == "SET available = available + :q"
                    && give_back
                        .expression_attribute_values()
                        .and_then(|v| v.get(":q"))
                        == Some(&AttributeValue::N("2".into()))
                    && mark.condition_expression() == Some("#s = :from")
                    && mark.update_expression() == "SET #s = :to, #a0 = :a0, #a1 = :a1, #a2 = :a2"
                    && mark.expression_attribute_values().is_some_and(|v| {
                        v.get(":from") == Some(&AttributeValue::S("RESERVED".into()))
                            && v.get(":to") == Some(&AttributeValue::S("RELEASED".into()))
                            && v.get(":a0") == Some(&AttributeValue::S("evt-2".into()))
                            && v.get(":a2") == Some(&AttributeValue::S("CANCELLED".into()))
                    })
                    && mark.key().get("pk") == Some(&AttributeValue::S("ORDER#o-1".into()))
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&get, &write]);
        let store = inventory(client);
        let released = store
            .release(&ev("evt-2"), &order("o-1"), Ending::Cancelled)
            .await
            .unwrap();
        let ReleaseOutcome::Released(held) = released else {
            panic!("{released:?}");
        };
        assert_eq!(held.lines, [("sku-a".to_owned(), 2)].into());
        assert_eq!(held.customer.email.as_deref(), Some("a@b.co"));
        assert_eq!(write.num_calls(), 1);
    }
}
