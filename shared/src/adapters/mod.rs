//! The real adapters of the ports, over the AWS SDK.

pub mod dynamodb;
pub mod ses;

pub use dynamodb::{DynamoInventory, DynamoLedger};
pub use ses::SesEmailSender;
