//! [`StatusStore`] and [`StatusReader`] over DynamoDB.
//!
//! One table (`STATUS_TABLE`), keyed by `pk` (the order id, a string) and `sk` (a string):
//!
//! - `sk = "ORDER"`: the order's state: `status` (`PLACED`, ...), `statusRank` (a number, 1 to 6),
//!   `reason`, `lines` (a list of maps `{productId: S, quantity: N}`, one per product, in product
//!   order), `total` (a string, as the producer wrote it), `userId`: each only when known;
//! - `sk = "EVENT#<eventId>"`: one per event seen: `eventType`, `eventId`, `time` (when the
//!   producer wrote one).
//!
//! Recording an event is two writes, the order's item first:
//!
//! 1. an `UpdateItem` of the order's item that sets `status`, `statusRank` and `reason` only if
//!    the event's claim outranks the recorded one ([`crate::status::Claim`], as a condition:
//!    `attribute_not_exists(statusRank) OR statusRank < :rank`, and, for a claim with a reason,
//!    `OR (statusRank = :rank AND (attribute_not_exists(reason) OR reason < :reason))`), with the
//!    event's details (a placement's `SET` over what is there, any other's `if_not_exists`). When
//!    the condition fails, the same update without the status, if the event has details;
//! 2. a `PutItem` of the event's item, only if it does not exist (`attribute_not_exists(pk)`): it
//!    is the event's marker, written last, so that an event whose first write failed is applied
//!    again when Lambda retries it (the first write changes nothing the second time). An event
//!    item already there means the event was recorded before: [`Outcome::Duplicate`].
//!
//! So no ledger is needed: the table is its own. Errors are classified by
//! [`EffectError::from_sdk`]: throttling is retried, a request DynamoDB refuses as invalid is
//! permanent.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use shared::{EffectError, Outcome};

use crate::ports::{StatusReader, StatusStore};
use crate::status::{
    Claim, Details, Fact, HistoryEntry, Line, OrderState, OrderView, Precedence, Status,
};

/// The sort key of an order's state.
pub const ORDER_SK: &str = "ORDER";

/// The prefix of an event's sort key.
pub const EVENT_SK_PREFIX: &str = "EVENT#";

/// The sort key of the event `event_id`'s item.
pub fn event_sk(event_id: &str) -> String {
    format!("{EVENT_SK_PREFIX}{event_id}")
}

type Item = HashMap<String, AttributeValue>;

/// One `UpdateItem` of an order's item: its expressions, with the names and values they use.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderUpdate {
    /// The update expression (`SET ...`, with `REMOVE #reason` when a claim without a reason
    /// wins).
    pub update: String,
    /// The condition, for the update that sets the status.
    pub condition: Option<String>,
    /// The attribute names (`#status` for `status`, ...).
    pub names: HashMap<String, String>,
    /// The values (`:status`, `:rank`, ...).
    pub values: HashMap<String, AttributeValue>,
}

impl OrderUpdate {
    /// The update `fact` makes to its order's item: with the status (if its claim wins), or
    /// without (its details only; `None` when it has none).
    pub fn of(fact: &Fact, with_status: bool) -> Option<OrderUpdate> {
        let mut u = OrderUpdate {
            update: String::new(),
            condition: None,
            names: HashMap::new(),
            values: HashMap::new(),
        };
        let mut set: Vec<String> = Vec::new();
        let mut remove: Vec<&str> = Vec::new();
        if with_status {
            let Claim { status, reason } = &fact.claim;
            u.name("#status", "status");
            u.name("#rank", "statusRank");
            u.name("#reason", "reason");
            u.values
                .insert(":status".into(), AttributeValue::S(status.as_str().into()));
            u.values
                .insert(":rank".into(), AttributeValue::N(status.rank().to_string()));
            set.push("#status = :status".into());
            set.push("#rank = :rank".into());
            let outranks = "attribute_not_exists(#rank) OR #rank < :rank";
            match reason {
                Some(reason) => {
                    u.values
                        .insert(":reason".into(), AttributeValue::S(reason.clone()));
                    set.push("#reason = :reason".into());
                    u.condition = Some(format!(
                        "{outranks} OR (#rank = :rank AND (attribute_not_exists(#reason) OR \
                         #reason < :reason))"
                    ));
                }
                None => {
                    remove.push("#reason");
                    u.condition = Some(outranks.into());
                }
            }
        }
        let Details {
            lines,
            total,
            user_id,
        } = &fact.details;
        let details = [
            (
                "#lines",
                "lines",
                ":lines",
                lines.as_deref().map(lines_value),
            ),
            (
                "#total",
                "total",
                ":total",
                total.clone().map(AttributeValue::S),
            ),
            (
                "#user",
                "userId",
                ":user",
                user_id.clone().map(AttributeValue::S),
            ),
        ];
        for (name, attribute, placeholder, value) in details {
            let Some(value) = value else { continue };
            u.name(name, attribute);
            u.values.insert(placeholder.into(), value);
            set.push(match fact.precedence() {
                Precedence::Placement => format!("{name} = {placeholder}"),
                Precedence::Fill => format!("{name} = if_not_exists({name}, {placeholder})"),
            });
        }
        if set.is_empty() {
            return None;
        }
        u.update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            u.update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        Some(u)
    }

    fn name(&mut self, placeholder: &str, attribute: &str) {
        self.names.insert(placeholder.into(), attribute.into());
    }
}

/// The stored form of lines: a list of maps `{productId: S, quantity: N}`.
fn lines_value(lines: &[Line]) -> AttributeValue {
    AttributeValue::L(
        lines
            .iter()
            .map(|line| {
                AttributeValue::M(HashMap::from([
                    (
                        "productId".to_owned(),
                        AttributeValue::S(line.product_id.clone()),
                    ),
                    (
                        "quantity".to_owned(),
                        AttributeValue::N(line.quantity.to_string()),
                    ),
                ]))
            })
            .collect(),
    )
}

/// Why an item cannot be read: permanent (the table holds what this code never writes).
fn bad(item: &str, what: &str) -> EffectError {
    EffectError::permanent(format!("{item} item has a bad {what}"))
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// An order's state from its `ORDER` item.
fn order_state(item: &Item) -> Result<OrderState, EffectError> {
    let status = text(item, "status")
        .and_then(|s| Status::parse(&s))
        .ok_or_else(|| bad("order", "status"))?;
    let lines = match item.get("lines") {
        None => None,
        Some(value) => {
            let list = value.as_l().map_err(|_| bad("order", "lines"))?;
            let line = |v: &AttributeValue| -> Option<Line> {
                let m = v.as_m().ok()?;
                Some(Line {
                    product_id: m.get("productId")?.as_s().ok()?.clone(),
                    quantity: m.get("quantity")?.as_n().ok()?.parse().ok()?,
                })
            };
            let lines: Option<Vec<Line>> = list.iter().map(line).collect();
            Some(lines.ok_or_else(|| bad("order", "line"))?)
        }
    };
    Ok(OrderState {
        claim: Claim {
            status,
            reason: text(item, "reason"),
        },
        details: Details {
            lines,
            total: text(item, "total"),
            user_id: text(item, "userId"),
        },
    })
}

/// An event's history entry from its `EVENT#` item.
fn history_entry(item: &Item, sk: &str) -> Result<HistoryEntry, EffectError> {
    let event_id = text(item, "eventId")
        .or_else(|| sk.strip_prefix(EVENT_SK_PREFIX).map(str::to_owned))
        .ok_or_else(|| bad("event", "eventId"))?;
    Ok(HistoryEntry {
        event_type: text(item, "eventType").ok_or_else(|| bad("event", "eventType"))?,
        event_id,
        time: text(item, "time"),
    })
}

/// The view of `order_id` from its items (any order): `None` without its `ORDER` item. Items of
/// other sort keys are not this code's and are passed over.
fn view_of<'i>(
    order_id: &str,
    items: impl IntoIterator<Item = &'i Item>,
) -> Result<Option<OrderView>, EffectError> {
    let mut state = None;
    let mut history = Vec::new();
    for item in items {
        match text(item, "sk").as_deref() {
            Some(ORDER_SK) => state = Some(order_state(item)?),
            Some(sk) if sk.starts_with(EVENT_SK_PREFIX) => history.push(history_entry(item, sk)?),
            _ => {}
        }
    }
    Ok(state.map(|state| OrderView::new(order_id, state, history)))
}

/// Order statuses in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStatus {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStatus {
    /// A store over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Sends `update` to the order's item.
    async fn update(
        &self,
        order_id: &str,
        update: OrderUpdate,
    ) -> Result<(), aws_sdk_dynamodb::error::SdkError<UpdateItemError, HttpResponse>> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(order_id.to_owned()))
            .key("sk", AttributeValue::S(ORDER_SK.into()))
            .update_expression(update.update)
            .set_condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .send()
            .await
            .map(drop)
    }
}

type HttpResponse = aws_sdk_dynamodb::config::http::HttpResponse;

impl StatusStore for DynamoStatus {
    async fn record(&self, fact: &Fact) -> Result<Outcome, EffectError> {
        let order_id = fact.order_id.as_str();
        let with_status = OrderUpdate::of(fact, true)
            .ok_or_else(|| EffectError::permanent("an update with the status is never empty"))?;
        match self.update(order_id, with_status).await {
            Ok(()) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                // The recorded claim is as high or higher: the details only.
                if let Some(details) = OrderUpdate::of(fact, false) {
                    self.update(order_id, details)
                        .await
                        .map_err(|e| EffectError::from_sdk("UpdateItem", e))?;
                }
            }
            Err(e) => return Err(EffectError::from_sdk("UpdateItem", e)),
        }

        let entry = &fact.entry;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(order_id.to_owned()))
            .item("sk", AttributeValue::S(event_sk(&entry.event_id)))
            .item("eventType", AttributeValue::S(entry.event_type.clone()))
            .item("eventId", AttributeValue::S(entry.event_id.clone()))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(time) = &entry.time {
            put = put.item("time", AttributeValue::S(time.clone()));
        }
        let recorded_before = |e: &PutItemError| e.is_conditional_check_failed_exception();
        match put.send().await {
            Ok(_) => Ok(Outcome::Applied),
            Err(e) if e.as_service_error().is_some_and(recorded_before) => Ok(Outcome::Duplicate),
            Err(e) => Err(EffectError::from_sdk("PutItem", e)),
        }
    }
}

impl StatusReader for DynamoStatus {
    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, EffectError> {
        let mut items: Vec<Item> = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(order_id.to_owned()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| EffectError::from_sdk("Query", e))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        view_of(order_id, &items)
    }

    async fn scan_all(&self) -> Result<BTreeMap<String, OrderView>, EffectError> {
        let mut by_order: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| EffectError::from_sdk("Scan", e))?;
            for item in page.items() {
                if let Some(pk) = text(item, "pk") {
                    by_order.entry(pk).or_default().push(item.clone());
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        let mut views = BTreeMap::new();
        for (order_id, items) in by_order {
            if let Some(view) = view_of(&order_id, &items)? {
                views.insert(order_id, view);
            }
        }
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::operation::scan::ScanOutput;
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use orders::ReasonCode;
    use shared::fakes::dynamodb_error;
    use shared::ErrorClass;

    use super::*;
    use crate::status::EventKind;

    const CONDITION_FAILED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#;
    const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#;
    const INVALID: &str = r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"One or more parameter values were invalid"}"#;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.into())
    }

    fn no_retry(c: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
        c.retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
    }

    fn store(client: Client) -> DynamoStatus {
        DynamoStatus::new(client, "statuses".into())
    }

    fn lines() -> Vec<Line> {
        vec![Line {
            product_id: "sku-a".into(),
            quantity: 2,
        }]
    }

    fn fact(id: &str, kind: EventKind, reason: Option<&str>, details: Details) -> Fact {
        let entry = HistoryEntry {
            event_type: "EVENT_TYPE".into(),
            event_id: id.into(),
            time: Some("2024-05-01T10:00:00Z".into()),
        };
        Fact::new("o-1", entry, kind, reason.map(str::to_owned), details)
    }

    fn placement() -> Fact {
        let details = Details {
            lines: Some(lines()),
            total: Some("12.50".into()),
            user_id: Some("u-1".into()),
        };
        fact("e1", EventKind::Placed, None, details)
    }

    /// Whether `r` is an update of order o-1's item in table `statuses`.
    fn of_the_order(r: &UpdateItemInput) -> bool {
        let key = r.key().unwrap();
        r.table_name() == Some("statuses")
            && key.get("pk") == Some(&s("o-1"))
            && key.get("sk") == Some(&s("ORDER"))
            && key.len() == 2
    }

    /// The expressions of each update: the status with its rank condition, and the reason with
    /// it (or removed); details over what is there for a placement, else only where absent; no
    /// name or value the expressions do not use.
    #[test]
    fn the_updates_expressions() {
        let placed = OrderUpdate::of(&placement(), true).unwrap();
        assert_eq!(
            placed.update,
            "SET #status = :status, #rank = :rank, #lines = :lines, #total = :total, \
             #user = :user REMOVE #reason"
        );
        assert_eq!(
            placed.condition.as_deref(),
            Some("attribute_not_exists(#rank) OR #rank < :rank")
        );
        assert_eq!(placed.names.len(), 6);
        assert_eq!(placed.names["#rank"], "statusRank");
        assert_eq!(placed.names["#user"], "userId");
        assert_eq!(placed.values[":rank"], n("1"));
        assert_eq!(placed.values[":status"], s("PLACED"));
        assert_eq!(
            placed.values[":lines"],
            AttributeValue::L(vec![AttributeValue::M(HashMap::from([
                ("productId".to_owned(), s("sku-a")),
                ("quantity".to_owned(), n("2")),
            ]))])
        );

        let rejected = fact(
            "e2",
            EventKind::Rejected,
            Some("out of stock"),
            Details::default(),
        );
        let update = OrderUpdate::of(&rejected, true).unwrap();
        assert_eq!(
            update.update,
            "SET #status = :status, #rank = :rank, #reason = :reason"
        );
        assert_eq!(
            update.condition.as_deref(),
            Some(
                "attribute_not_exists(#rank) OR #rank < :rank OR (#rank = :rank AND \
                 (attribute_not_exists(#reason) OR #reason < :reason))"
            )
        );
        assert_eq!(update.values[":rank"], n("6"));
        assert_eq!(update.values[":reason"], s("out of stock"));
        assert_eq!(OrderUpdate::of(&rejected, false), None);

        let reserved = Details {
            total: Some("12.50".into()),
            ..Details::default()
        };
        let reserved = fact("e3", EventKind::Reserved, None, reserved);
        let details = OrderUpdate::of(&reserved, false).unwrap();
        assert_eq!(details.update, "SET #total = if_not_exists(#total, :total)");
        assert_eq!(details.condition, None);
        assert_eq!(
            details.names,
            HashMap::from([("#total".to_owned(), "total".to_owned())])
        );
        assert_eq!(details.values.len(), 1);
    }

    /// A first event: the order's item updated under the rank condition, then the event's item
    /// put only if absent.
    #[tokio::test]
    async fn an_event_updates_the_order_then_writes_its_item() {
        let update = mock!(Client::update_item)
            .match_requests(|r| {
                of_the_order(r)
                    && r.update_expression()
                        == Some(
                            "SET #status = :status, #rank = :rank, #lines = :lines, \
                             #total = :total, #user = :user REMOVE #reason",
                        )
                    && r.condition_expression()
                        == Some("attribute_not_exists(#rank) OR #rank < :rank")
                    && r.expression_attribute_values().and_then(|v| v.get(":rank")) == Some(&n("1"))
                    && r.expression_attribute_names()
                        .and_then(|v| v.get("#status"))
                        == Some(&"status".to_owned())
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let put = mock!(Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.table_name() == Some("statuses")
                    && item.get("pk") == Some(&s("o-1"))
                    && item.get("sk") == Some(&s("EVENT#e1"))
                    && item.get("eventType") == Some(&s("EVENT_TYPE"))
                    && item.get("eventId") == Some(&s("e1"))
                    && item.get("time") == Some(&s("2024-05-01T10:00:00Z"))
                    && item.len() == 5
                    && r.condition_expression() == Some("attribute_not_exists(pk)")
            })
            .then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&update, &put]);
        let outcome = store(client).record(&placement()).await.unwrap();
        assert_eq!(outcome, Outcome::Applied);
        assert_eq!((update.num_calls(), put.num_calls()), (1, 1));
    }

    /// An event whose claim does not win: the same update without the status (its details only,
    /// no condition); its item already there: a duplicate.
    #[tokio::test]
    async fn an_outranked_event_writes_its_details_only() {
        let details = Details {
            lines: Some(lines()),
            ..Details::default()
        };
        let reserved = fact("e2", EventKind::Reserved, None, details);
        let with_status = mock!(Client::update_item)
            .match_requests(|r| {
                of_the_order(r) && r.update_expression().is_some_and(|u| u.contains("#status"))
            })
            .then_http_response(dynamodb_error(CONDITION_FAILED));
        let details_only = mock!(Client::update_item)
            .match_requests(|r| {
                of_the_order(r)
                    && r.update_expression() == Some("SET #lines = if_not_exists(#lines, :lines)")
                    && r.condition_expression().is_none()
                    && r.expression_attribute_names().map(HashMap::len) == Some(1)
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let put = mock!(Client::put_item)
            .match_requests(|r| r.item().unwrap().get("sk") == Some(&s("EVENT#e2")))
            .then_http_response(dynamodb_error(CONDITION_FAILED));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&with_status, &details_only, &put],
            no_retry
        );
        let outcome = store(client).record(&reserved).await.unwrap();
        assert_eq!(outcome, Outcome::Duplicate);
        let calls = (
            with_status.num_calls(),
            details_only.num_calls(),
            put.num_calls(),
        );
        assert_eq!(calls, (1, 1, 1));
    }

    /// An outranked event with no details makes no second update.
    #[tokio::test]
    async fn an_outranked_event_without_details_only_writes_its_item() {
        let released = fact(
            "e3",
            EventKind::Released(Some(ReasonCode::PaymentFailed)),
            Some("payment failed"),
            Details::default(),
        );
        let update = mock!(Client::update_item)
            .match_requests(|r| {
                r.expression_attribute_values().and_then(|v| v.get(":rank")) == Some(&n("4"))
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":status"))
                        == Some(&s("PAYMENT_FAILED"))
            })
            .then_http_response(dynamodb_error(CONDITION_FAILED));
        let put = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&update, &put],
            no_retry
        );
        let outcome = store(client).record(&released).await.unwrap();
        assert_eq!(outcome, Outcome::Applied);
        assert_eq!((update.num_calls(), put.num_calls()), (1, 1));
    }

    /// Throttling is retryable (the event's item is not written); a request DynamoDB refuses as
    /// invalid is permanent.
    #[tokio::test]
    async fn errors_are_classified() {
        let throttled = mock!(Client::update_item).then_http_response(dynamodb_error(THROTTLED));
        let updated =
            mock!(Client::update_item).then_output(|| UpdateItemOutput::builder().build());
        let invalid = mock!(Client::put_item).then_http_response(dynamodb_error(INVALID));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&throttled, &updated, &invalid],
            no_retry
        );
        let store = store(client);
        let err = store.record(&placement()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert!(err.to_string().contains("UpdateItem"), "{err}");
        let err = store.record(&placement()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(err.to_string().contains("PutItem"), "{err}");
        assert_eq!(invalid.num_calls(), 1);
    }

    fn order_item() -> Item {
        HashMap::from([
            ("pk".to_owned(), s("o-1")),
            ("sk".to_owned(), s("ORDER")),
            ("status".to_owned(), s("REJECTED")),
            ("statusRank".to_owned(), n("6")),
            ("reason".to_owned(), s("out of stock")),
            ("total".to_owned(), s("12.50")),
            ("userId".to_owned(), s("u-1")),
            (
                "lines".to_owned(),
                AttributeValue::L(vec![AttributeValue::M(HashMap::from([
                    ("productId".to_owned(), s("sku-a")),
                    ("quantity".to_owned(), n("2")),
                ]))]),
            ),
        ])
    }

    fn event_item(pk: &str, id: &str, event_type: &str, time: Option<&str>) -> Item {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(&event_sk(id))),
            ("eventType".to_owned(), s(event_type)),
            ("eventId".to_owned(), s(id)),
        ]);
        if let Some(time) = time {
            item.insert("time".into(), s(time));
        }
        item
    }

    /// `get` queries the order's partition with a consistent read, page after page, and makes
    /// the view: the state from the `ORDER` item, the history sorted by time then id.
    #[tokio::test]
    async fn get_reads_every_page() {
        let first = mock!(Client::query)
            .match_requests(|r| {
                r.table_name() == Some("statuses")
                    && r.key_condition_expression() == Some("pk = :pk")
                    && r.expression_attribute_values().and_then(|v| v.get(":pk")) == Some(&s("o-1"))
                    && r.consistent_read() == Some(true)
                    && r.exclusive_start_key().is_none()
            })
            .then_output(|| {
                QueryOutput::builder()
                    .items(event_item(
                        "o-1",
                        "e2",
                        "INVENTORY_REJECTED",
                        Some("2024-05-01T10:00:01Z"),
                    ))
                    .items(order_item())
                    .last_evaluated_key("pk", s("o-1"))
                    .last_evaluated_key("sk", s("ORDER"))
                    .build()
            });
        let second = mock!(Client::query)
            .match_requests(|r| {
                r.exclusive_start_key().and_then(|k| k.get("sk")) == Some(&s("ORDER"))
                    && r.consistent_read() == Some(true)
            })
            .then_output(|| {
                QueryOutput::builder()
                    .items(event_item(
                        "o-1",
                        "e1",
                        "ORDER_PLACED",
                        Some("2024-05-01T10:00:00Z"),
                    ))
                    .items(event_item("o-1", "e0", "ORDER_CREATED", None))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&first, &second]);
        let view = store(client).get("o-1").await.unwrap().unwrap();
        assert_eq!(view.user_id.as_deref(), Some("u-1"));
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            serde_json::json!({
                "orderId": "o-1",
                "status": "REJECTED",
                "lines": [{"productId": "sku-a", "quantity": 2}],
                "total": "12.50",
                "reason": "out of stock",
                "history": [
                    {"type": "ORDER_CREATED", "eventId": "e0", "time": null},
                    {"type": "ORDER_PLACED", "eventId": "e1", "time": "2024-05-01T10:00:00Z"},
                    {"type": "INVENTORY_REJECTED", "eventId": "e2", "time": "2024-05-01T10:00:01Z"},
                ]
            })
        );
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    /// An order with no items is none; a read that fails says so, classified.
    #[tokio::test]
    async fn get_of_an_unknown_order() {
        let empty = mock!(Client::query).then_output(|| QueryOutput::builder().build());
        let throttled = mock!(Client::query).then_http_response(dynamodb_error(THROTTLED));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&empty, &throttled],
            no_retry
        );
        let store = store(client);
        assert_eq!(store.get("o-9").await.unwrap(), None);
        let err = store.get("o-9").await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable);
    }

    /// `scan_all` reads the whole table, page after page, into one view per order, by id; an
    /// order's items may be split across pages.
    #[tokio::test]
    async fn scan_all_reads_every_page() {
        let first = mock!(Client::scan)
            .match_requests(|r| {
                r.table_name() == Some("statuses")
                    && r.consistent_read() == Some(true)
                    && r.exclusive_start_key().is_none()
            })
            .then_output(|| {
                let mut other = order_item();
                other.insert("pk".into(), s("o-2"));
                other.insert("status".into(), s("PAID"));
                ScanOutput::builder()
                    .items(other)
                    .items(event_item("o-1", "e1", "ORDER_PLACED", None))
                    .last_evaluated_key("pk", s("o-1"))
                    .build()
            });
        let second = mock!(Client::scan)
            .match_requests(|r| r.exclusive_start_key().is_some())
            .then_output(|| ScanOutput::builder().items(order_item()).build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&first, &second]);
        let all = store(client).scan_all().await.unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["o-1", "o-2"]);
        assert_eq!(all["o-1"].status, Status::Rejected);
        assert_eq!(all["o-1"].history.len(), 1);
        assert_eq!(all["o-2"].status, Status::Paid);
        assert!(all["o-2"].history.is_empty());
    }

    /// An item this code never writes (a status it does not know) is an error, not a guess.
    #[test]
    fn a_bad_item_is_refused() {
        let mut item = order_item();
        item.insert("status".into(), s("SHIPPED"));
        let err = view_of("o-1", [&item]).unwrap_err();
        assert!(err.to_string().contains("status"), "{err}");
        let events_only = event_item("o-1", "e1", "ORDER_PLACED", None);
        assert_eq!(view_of("o-1", [&events_only]).unwrap(), None);
    }
}
