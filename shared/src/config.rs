//! Configuration: every setting the library reads, read once at start-up into typed structs.
//!
//! A reading finds every problem at once ([`Problems`]): start-up stops with all of them, each
//! naming its setting and the form it expects ([`ConfigErrors`]).

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::engine::{EngineConfig, EventTypeSet};
use crate::idempotency::IdempotencyConfig;

/// A setting that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is not set (or is empty).
    #[error("{0} is missing: set it in the function's environment")]
    Missing(&'static str),
    /// A setting does not parse, or is out of range.
    #[error("{name}={value} is not valid: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be ("expected a whole number from 1 to 1024").
        reason: String,
    },
}

impl ConfigError {
    /// The setting it is about.
    pub fn name(&self) -> &'static str {
        match self {
            ConfigError::Missing(name) | ConfigError::Invalid { name, .. } => name,
        }
    }
}

/// Every problem one reading of the settings found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The settings named, in the order they were read.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(ConfigError::name).collect()
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem on one line; several, counted, one a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} settings are wrong:", all.len())?;
                all.iter().try_for_each(|e| write!(f, "\n  - {e}"))
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// The problems found so far while reading settings. Each reading goes on past a problem (with a
/// stand-in value) so that start-up names them all.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    /// Keeps a problem.
    pub fn push(&mut self, problem: ConfigError) {
        self.0.push(problem);
    }

    /// The value read, or `stand_in` with the problem kept.
    pub fn check<T>(&mut self, read: Result<T, ConfigError>, stand_in: T) -> T {
        read.unwrap_or_else(|e| {
            self.push(e);
            stand_in
        })
    }

    /// A required setting, or an empty stand-in with the problem kept.
    pub fn required(&mut self, env: &Env, name: &'static str) -> String {
        self.check(env.required(name), String::new())
    }

    /// What `read` reads, when it found nothing wrong.
    pub fn collect<T>(read: impl FnOnce(&mut Problems) -> T) -> Result<T, ConfigErrors> {
        let mut problems = Problems::default();
        let value = read(&mut problems);
        problems.finish(value)
    }

    /// `value`, when nothing was wrong.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.0))
        }
    }
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

    /// A setting parsed into `T`, or `default` when it is not set; a value that does not parse is
    /// refused with `expected` (the form it should have).
    pub fn parse_or<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
                name,
                value,
                reason: format!("expected {expected}"),
            }),
        }
    }

    /// A whole number in `range`, or `default` when it is not set. `unit` follows the number in
    /// the message (" milliseconds").
    pub fn number<T>(
        &self,
        name: &'static str,
        default: T,
        range: RangeInclusive<T>,
        unit: &str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!(
            "a whole number{unit} from {} to {}",
            range.start(),
            range.end()
        );
        let value = self.parse_or(name, default, &expected)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                name,
                value: value.to_string(),
                reason: format!("expected {expected}"),
            })
        }
    }

    /// `true` or `false` (any case), or `default` when it is not set.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(value) => Err(ConfigError::Invalid {
                name,
                value,
                reason: "expected true or false".into(),
            }),
        }
    }
}

/// The engine's settings.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `EVENT_TYPES` | the function's own list | comma-separated event types to handle |
/// | `MAX_CONCURRENCY` | 64 | partition keys in progress at once (1 to 1024) |
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
    ) -> Result<Self, ConfigErrors> {
        Problems::collect(|problems| Self::read(env, function, default_types, supported, problems))
    }

    /// [`Self::from_env`], keeping each problem in `problems`.
    pub fn read(
        env: &Env,
        function: &str,
        default_types: &[&str],
        supported: &[&str],
        problems: &mut Problems,
    ) -> Self {
        let defaults = || EventTypeSet::new(default_types.iter().copied());
        let event_types = match env.optional("EVENT_TYPES") {
            None => defaults(),
            Some(list) => {
                let types: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect();
                let expected = format!(
                    "expected a comma-separated list of event types from: {}",
                    supported.join(", ")
                );
                match types.iter().find(|t| !supported.contains(t)) {
                    _ if types.is_empty() => {
                        problems.push(ConfigError::Invalid {
                            name: "EVENT_TYPES",
                            value: list.clone(),
                            reason: expected,
                        });
                        defaults()
                    }
                    Some(unknown) => {
                        problems.push(ConfigError::Invalid {
                            name: "EVENT_TYPES",
                            value: list.clone(),
                            reason: format!("this function has no rule for {unknown}; {expected}"),
                        });
                        defaults()
                    }
                    None => EventTypeSet::new(types),
                }
            }
        };
        let max_concurrency = problems.check(env.number("MAX_CONCURRENCY", 64, 1..=1024, ""), 64);
        let margin_ms = problems.check(
            env.number("DEADLINE_MARGIN_MS", 1000, 0..=60_000, " of milliseconds"),
            1000,
        );
        let metrics_namespace = env
            .optional("METRICS_NAMESPACE")
            .unwrap_or_else(|| crate::metrics::DEFAULT_NAMESPACE.to_owned());
        if !crate::metrics::valid_namespace(&metrics_namespace) {
            problems.push(ConfigError::Invalid {
                name: "METRICS_NAMESPACE",
                value: metrics_namespace.clone(),
                reason: "expected 1 to 255 letters, digits, spaces or . - _ / # :, not starting \
                         with ':' or 'AWS/'"
                    .into(),
            });
        }
        let completed_cache = problems.check(
            env.number("IDEMPOTENCY_CACHE_SIZE", 10_000, 0..=1_000_000, ""),
            0,
        );
        EngineConfig {
            completed_cache,
            function: env
                .optional("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| function.to_owned()),
            event_types,
            max_concurrency,
            deadline_margin: Duration::from_millis(margin_ms),
            metrics_namespace,
        }
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
    /// Reads the settings. The logger starts before the configuration is read, so it takes what
    /// it can (`info`, no sampling, for a wrong value); [`Self::check`] then stops start-up on it.
    pub fn from_env(env: &Env) -> Self {
        Self {
            level: Self::level_setting(env).map_or_else(|| "info".to_owned(), |(_, v)| v),
            json: env
                .optional("AWS_LAMBDA_LOG_FORMAT")
                .is_some_and(|f| f.eq_ignore_ascii_case("json")),
            sample_rate: Self::sample_rate(env).ok().unwrap_or(0.0),
        }
    }

    /// The level's setting and value: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`.
    fn level_setting(env: &Env) -> Option<(&'static str, String)> {
        ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
            .into_iter()
            .find_map(|name| env.optional(name).map(|v| (name, v)))
    }

    fn sample_rate(env: &Env) -> Result<f64, ConfigError> {
        let rate = env.parse_or(
            "LOG_SAMPLE_RATE",
            0.0,
            "a number from 0 to 1 (the share of invocations logged at DEBUG)",
        )?;
        if (0.0..=1.0).contains(&rate) {
            Ok(rate)
        } else {
            Err(ConfigError::Invalid {
                name: "LOG_SAMPLE_RATE",
                value: rate.to_string(),
                reason: "expected a number from 0 to 1 (the share of invocations logged at DEBUG)"
                    .into(),
            })
        }
    }

    /// Keeps in `problems` what is wrong with the log settings: a level that is no level or
    /// `tracing` filter, a sample rate outside 0 to 1.
    pub fn check(env: &Env, problems: &mut Problems) {
        if let Some((name, level)) = Self::level_setting(env) {
            if !crate::telemetry::valid_filter(&level) {
                problems.push(ConfigError::Invalid {
                    name,
                    value: level,
                    reason: "expected a level (error, warn, info, debug, trace) or a tracing \
                             filter such as info,aws_smithy_runtime=warn"
                        .into(),
                });
            }
        }
        problems.check(Self::sample_rate(env).map(drop), ());
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
    /// Reads the shared settings of `function`; every problem is named in the error.
    pub fn from_env(
        env: &Env,
        function: &'static str,
        default_types: &[&str],
        supported: &[&str],
    ) -> Result<Self, ConfigErrors> {
        Problems::collect(|problems| Self::read(env, function, default_types, supported, problems))
    }

    /// [`Self::from_env`], keeping each problem in `problems` (a function reads its own settings
    /// into the same, so that start-up names them all).
    pub fn read(
        env: &Env,
        function: &'static str,
        default_types: &[&str],
        supported: &[&str],
        problems: &mut Problems,
    ) -> Self {
        LogSettings::check(env, problems);
        let engine = EngineConfig::read(env, function, default_types, supported, problems);
        let dlq_url = problems.required(env, "DLQ_URL");
        let dlq_max_message_bytes = problems.check(
            env.number(
                "DLQ_MAX_MESSAGE_BYTES",
                crate::adapters::sqs::MAX_MESSAGE_BYTES,
                4096..=1024 * 1024,
                " of bytes (the queue's MaximumMessageSize)",
            ),
            crate::adapters::sqs::MAX_MESSAGE_BYTES,
        );
        Self {
            function,
            engine,
            dlq_url,
            failure_bucket: env.optional("FAILURE_BUCKET"),
            dlq_max_message_bytes,
            idempotency: IdempotencyConfig::read(env, problems),
        }
    }
}

impl IdempotencyConfig {
    /// Reads the settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigErrors> {
        Problems::collect(|problems| Self::read(env, problems))
    }

    /// [`Self::from_env`], keeping each problem in `problems`.
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

    /// One reading names every problem, in the order read, each with the form it expects; a log
    /// filter that is no level stops start-up like any other setting.
    #[test]
    fn every_problem_at_once() {
        let env = Env::from_pairs([
            ("RUST_LOG", "verbose"),
            ("MAX_CONCURRENCY", "abc"),
            ("DEADLINE_MARGIN_MS", "-1"),
            ("IDEMPOTENCY_PAYLOAD_VALIDATION", "yes"),
        ]);
        let err = CommonConfig::from_env(&env, "f", &["A"], &["A"]).unwrap_err();
        assert_eq!(
            err.names(),
            [
                "RUST_LOG",
                "MAX_CONCURRENCY",
                "DEADLINE_MARGIN_MS",
                "DLQ_URL",
                "IDEMPOTENCY_TABLE",
                "IDEMPOTENCY_PAYLOAD_VALIDATION"
            ]
        );
        let text = err.to_string();
        assert!(
            text.starts_with("6 settings are wrong:\n  - RUST_LOG=verbose"),
            "{text}"
        );
        assert!(
            text.contains(
                "MAX_CONCURRENCY=abc is not valid: expected a whole number from 1 to 1024"
            ),
            "{text}"
        );
        assert!(text.contains("DEADLINE_MARGIN_MS=-1 is not valid: expected a whole number of milliseconds from 0 to 60000"), "{text}");
        assert!(
            text.contains(
                "IDEMPOTENCY_PAYLOAD_VALIDATION=yes is not valid: expected true or false"
            ),
            "{text}"
        );
        assert!(!text.contains('"'), "values are shown as written: {text}");

        // A filter of directives, and any level's case, are fine.
        for level in ["DEBUG", "info,aws_smithy_runtime=warn", "off"] {
            let env = Env::from_pairs([
                ("RUST_LOG", level),
                ("DLQ_URL", "q"),
                ("IDEMPOTENCY_TABLE", "t"),
            ]);
            assert!(
                CommonConfig::from_env(&env, "f", &["A"], &["A"]).is_ok(),
                "{level}"
            );
        }
        // One problem reads as one line.
        let one = IdempotencyConfig::from_env(&Env::from_pairs([])).unwrap_err();
        assert_eq!(
            one.to_string(),
            "IDEMPOTENCY_TABLE is missing: set it in the function's environment"
        );
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
