//! The idempotency ledger over DynamoDB: the claims of [`crate::idempotency::once`]
//! ([`DynamoLedger`]), and the markers an effect in DynamoDB writes in its own transaction
//! ([`Markers`]).
//!
//! One table, keyed by the string attribute `pk` = `<function>#<event key>`, so two functions that
//! handle the same event keep separate entries. Items expire through the table's TTL attribute
//! `expiresAt` (epoch seconds). The TTL must outlast the longest time a record can be redelivered:
//! the stream's retention, or the event source mapping's `MaximumRecordAgeInSeconds` when it is
//! set (at most 7 days; the default TTL is 8 days).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};

use crate::engine::error::EffectError;
use crate::engine::idempotency::{Claim, EffectKey, IdempotencyStore, Lease, Mark, PAYLOAD_REUSED};
use crate::platform::config::{ConfigError, Env, Problems};

/// The ledger's settings.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `IDEMPOTENCY_TABLE` | required | the DynamoDB table of markers and claims (key `pk`, TTL `expiresAt`) |
/// | `IDEMPOTENCY_TTL_SECONDS` | 691200 (8 days) | how long an event is remembered |
/// | `IDEMPOTENCY_LEASE_SECONDS` | 60 | how long a claim holds before another delivery may take it |
/// | `IDEMPOTENCY_PAYLOAD_VALIDATION` | true | a done key seen with another payload is poison, not a duplicate |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// The table.
    pub table: String,
    /// How long an event is remembered.
    pub ttl: Duration,
    /// How long a claim holds.
    pub lease: Duration,
    /// Whether a done key seen with another payload hash is poison.
    pub validate_payload: bool,
}

impl LedgerSettings {
    /// Reads the settings, keeping each problem in `problems`.
    pub fn read(env: &Env, problems: &mut Problems) -> Self {
        const DAY: u64 = 24 * 3600;
        let ttl = problems.check(
            env.number(
                "IDEMPOTENCY_TTL_SECONDS",
                8 * DAY,
                60..=366 * DAY,
                " of seconds",
            ),
            8 * DAY,
        );
        let lease = problems.check(
            env.number("IDEMPOTENCY_LEASE_SECONDS", 60, 1..=86_400, " of seconds"),
            60,
        );
        if lease >= ttl {
            problems.push(ConfigError::Invalid {
                name: "IDEMPOTENCY_LEASE_SECONDS",
                value: lease.to_string(),
                reason: "expected fewer seconds than IDEMPOTENCY_TTL_SECONDS".into(),
            });
        }
        Self {
            table: problems.required(env, "IDEMPOTENCY_TABLE"),
            ttl: Duration::from_secs(ttl),
            lease: Duration::from_secs(lease),
            validate_payload: problems
                .check(env.flag("IDEMPOTENCY_PAYLOAD_VALIDATION", true), true),
        }
    }

    /// When an item written now expires, in epoch seconds.
    fn expires_at(&self) -> u64 {
        epoch_seconds(SystemTime::now()) + self.ttl.as_secs()
    }
}

/// The ledger key of an event for one effect: `<scope>#<event key>`.
pub fn ledger_key(scope: &str, event_key: &str) -> String {
    format!("{scope}#{event_key}")
}

/// Seconds since the Unix epoch, the unit of DynamoDB's TTL.
fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Item = HashMap<String, AttributeValue>;

/// A ledger item's `status` once its effect is done.
const DONE: &str = Mark::Done.as_str();
/// A ledger item's `status` while a delivery holds its claim.
const IN_PROGRESS: &str = "IN_PROGRESS";

/// The attribute of a ledger entry or marker that holds its payload's hash.
const PAYLOAD_HASH: &str = "payloadHash";

/// The payload hash stored in a ledger entry or marker, if any.
fn stored_hash(item: &Item) -> Option<&str> {
    item.get(PAYLOAD_HASH)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// The payload hash to store for `event`: none when validation is off.
fn hash_to_store(config: &LedgerSettings, event: &EffectKey<'_>) -> Option<AttributeValue> {
    event
        .payload_hash
        .filter(|_| config.validate_payload)
        .map(|h| AttributeValue::S(h.to_string()))
}

/// The idempotency markers an effect in DynamoDB writes in its own transaction: a redelivered
/// event fails the marker's condition, and the transaction changes nothing. They are the ledger's
/// items, in its table and under its scope.
#[derive(Debug, Clone)]
pub struct Markers(DynamoLedger);

impl Markers {
    /// Markers in the ledger's table, keyed under `scope` (the function's name).
    pub fn new(client: aws_sdk_dynamodb::Client, config: LedgerSettings, scope: &str) -> Self {
        Self(DynamoLedger::new(client, config, scope))
    }

    /// The event's marker, with its payload's hash, written only if absent: the transaction
    /// fails on a redelivery, and the marker there comes back with the cancellation.
    pub fn put(&self, event: &EffectKey<'_>) -> Result<TransactWriteItem, EffectError> {
        let ledger = &self.0;
        let put = Put::builder()
            .table_name(&ledger.config.table)
            .item("pk", ledger.key(&event.key))
            .item("status", AttributeValue::S(DONE.into()))
            .item(
                "expiresAt",
                AttributeValue::N(ledger.config.expires_at().to_string()),
            )
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = match hash_to_store(&ledger.config, event) {
            Some(hash) => put.item(PAYLOAD_HASH, hash),
            None => put,
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(EffectError::unbuildable)?)
            .build())
    }

    /// Called when the event's marker failed its condition (the key was applied before): an
    /// error if it was applied with another payload. The marker comes back with the cancellation;
    /// a server that does not return it is asked.
    pub async fn check_reuse(
        &self,
        marker: &CancellationReason,
        event: &EffectKey<'_>,
    ) -> Result<(), EffectError> {
        if hash_to_store(&self.0.config, event).is_none() {
            return Ok(());
        }
        let reused = match marker.item() {
            Some(item) => event.reused(stored_hash(item)),
            None => event.reused(
                self.0
                    .read(&event.key)
                    .await?
                    .as_ref()
                    .and_then(stored_hash),
            ),
        };
        if reused {
            Err(EffectError::bad_data(PAYLOAD_REUSED))
        } else {
            Ok(())
        }
    }
}

/// The claim ledger over a DynamoDB table (key `pk`, TTL attribute `expiresAt`).
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    config: LedgerSettings,
    scope: String,
}

impl DynamoLedger {
    /// A ledger whose keys are prefixed with `scope` (the function's name).
    pub fn new(client: aws_sdk_dynamodb::Client, config: LedgerSettings, scope: &str) -> Self {
        Self {
            client,
            config,
            scope: scope.to_owned(),
        }
    }

    /// Forgets the entry of `event_key` if its outcome is unknown (`UNKNOWN`), so that the
    /// function acts on the event when it comes again: for a person who checked that the effect
    /// did not happen. Answers whether there was such an entry.
    pub async fn forget_unknown(&self, event_key: &str) -> Result<bool, EffectError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.config.table)
            .key("pk", self.key(event_key))
            .condition_expression("#s = :unknown")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(
                ":unknown",
                AttributeValue::S(Mark::Unknown.as_str().into()),
            )
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(EffectError::from_sdk("DeleteItem", e)),
        }
    }

    fn key(&self, event_key: &str) -> AttributeValue {
        AttributeValue::S(ledger_key(&self.scope, event_key))
    }

    async fn read(&self, event_key: &str) -> Result<Option<Item>, EffectError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .key("pk", self.key(event_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| EffectError::from_sdk("GetItem", e))?;
        Ok(got.item)
    }
}

impl IdempotencyStore for DynamoLedger {
    async fn claim(&self, event: &EffectKey<'_>) -> Result<Claim, EffectError> {
        let event_key = &*event.key;
        let now = epoch_seconds(SystemTime::now());
        let lease = Lease::new();
        let put = self
            .client
            .put_item()
            .table_name(&self.config.table)
            .item("pk", self.key(event_key))
            .item("status", AttributeValue::S(IN_PROGRESS.into()))
            .item("token", AttributeValue::S(lease.token.clone()))
            .item(
                "leaseExpiresAt",
                AttributeValue::N((now + self.config.lease.as_secs()).to_string()),
            )
            .item(
                "expiresAt",
                AttributeValue::N((now + self.config.ttl.as_secs()).to_string()),
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#s = :in_progress AND leaseExpiresAt < :now)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = match hash_to_store(&self.config, event) {
            Some(hash) => put.item(PAYLOAD_HASH, hash),
            None => put,
        };
        let err = match put.send().await {
            Ok(_) => return Ok(Claim::Claimed(lease)),
            Err(err) => err,
        };
        let existing = match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(e)) => match e.item() {
                Some(item) => Some(item.clone()),
                // Not every server returns the old item: read it.
                None => self.read(event_key).await?,
            },
            _ => return Err(EffectError::from_sdk("PutItem", err)),
        };
        let status = existing
            .as_ref()
            .and_then(|i| i.get("status"))
            .and_then(|v| v.as_s().ok());
        let stored = existing.as_ref().and_then(stored_hash);
        Ok(match status.map(String::as_str) {
            // Gone since (expired, or released): another delivery may claim it at once.
            None => Claim::InProgress,
            _ if hash_to_store(&self.config, event).is_some() && event.reused(stored) => {
                Claim::Reused
            }
            Some(IN_PROGRESS) => Claim::InProgress,
            Some(s) if s == Mark::Unknown.as_str() => Claim::Unknown,
            // DONE: settled, never repeated.
            Some(_) => Claim::AlreadyDone,
        })
    }

    async fn complete(
        &self,
        event_key: &str,
        lease: &Lease,
        mark: Mark,
        note: &str,
    ) -> Result<(), EffectError> {
        self.client
            .update_item()
            .table_name(&self.config.table)
            .key("pk", self.key(event_key))
            .update_expression("SET #s = :done, note = :note REMOVE leaseExpiresAt")
            .condition_expression("#t = :token")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":done", AttributeValue::S(mark.as_str().into()))
            .expression_attribute_values(":note", AttributeValue::S(note.to_owned()))
            .expression_attribute_values(":token", AttributeValue::S(lease.token.clone()))
            .return_values(ReturnValue::None)
            .send()
            .await
            .map_err(|e| EffectError::from_sdk("UpdateItem", e))?;
        Ok(())
    }

    async fn release(&self, event_key: &str, lease: &Lease) -> Result<(), EffectError> {
        self.client
            .delete_item()
            .table_name(&self.config.table)
            .key("pk", self.key(event_key))
            .condition_expression("#t = :token")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":token", AttributeValue::S(lease.token.clone()))
            .send()
            .await
            .map_err(|e| EffectError::from_sdk("DeleteItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;
    use crate::fakes::{
        dynamodb_error as dynamo_error, effect_key as ev, ledger_settings as ledger_config,
    };

    fn no_retry(c: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
        c.retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
    }

    /// The hash `ev` carries, as stored.
    fn ev_hash() -> String {
        ev("evt-1").payload_hash.unwrap().to_string()
    }

    /// The settings: the table is required, the lease must be shorter than the TTL.
    #[test]
    fn settings() {
        let read = |pairs: &[(&str, &str)]| {
            Problems::collect(|p| LedgerSettings::read(&Env::from_pairs(pairs.to_vec()), p))
        };
        assert_eq!(
            read(&[]).unwrap_err().to_string(),
            "IDEMPOTENCY_TABLE is missing: set it in the function's environment"
        );
        assert!(read(&[
            ("IDEMPOTENCY_TABLE", "t"),
            ("IDEMPOTENCY_LEASE_SECONDS", "0")
        ])
        .is_err());
        let cfg = read(&[("IDEMPOTENCY_TABLE", "t")]).unwrap();
        assert_eq!(cfg.ttl, Duration::from_secs(691_200));
        assert_eq!(cfg.lease, Duration::from_secs(60));
        assert!(cfg.validate_payload);
    }

    /// Forgetting deletes the entry only while its outcome is unknown.
    #[tokio::test]
    async fn forget_unknown_request_shape() {
        use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
        let forgotten = mock!(Client::delete_item)
            .match_requests(|r| {
                r.table_name() == Some("idempotency")
                    && r.key().and_then(|k| k.get("pk"))
                        == Some(&AttributeValue::S("email-notifier#evt-1".into()))
                    && r.condition_expression() == Some("#s = :unknown")
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":unknown"))
                        == Some(&AttributeValue::S("UNKNOWN".into()))
            })
            .then_output(|| DeleteItemOutput::builder().build());
        let kept = mock!(Client::delete_item).then_http_response(dynamo_error(
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
        ));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&forgotten, &kept]);
        let ledger = DynamoLedger::new(client, ledger_config(), "email-notifier");
        assert!(ledger.forget_unknown("evt-1").await.unwrap());
        assert!(!ledger.forget_unknown("evt-1").await.unwrap());
    }

    /// A claim is a conditional put: absent, or in progress with an expired lease.
    #[tokio::test]
    async fn ledger_claim_request_shape() {
        use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
        let rule = mock!(Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.table_name() == Some("idempotency")
                    && item.get("pk") == Some(&AttributeValue::S("email-notifier#evt-1".into()))
                    && item.get("status") == Some(&AttributeValue::S("IN_PROGRESS".into()))
                    && item.contains_key("token")
                    && item.contains_key("leaseExpiresAt")
                    && item.contains_key("expiresAt")
                    && item.get("payloadHash") == Some(&AttributeValue::S(ev_hash()))
                    && r.condition_expression()
                        == Some("attribute_not_exists(pk) OR (#s = :in_progress AND leaseExpiresAt < :now)")
            })
            .then_output(|| PutItemOutput::builder().build());
        let ledger = DynamoLedger::new(
            mock_client!(aws_sdk_dynamodb, [&rule]),
            ledger_config(),
            "email-notifier",
        );
        assert!(matches!(
            ledger.claim(&ev("evt-1")).await.unwrap(),
            Claim::Claimed(_)
        ));
    }

    /// A failed claim reads the old item from the error: done means a duplicate, unless it was
    /// claimed with another payload's hash (reused); anything else a claim in progress. An entry
    /// with no hash matches; with validation off, hashes are neither written nor compared.
    #[tokio::test]
    async fn ledger_claim_conflicts() {
        let answer = |status: &str, hash: Option<&str>| {
            let hash = hash.map_or(String::new(), |h| {
                format!(r#","payloadHash":{{"S":"{h}"}}"#)
            });
            let body = format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed","Item":{{"pk":{{"S":"email-notifier#evt-1"}},"status":{{"S":"{status}"}}{hash}}}}}"#
            );
            mock!(Client::put_item)
                .then_http_response(dynamo_error(Box::leak(body.into_boxed_str())))
        };
        let other = "0123456789abcdef0123456789abcdef";
        let rules = [
            answer("DONE", Some(&ev_hash())),
            answer("DONE", Some(other)),
            answer("DONE", None),
            answer("IN_PROGRESS", Some(other)),
            answer("IN_PROGRESS", Some(&ev_hash())),
            answer("UNKNOWN", Some(&ev_hash())),
        ];
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&rules[0], &rules[1], &rules[2], &rules[3], &rules[4], &rules[5]],
            no_retry
        );
        let ledger = DynamoLedger::new(client, ledger_config(), "email-notifier");
        for expected in [
            Claim::AlreadyDone,
            Claim::Reused,
            Claim::AlreadyDone,
            Claim::Reused,
            Claim::InProgress,
            Claim::Unknown,
        ] {
            assert_eq!(ledger.claim(&ev("evt-1")).await.unwrap(), expected);
        }

        let body = format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed","Item":{{"pk":{{"S":"email-notifier#evt-1"}},"status":{{"S":"DONE"}},"payloadHash":{{"S":"{other}"}}}}}}"#
        );
        let unchecked = mock!(Client::put_item)
            .match_requests(|r| !r.item().unwrap().contains_key("payloadHash"))
            .then_http_response(dynamo_error(Box::leak(body.into_boxed_str())));
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&unchecked],
            no_retry
        );
        let config = LedgerSettings {
            validate_payload: false,
            ..ledger_config()
        };
        let ledger = DynamoLedger::new(client, config, "email-notifier");
        assert_eq!(
            ledger.claim(&ev("evt-1")).await.unwrap(),
            Claim::AlreadyDone
        );
    }
}
