//! The saga's whole pipeline in this process, against the AWS-API server: the stream on the
//! server, one local event source mapping per function of `template.yaml` (its settings, its
//! filters), and each function's engine as deployed (real SDK clients), invoked in process. What
//! the end-to-end tests of the saga and of `fanout rebuild` run; `make demo` runs the same
//! pipeline with the functions under `cargo lambda watch`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use local_esm::adapters::KinesisStream;
use local_esm::mapping::{Function, InProcess, NoDestination};
use local_esm::template::{Mapping, StartingPosition};
use local_esm::{run_mapping, Options, Status};
use tokio::task::JoinHandle;

use crate::{local_env, root, EmailSettings, InventorySettings, LocalAws, StatusSettings};

/// The running mappings. Stopped on drop.
pub struct Pipeline {
    tasks: Vec<JoinHandle<()>>,
    statuses: Vec<(String, Arc<Status>)>,
}

impl Pipeline {
    /// Starts the template's three mappings on the server at `endpoint`, from the stream's start,
    /// with the functions' settings of `local.env` and `extra`.
    pub async fn start(endpoint: &str, extra: &[(&str, &str)]) -> Self {
        let sdk = LocalAws::sdk_config(endpoint).await;
        let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
        let env = local_env(extra);
        let mut pipeline = Self {
            tasks: Vec::new(),
            statuses: Vec::new(),
        };
        for mut mapping in local_esm::template::mappings(&text, &HashMap::new()).unwrap() {
            mapping.starting_position = StartingPosition::TrimHorizon;
            let timeout = mapping.timeout;
            match mapping.function.as_str() {
                "email-notifier" => {
                    let settings = EmailSettings::from_env(&env).unwrap();
                    let engine = shared::runtime::engine(settings, &sdk);
                    pipeline.spawn(mapping, InProcess::new(engine, timeout), &sdk);
                }
                "inventory-updater" => {
                    let settings = InventorySettings::from_env(&env).unwrap();
                    let engine = shared::runtime::engine(settings, &sdk);
                    pipeline.spawn(mapping, InProcess::new(engine, timeout), &sdk);
                }
                "order-status" => {
                    let settings = StatusSettings::from_env(&env).unwrap();
                    let engine = shared::runtime::engine(settings, &sdk);
                    pipeline.spawn(mapping, InProcess::new(engine, timeout), &sdk);
                }
                other => panic!("no engine for {other}"),
            }
        }
        pipeline
    }

    fn spawn<F: Function + 'static>(
        &mut self,
        mapping: Mapping,
        function: F,
        sdk: &aws_config::SdkConfig,
    ) {
        let status = Arc::new(Status::default());
        let stream =
            KinesisStream::new(aws_sdk_kinesis::Client::new(sdk), producer::DEFAULT_STREAM);
        self.statuses
            .push((mapping.function.clone(), status.clone()));
        self.tasks.push(tokio::spawn(async move {
            let options = Options {
                retry_backoff: Duration::from_millis(10),
                relist: Duration::from_secs(1),
                ..Options::default()
            };
            let out = run_mapping(
                &mapping,
                &stream,
                &function,
                &NoDestination,
                &status,
                &options,
            );
            if let Err(e) = out.await {
                panic!("the mapping of {} stopped: {e}", mapping.function);
            }
        }));
    }

    /// Waits until the pipeline is quiet: every mapping has delivered everything on the stream,
    /// twice over with nothing new read in between (a decision published by one function is read
    /// by the others). Fails after `limit`.
    pub async fn settle(&self, limit: Duration) {
        let statuses: Vec<&Status> = self.statuses.iter().map(|(_, s)| s.as_ref()).collect();
        if let Err(e) = local_esm::caught_up(&statuses, limit).await {
            panic!("the pipeline did not settle: {e}; {:?}", self.totals());
        }
    }

    /// Per function: records read, delivered, and invocations.
    pub fn totals(&self) -> Vec<(String, u64, u64, u64)> {
        self.statuses
            .iter()
            .map(|(f, s)| {
                let t = s.totals();
                (f.clone(), t.read, t.delivered, t.invocations)
            })
            .collect()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
