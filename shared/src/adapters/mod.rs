//! The adapters every function needs, over the AWS SDK: the dead-letter queue ([`dlq`], SQS and
//! S3) where poison records go, and the idempotency ledger ([`ledger`], DynamoDB).

pub mod dlq;
pub mod ledger;

pub use dlq::{DeadLetterQueue, DlqSettings, SqsPoisonSink};
pub use ledger::{DynamoLedger, LedgerSettings, Markers};
