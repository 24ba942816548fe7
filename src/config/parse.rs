//! The one reader of raw settings: each value is parsed from its text, or its default is used;
//! a malformed value is recorded (naming its variable, never echoing a secret) and its default
//! stands in, so that every section reads to the end and every problem is reported together.
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

#[derive(Default)]
pub struct Parser {
    pub problems: Vec<String>,
}

impl Parser {
    /// `raw` parsed by `f`, else `default` (also when malformed: the problem is recorded).
    pub fn value<T>(
        &mut self,
        name: &str,
        raw: &Option<String>,
        default: T,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        self.optional(name, raw, false, f).unwrap_or(default)
    }

    /// A whole number from `min` to `max`, else `default`.
    pub fn number(
        &mut self,
        name: &str,
        raw: &Option<String>,
        default: u64,
        (min, max): (u64, u64),
    ) -> u64 {
        self.value(name, raw, default, |v| bounded(v, min, max))
    }

    /// A whole number of seconds from `min` to `max`, else `default`.
    pub fn seconds(
        &mut self,
        name: &str,
        raw: &Option<String>,
        default: u64,
        range: (u64, u64),
    ) -> Duration {
        Duration::from_secs(self.number(name, raw, default, range))
    }

    /// `raw` parsed by `f`, if given; `required` records its absence.
    pub fn optional<T>(
        &mut self,
        name: &str,
        raw: &Option<String>,
        required: bool,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.read(name, raw, required, f, |v, why| {
            format!("{name}: {v:?} {why}")
        })
    }

    /// Like `optional`, but the value is never echoed in a message.
    pub fn secret(
        &mut self,
        name: &str,
        raw: &Option<String>,
        required: bool,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<SecretString> {
        let parse = |v: &str| check(v).map(|()| SecretString::from(v.to_owned()));
        self.read(name, raw, required, parse, |_, why| {
            format!("{name} {why} (value not shown)")
        })
    }

    fn read<T>(
        &mut self,
        name: &str,
        raw: &Option<String>,
        required: bool,
        f: impl FnOnce(&str) -> Result<T, String>,
        problem: impl FnOnce(&str, String) -> String,
    ) -> Option<T> {
        match raw.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => {
                f(v).map_err(|why| self.problems.push(problem(v, why))).ok()
            }
            _ => {
                if required {
                    self.problems
                        .push(format!("{name} is required but not set"));
                }
                None
            }
        }
    }
}

pub fn parse_http_url(v: &str) -> Result<Url, String> {
    let url = Url::parse(v).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

pub fn bounded(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A share such as `0.2`: above 0, at most 1.
pub fn ratio(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err("must be a ratio above 0 and at most 1, such as 0.2".into()),
    }
}
