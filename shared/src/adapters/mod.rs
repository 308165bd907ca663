//! The real adapters of the ports, over the AWS SDK: SES, DynamoDB and SQS.

pub mod dynamodb;
pub mod ses;
pub mod sqs;

pub use dynamodb::{DynamoInventory, DynamoLedger};
pub use ses::SesEmailSender;
pub use sqs::SqsPoisonSink;
