//! The settings toolkit: where settings come from ([`Env`]), and every problem of one reading found
//! at once ([`Problems`]), each naming its setting and the form it expects ([`ConfigErrors`]).
//!
//! Each setting struct is read beside its type (the engine's, the logs', the metrics', the
//! dead-letter queue's, the ledger's, a function's own), with this toolkit, once at start-up.

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A required setting that is missing or blank is named in the error.
    #[test]
    fn missing_required_is_named() {
        let env = Env::from_pairs([("SENDER_ADDRESS", "  ")]);
        let err = env.required("SENDER_ADDRESS").unwrap_err();
        assert_eq!(err, ConfigError::Missing("SENDER_ADDRESS"));
        assert!(err.to_string().contains("SENDER_ADDRESS"));
    }

    /// One reading names every problem, in the order read, each with the form it expects; one
    /// problem reads as one line.
    #[test]
    fn every_problem_at_once() {
        let env = Env::from_pairs([("N", "abc"), ("M", "-1"), ("F", "yes")]);
        let err = Problems::collect(|p| {
            p.check(env.number("N", 64, 1..=1024, ""), 64);
            p.check(
                env.number("M", 1000u64, 0..=60_000, " of milliseconds"),
                1000,
            );
            p.required(&env, "R");
            p.check(env.flag("F", true), true);
        })
        .unwrap_err();
        assert_eq!(err.names(), ["N", "M", "R", "F"]);
        let text = err.to_string();
        assert!(text.starts_with("4 settings are wrong:\n  - N=abc is not valid: expected a whole number from 1 to 1024"), "{text}");
        assert!(
            text.contains(
                "M=-1 is not valid: expected a whole number of milliseconds from 0 to 60000"
            ),
            "{text}"
        );
        assert!(
            text.contains("R is missing: set it in the function's environment"),
            "{text}"
        );
        assert!(
            text.contains("F=yes is not valid: expected true or false"),
            "{text}"
        );
        assert!(!text.contains('"'), "values are shown as written: {text}");
        let one = Problems::collect(|p| p.required(&env, "R")).unwrap_err();
        assert_eq!(
            one.to_string(),
            "R is missing: set it in the function's environment"
        );
    }

    /// Defaults when unset; the range is checked; flags in any case.
    #[test]
    fn numbers_and_flags() {
        let env = Env::from_pairs([("BIG", "2000"), ("T", "TRUE")]);
        assert_eq!(env.number("UNSET", 7, 1..=9, ""), Ok(7));
        assert!(env.number("BIG", 7, 1..=1024, "").is_err());
        assert_eq!(env.flag("T", false), Ok(true));
        assert_eq!(env.flag("UNSET", false), Ok(false));
    }
}
