//! Configuration: every setting the library reads, read once at start-up into typed structs. A missing or invalid setting stops
//! start-up with a message that names it.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::engine::{EngineConfig, EventTypeSet};
use crate::idempotency::IdempotencyConfig;

/// A setting that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is not set (or is empty).
    #[error("missing required setting {0}: set it in the function's environment")]
    Missing(&'static str),
    /// A setting does not parse.
    #[error("invalid setting {name}={value:?}: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where settings come from: the process environment, or a map in tests.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// Settings from pairs, for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// A setting, when it is set and not blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A setting that must be set.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// A setting parsed into `T`, or `default` when it is not set.
    pub fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
                value,
            }),
        }
    }
}

/// The engine's settings.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `EVENT_TYPES` | the function's own list | comma-separated event types to handle |
/// | `MAX_CONCURRENCY` | 64 | partition keys in progress at once |
/// | `DEADLINE_MARGIN_MS` | 1000 | stop starting records this long before the deadline |
/// | `AWS_LAMBDA_FUNCTION_NAME` | the crate name | recorded with poison records (set by Lambda) |
/// | `METRICS_NAMESPACE` | `kinesis-fanout` | the CloudWatch namespace of the EMF metrics |
/// | `IDEMPOTENCY_CACHE_SIZE` | 10000 | finished records a warm container remembers (0: none) |
impl EngineConfig {
    /// Reads the engine's settings. `default_types` applies when `EVENT_TYPES` is not set, and
    /// every configured type must be one of `supported`, the types the function has a rule for.
    pub fn from_env(
        env: &Env,
        function: &str,
        default_types: &[&str],
        supported: &[&str],
    ) -> Result<Self, ConfigError> {
        let event_types = match env.optional("EVENT_TYPES") {
            None => EventTypeSet::new(default_types.iter().copied()),
            Some(list) => {
                let types: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect();
                if types.is_empty() {
                    return Err(ConfigError::Invalid {
                        name: "EVENT_TYPES",
                        value: list,
                        reason: "names no event type".into(),
                    });
                }
                if let Some(unknown) = types.iter().find(|t| !supported.contains(t)) {
                    return Err(ConfigError::Invalid {
                        name: "EVENT_TYPES",
                        reason: format!(
                            "this function has no rule for {unknown}; it handles {}",
                            supported.join(", ")
                        ),
                        value: list,
                    });
                }
                EventTypeSet::new(types)
            }
        };
        let max_concurrency: usize = env.parse_or("MAX_CONCURRENCY", 64)?;
        if max_concurrency == 0 {
            return Err(ConfigError::Invalid {
                name: "MAX_CONCURRENCY",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let margin_ms: u64 = env.parse_or("DEADLINE_MARGIN_MS", 1000)?;
        let metrics_namespace = env
            .optional("METRICS_NAMESPACE")
            .unwrap_or_else(|| crate::metrics::DEFAULT_NAMESPACE.to_owned());
        if !crate::metrics::valid_namespace(&metrics_namespace) {
            let reason = "use 1 to 255 letters, digits, spaces or . - _ / # :, \
                          not starting with ':' or 'AWS/'";
            return Err(ConfigError::Invalid {
                name: "METRICS_NAMESPACE",
                value: metrics_namespace,
                reason: reason.into(),
            });
        }
        let completed_cache: usize = env.parse_or("IDEMPOTENCY_CACHE_SIZE", 10_000)?;
        Ok(EngineConfig {
            completed_cache,
            function: env
                .optional("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| function.to_owned()),
            event_types,
            max_concurrency,
            deadline_margin: Duration::from_millis(margin_ms),
            metrics_namespace,
        })
    }
}

/// How the functions log, as Lambda sets it: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else
/// `info`; JSON lines when `AWS_LAMBDA_LOG_FORMAT` is `JSON`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// The level (or `tracing` filter).
    pub level: String,
    /// Whether lines are JSON.
    pub json: bool,
    /// The share of invocations that log everything at DEBUG (`LOG_SAMPLE_RATE`, 0 to 1).
    pub sample_rate: f64,
}

impl LogSettings {
    /// Reads the settings.
    pub fn from_env(env: &Env) -> Self {
        Self {
            level: env
                .optional("AWS_LAMBDA_LOG_LEVEL")
                .or_else(|| env.optional("RUST_LOG"))
                .unwrap_or_else(|| "info".to_owned()),
            json: env
                .optional("AWS_LAMBDA_LOG_FORMAT")
                .is_some_and(|f| f.eq_ignore_ascii_case("json")),
            sample_rate: env
                .optional("LOG_SAMPLE_RATE")
                .and_then(|r| r.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(0.0),
        }
    }
}

/// The settings every function shares, read once at start-up: the engine's, the dead-letter
/// queue (`DLQ_URL`) and the idempotency table (`IDEMPOTENCY_*`).
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// The function's name: the crate name, which scopes its idempotency entries.
    pub function: &'static str,
    /// The engine's settings.
    pub engine: EngineConfig,
    /// `DLQ_URL`: the SQS queue that keeps poison records with their payload.
    pub dlq_url: String,
    /// `FAILURE_BUCKET`: where a poison record too large for a queue message is kept (none: such
    /// a record is retried until the mapping gives up on it).
    pub failure_bucket: Option<String>,
    /// `DLQ_MAX_MESSAGE_BYTES`: the queue's `MaximumMessageSize` (262144 by default).
    pub dlq_max_message_bytes: usize,
    /// The idempotency table.
    pub idempotency: IdempotencyConfig,
}

impl CommonConfig {
    /// Reads the shared settings of `function`; a missing one is named in the error.
    pub fn from_env(
        env: &Env,
        function: &'static str,
        default_types: &[&str],
        supported: &[&str],
    ) -> Result<Self, ConfigError> {
        // Read by the logger (LogSettings, which has no errors to give): checked here, so that a
        // wrong value stops start-up like any other.
        if let Some(rate) = env.optional("LOG_SAMPLE_RATE") {
            if !rate
                .trim()
                .parse::<f64>()
                .is_ok_and(|r| (0.0..=1.0).contains(&r))
            {
                return Err(ConfigError::Invalid {
                    name: "LOG_SAMPLE_RATE",
                    value: rate,
                    reason: "a number from 0 to 1 (the share of invocations logged at DEBUG)"
                        .into(),
                });
            }
        }
        let dlq_max_message_bytes: usize = env.parse_or(
            "DLQ_MAX_MESSAGE_BYTES",
            crate::adapters::sqs::MAX_MESSAGE_BYTES,
        )?;
        if !(4096..=1024 * 1024).contains(&dlq_max_message_bytes) {
            return Err(ConfigError::Invalid {
                name: "DLQ_MAX_MESSAGE_BYTES",
                value: dlq_max_message_bytes.to_string(),
                reason: "a whole number from 4096 to 1048576 (the queue's MaximumMessageSize)"
                    .into(),
            });
        }
        Ok(Self {
            function,
            engine: EngineConfig::from_env(env, function, default_types, supported)?,
            dlq_url: env.required("DLQ_URL")?,
            failure_bucket: env.optional("FAILURE_BUCKET"),
            dlq_max_message_bytes,
            idempotency: IdempotencyConfig::from_env(env)?,
        })
    }
}

impl IdempotencyConfig {
    /// Reads the settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ttl: u64 = env.parse_or("IDEMPOTENCY_TTL_SECONDS", 8 * 24 * 3600)?;
        let lease: u64 = env.parse_or("IDEMPOTENCY_LEASE_SECONDS", 60)?;
        if lease == 0 || lease >= ttl {
            return Err(ConfigError::Invalid {
                name: "IDEMPOTENCY_LEASE_SECONDS",
                value: lease.to_string(),
                reason: "must be at least 1 and shorter than IDEMPOTENCY_TTL_SECONDS".into(),
            });
        }
        Ok(Self {
            table: env.required("IDEMPOTENCY_TABLE")?,
            ttl: Duration::from_secs(ttl),
            lease: Duration::from_secs(lease),
            validate_payload: env.parse_or("IDEMPOTENCY_PAYLOAD_VALIDATION", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults apply when nothing is set, and the function's own event types are used.
    #[test]
    fn defaults() {
        let placed = [crate::order::ORDER_PLACED];
        let cfg = EngineConfig::from_env(&Env::from_pairs([]), "f", &placed, &placed).unwrap();
        assert_eq!(cfg.max_concurrency, 64);
        assert_eq!(cfg.deadline_margin, Duration::from_millis(1000));
        assert!(cfg.event_types.contains(crate::order::ORDER_PLACED));
        assert!(!cfg.event_types.contains(crate::order::ORDER_CANCELLED));
        assert_eq!(cfg.function, "f");
    }

    /// EVENT_TYPES overrides the defaults within what the function supports; bad values name the
    /// setting.
    #[test]
    fn overrides_and_errors() {
        let supported = [
            crate::order::ORDER_PLACED,
            crate::order::ORDER_CREATED,
            crate::order::ORDER_CANCELLED,
        ];
        let env = Env::from_pairs([
            ("EVENT_TYPES", "ORDER_CANCELLED, ORDER_CREATED"),
            ("MAX_CONCURRENCY", "4"),
        ]);
        let cfg = EngineConfig::from_env(&env, "f", &supported[..1], &supported).unwrap();
        assert!(cfg.event_types.contains(crate::order::ORDER_CANCELLED));
        assert!(cfg.event_types.contains(crate::order::ORDER_CREATED));
        assert!(!cfg.event_types.contains(crate::order::ORDER_PLACED));
        assert_eq!(cfg.max_concurrency, 4);

        let env = Env::from_pairs([("EVENT_TYPES", "ORDER_SHIPPED")]);
        let err = EngineConfig::from_env(&env, "f", &supported, &supported).unwrap_err();
        assert!(err.to_string().contains("EVENT_TYPES"), "{err}");
        assert!(err.to_string().contains("ORDER_SHIPPED"), "{err}");

        let env = Env::from_pairs([("MAX_CONCURRENCY", "many")]);
        let err = EngineConfig::from_env(&env, "f", &supported, &supported).unwrap_err();
        assert!(err.to_string().contains("MAX_CONCURRENCY"), "{err}");
        let env = Env::from_pairs([("MAX_CONCURRENCY", "0")]);
        assert!(EngineConfig::from_env(&env, "f", &supported, &supported).is_err());
    }

    /// A required setting that is missing or blank is named in the error.
    #[test]
    fn missing_required_is_named() {
        let env = Env::from_pairs([("SENDER_ADDRESS", "  ")]);
        let err = env.required("SENDER_ADDRESS").unwrap_err();
        assert_eq!(err, ConfigError::Missing("SENDER_ADDRESS"));
        assert!(err.to_string().contains("SENDER_ADDRESS"));
    }

    /// Lambda's log settings, with `RUST_LOG` and `info` behind them.
    #[test]
    fn log_settings() {
        let read = |pairs: &[(&str, &str)]| LogSettings::from_env(&Env::from_pairs(pairs.to_vec()));
        assert_eq!(
            read(&[]),
            LogSettings {
                level: "info".into(),
                json: false,
                sample_rate: 0.0,
            }
        );
        let set = read(&[
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "warn"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]);
        assert_eq!(
            set,
            LogSettings {
                level: "DEBUG".into(),
                json: true,
                sample_rate: 0.0,
            }
        );
        assert_eq!(read(&[("RUST_LOG", "warn")]).level, "warn");
        assert_eq!(read(&[("LOG_SAMPLE_RATE", "0.05")]).sample_rate, 0.05);
    }

    #[test]
    fn a_wrong_sample_rate_stops_start_up() {
        let env = Env::from_pairs([
            ("DLQ_URL", "https://sqs/q"),
            ("IDEMPOTENCY_TABLE", "t"),
            ("LOG_SAMPLE_RATE", "1.5"),
        ]);
        let err = CommonConfig::from_env(&env, "f", &["A"], &["A"]).unwrap_err();
        assert!(err.to_string().contains("LOG_SAMPLE_RATE"), "{err}");
    }

    /// The settings: the table is required, the lease must be shorter than the TTL.
    #[test]
    fn idempotency_settings() {
        let err = IdempotencyConfig::from_env(&Env::from_pairs([])).unwrap_err();
        assert!(err.to_string().contains("IDEMPOTENCY_TABLE"));
        let env = Env::from_pairs([
            ("IDEMPOTENCY_TABLE", "t"),
            ("IDEMPOTENCY_LEASE_SECONDS", "0"),
        ]);
        assert!(IdempotencyConfig::from_env(&env).is_err());
        let cfg =
            IdempotencyConfig::from_env(&Env::from_pairs([("IDEMPOTENCY_TABLE", "t")])).unwrap();
        assert_eq!(cfg.ttl, Duration::from_secs(691_200));
        assert_eq!(cfg.lease, Duration::from_secs(60));
    }
}
