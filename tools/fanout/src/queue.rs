//! The dead-letter queue, read without hiding anything: what it holds, received and given back.
//!
//! SQS hides a received message (its visibility timeout) until it is deleted or given back. A tool
//! that lists by receiving must give every message back at once, or the queue looks empty to the
//! next look and to the DLQ alarm (which counts visible messages). So [`Held`] gives back what it
//! holds as soon as its work is done, on Ctrl-C too, and a redrive deletes only what it put back.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, Message};
use local_esm::failure::OnFailure;
use shared::adapters::dlq::PoisonMessage;

/// What a message of the queue is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A record a function captured as poison (whole, or with a pointer to the failure bucket).
    Poison(Box<PoisonMessage>),
    /// A batch the event source mapping gave up on: metadata only, the records are in the stream.
    OnFailure(Box<OnFailure>),
    /// Neither: kept, and shown as it is.
    Other(String),
}

impl Kind {
    /// Reads a message's body.
    pub fn of(body: &str) -> Self {
        if let Ok(batch) = serde_json::from_str::<OnFailure>(body) {
            let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if numeric(&batch.batch.start_sequence_number)
                && numeric(&batch.batch.end_sequence_number)
                && !batch.batch.shard_id.is_empty()
            {
                return Kind::OnFailure(Box::new(batch));
            }
        }
        match serde_json::from_str::<PoisonMessage>(body) {
            Ok(poison) => Kind::Poison(Box::new(poison)),
            Err(_) => Kind::Other(body.to_owned()),
        }
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its id.
    pub id: String,
    /// What it is.
    pub kind: Kind,
    receipt: String,
}

/// The messages this tool received and holds: hidden from others until given back or deleted.
#[derive(Debug)]
pub struct Held {
    sqs: aws_sdk_sqs::Client,
    url: String,
    messages: Vec<Received>,
    deleted: HashSet<String>,
}

impl Held {
    /// Receives every message of the queue at `url`, each hidden for `hide` while held: as long
    /// as the work on it may take, and no longer, should the tool be killed. Ctrl-C while
    /// receiving gives back what was received, and ends the program.
    pub async fn receive_all(
        sqs: &aws_sdk_sqs::Client,
        url: &str,
        hide: Duration,
    ) -> Result<Self, String> {
        let mut held = Self {
            sqs: sqs.clone(),
            url: url.to_owned(),
            messages: Vec::new(),
            deleted: HashSet::new(),
        };
        let interrupted = tokio::select! {
            received = held.receive(hide) => received.map(|()| false),
            _ = tokio::signal::ctrl_c() => Ok(true),
        };
        match interrupted {
            Ok(false) => Ok(held),
            Ok(true) => {
                held.give_back().await;
                std::process::exit(130)
            }
            Err(why) => {
                held.give_back().await;
                Err(why)
            }
        }
    }

    async fn receive(&mut self, hide: Duration) -> Result<(), String> {
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .visibility_timeout(hide.as_secs() as i32)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(|e| failed("ReceiveMessage", &e))?;
            let messages = got.messages();
            if messages.is_empty() {
                return Ok(());
            }
            self.messages
                .extend(messages.iter().filter_map(|m: &Message| {
                    Some(Received {
                        id: m.message_id()?.to_owned(),
                        kind: Kind::of(m.body().unwrap_or_default()),
                        receipt: m.receipt_handle()?.to_owned(),
                    })
                }));
        }
    }

    /// The messages held.
    pub fn messages(&self) -> &[Received] {
        &self.messages
    }

    /// Deletes `messages`: only what was put back.
    pub async fn delete(&mut self, messages: &[&Received]) -> Result<(), String> {
        for m in messages {
            self.sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(&m.receipt)
                .send()
                .await
                .map_err(|e| failed("DeleteMessage", &e))?;
            self.deleted.insert(m.receipt.clone());
        }
        Ok(())
    }

    /// Gives back, visible at once, every message held and not deleted. Failures are said, not
    /// raised: the messages then come back when their hiding ends.
    pub async fn give_back(&mut self) {
        let back: Vec<&Received> = self
            .messages
            .iter()
            .filter(|m| !self.deleted.contains(&m.receipt))
            .collect();
        for chunk in back.chunks(10) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            let sent = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            if let Err(e) = sent {
                eprintln!(
                    "could not give {} messages back at once ({}); they show again when their \
                     hiding ends",
                    chunk.len(),
                    failed("ChangeMessageVisibilityBatch", &e)
                );
            }
        }
        self.deleted
            .extend(back.iter().map(|m| m.receipt.clone()).collect::<Vec<_>>());
    }
}

/// A request that failed, in one line with its cause.
pub fn failed(operation: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let chain = shared::error::chain(error);
    format!(
        "{operation} failed: {chain}{}",
        shared::cli::unreachable_hint(&chain)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of message is told apart by its shape, never by its text.
    #[test]
    fn kinds() {
        let poison = r#"{"function":"f","shardId":"s","partitionKey":"k","sequenceNumber":"7","data":"eA==","reason":"whatever","cause":"data","capturedAtMs":1}"#;
        assert!(
            matches!(Kind::of(poison), Kind::Poison(p) if p.record.sequence_number.as_deref() == Some("7"))
        );
        let batch = r#"{"requestContext":{"functionArn":"arn:aws:lambda:us-east-1:1:function:f","condition":"RetryAttemptsExhausted"},"KinesisBatchInfo":{"shardId":"s","startSequenceNumber":"10","endSequenceNumber":"12","batchSize":3,"streamArn":"arn:aws:kinesis:us-east-1:1:stream/orders"}}"#;
        assert!(
            matches!(Kind::of(batch), Kind::OnFailure(b) if b.batch.end_sequence_number == "12")
        );
        let not_numeric = batch.replace(r#""12""#, r#""twelve""#);
        assert!(matches!(Kind::of(&not_numeric), Kind::Other(_)));
        for other in ["not json", "[1]", r#"{"hello":"world"}"#] {
            assert!(matches!(Kind::of(other), Kind::Other(_)), "{other}");
        }
    }
}
