//! `fanout`: the operator's tool, for AWS and for the local stack alike.
//!
//! ```text
//! fanout dlq [--from all|queue|bucket]      what the dead-letter queue and the failure bucket hold
//! fanout redrive [--dry-run] [--only-reason TEXT] [--sequence N]... [--all] [--keep-unknown]
//!                [--from all|queue|bucket] [--stream NAME]
//!                                           put them back on the stream; delete what went back
//! fanout invoke FUNCTION EVENT [--json]     the local stack: invoke a function with a sample event
//! fanout counts LOG [--from-line N]         the local stack: the functions' counts in their log
//! fanout rebuild --into TABLE [--compare LIVE] [--template FILE]
//!                                           order-status's table, rebuilt from the stream's start
//! ```
//!
//! Settings come from the environment: `DLQ_URL`, `FAILURE_BUCKET`, `STREAM_NAME` (the stream
//! records go back on when their own does not say), `IDEMPOTENCY_TABLE` (to forget outcomes never
//! known), and the SDK's own (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` for the local stack).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bucket;
mod dlq;
mod local;
mod queue;
mod rebuild;
mod stream;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shared::adapters::LedgerSettings;
use shared::{Env, Problems};

use crate::dlq::{Choice, From, Place};

#[derive(Parser)]
#[command(
    name = "fanout",
    about = "The dead-letter queue and the failure bucket: look, and redrive; the read model: rebuild; on the local stack, invoke",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the poison records and OnFailure batches of the queue, and the batches of the failure
    /// bucket; every message stays visible.
    Dlq {
        /// Where to look.
        #[arg(long, value_enum, default_value_t = From::All)]
        from: From,
    },
    /// Put the failures back on the stream, each key's records in order, then delete what went
    /// back (and only that).
    Redrive {
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only poison records whose reason holds TEXT (and batches whose condition does).
        #[arg(long, value_name = "TEXT")]
        only_reason: Option<String>,
        /// Only the record with this sequence number (and batches whose range holds it); again
        /// for more.
        #[arg(long = "sequence", value_name = "N")]
        sequences: Vec<String>,
        /// Also the poison records whose data is what is wrong (they would fail again).
        #[arg(long)]
        all: bool,
        /// Keep the UNKNOWN idempotency entries of redriven poison records (they are then not
        /// sent).
        #[arg(long)]
        keep_unknown: bool,
        /// Where to take them from.
        #[arg(long, value_enum, default_value_t = From::All)]
        from: From,
        /// The stream to put them on (default: an OnFailure batch's own stream; poison records,
        /// and batches that name none, go to STREAM_NAME).
        #[arg(long)]
        stream: Option<String>,
    },
    /// The local stack: invoke a function with a sample event through the Lambda Invoke API, print
    /// the response, then what the invocation did, from the function's own log.
    Invoke {
        /// The function.
        function: String,
        /// A sample's name in the events folder, with or without `.json`, or a path.
        event: String,
        /// Print the raw response only, for scripts.
        #[arg(long, env = "JSON", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
        json: bool,
        /// The local stack's state folder.
        #[arg(long, env = "LOCAL_STATE", default_value = ".local")]
        state: PathBuf,
        /// The samples' folder.
        #[arg(long, default_value = "events")]
        events: PathBuf,
        /// The SAM template, which names the stack's functions.
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
    },
    /// Rebuild order-status's table from the stream's start (TRIM_HORIZON) into a fresh table, as
    /// order-status does it (its settings from the environment, its mapping from the template).
    Rebuild {
        /// The fresh table (created if missing; refused if it holds anything).
        #[arg(long, value_name = "TABLE")]
        into: String,
        /// Then compare it with this table (the live one), order by order.
        #[arg(long, value_name = "LIVE")]
        compare: Option<String>,
        /// The SAM template of the mapping.
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
    },
    /// The local stack: the functions' counts over their log from a line on, summed.
    Counts {
        /// The functions' log.
        log: PathBuf,
        /// The first line to count.
        #[arg(long, default_value_t = 0)]
        from_line: usize,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Dlq { from } => dlq::list(&place().await?, from).await,
        Command::Redrive {
            dry_run,
            only_reason,
            sequences,
            all,
            keep_unknown,
            from,
            stream,
        } => {
            let choice = Choice {
                dry_run,
                only_reason,
                sequences,
                all,
                keep_unknown,
            };
            dlq::redrive(&place().await?, from, stream.as_deref(), &choice).await
        }
        Command::Invoke {
            function,
            event,
            json,
            state,
            events,
            template,
        } => {
            let sdk = shared::aws::sdk_config().await;
            local::Local {
                state,
                events,
                template,
            }
            .invoke(&sdk, &function, &event, json)
            .await
        }
        Command::Counts { log, from_line } => local::counts(&log, from_line),
        Command::Rebuild {
            into,
            compare,
            template,
        } => rebuild::rebuild(&into, compare.as_deref(), &template).await,
    }
}

/// Where the failures are, from the environment, with the clients to reach them.
async fn place() -> Result<Place, String> {
    let env = Env::process();
    let sdk = shared::aws::sdk_config().await;
    let queue = env.optional("DLQ_URL");
    let endpoint = env.optional("AWS_ENDPOINT_URL");
    let queue_label = match (&queue, &endpoint) {
        (Some(url), Some(endpoint))
            if endpoint.contains("127.0.0.1") || endpoint.contains("localhost") =>
        {
            let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or(url);
            format!("queue {name} on the local stack ({endpoint})")
        }
        (Some(url), _) => url.clone(),
        (None, _) => String::new(),
    };
    let ledger = match env.optional("IDEMPOTENCY_TABLE") {
        Some(_) => Some(
            Problems::collect(|problems| LedgerSettings::read(&env, problems))
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    Ok(Place {
        queue,
        queue_label,
        bucket: env.optional("FAILURE_BUCKET"),
        stream: env
            .optional("STREAM_NAME")
            .unwrap_or_else(|| producer::DEFAULT_STREAM.into()),
        ledger,
        sqs: aws_sdk_sqs::Client::new(&sdk),
        s3: shared::adapters::dlq::s3_client(&sdk),
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        streams: stream::Streams::new(producer::kinesis_client(&sdk)),
    })
}
