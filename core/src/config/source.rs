//! Where variables come from: the process environment, or a map in tests.
//! Secrets may be given as `<NAME>_FILE`, a path whose contents are the value.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::str::FromStr;

use secrecy::SecretString;

use super::ConfigErrors;

#[derive(Clone, Debug, Default)]
pub struct Source {
    vars: HashMap<String, String>,
}

impl Source {
    pub fn process() -> Self {
        Self { vars: std::env::vars().collect() }
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// A plain (non-secret) variable; unset and empty are the same.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// A secret from `name` or `name_FILE` (not both). Errors never include the value.
    pub fn secret(&self, name: &str, errs: &mut ConfigErrors) -> Option<SecretString> {
        let file_var = format!("{name}_FILE");
        // Empty is unset, as for plain variables (`NAME=` in a .env file).
        let direct = self.vars.get(name).filter(|v| !v.is_empty()).cloned();
        match (direct, self.get(&file_var)) {
            (Some(_), Some(_)) => {
                errs.push(
                    name,
                    format!("is set together with {file_var}"),
                    format!("set only one of {name} and {file_var}"),
                );
                None
            }
            (Some(value), None) => Some(SecretString::from(value)),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                // Files usually end with a newline that is not part of the secret.
                Ok(contents) => Some(SecretString::from(contents.trim_end_matches(['\n', '\r']).to_owned())),
                Err(err) => {
                    errs.push(
                        &file_var,
                        format!("names {path}, which cannot be read ({})", err.kind()),
                        "point it at a readable file",
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// A parsed variable with a default; reports a parse failure with `expected`.
    pub fn parse_or<T: FromStr>(
        &self,
        name: &str,
        default: Option<T>,
        expected: &str,
        errs: &mut ConfigErrors,
    ) -> Option<T> {
        match self.get(name) {
            None => default,
            Some(raw) => match raw.trim().parse() {
                Ok(v) => Some(v),
                Err(_) => {
                    errs.push(name, format!("is not {expected}"), format!("set {name} to {expected}"));
                    None
                }
            },
        }
    }

    /// A whole number within `range`, with a default.
    pub fn number(
        &self,
        name: &str,
        default: u64,
        range: RangeInclusive<u64>,
        unit: &str,
        errs: &mut ConfigErrors,
    ) -> Option<u64> {
        let expected = format!("a whole number of {unit} from {} to {}", range.start(), range.end());
        let value = self.parse_or(name, Some(default), &expected, errs)?;
        if range.contains(&value) {
            Some(value)
        } else {
            errs.push(name, "is out of range", format!("set {name} to {expected}"));
            None
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), with a default.
    pub fn flag(&self, name: &str, default: bool, errs: &mut ConfigErrors) -> bool {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => false,
            Some(_) => {
                errs.push(name, "is not a boolean", "use true or false");
                default
            }
        }
    }
}
