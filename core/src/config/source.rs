//! Where variables come from: the process environment, or a map in tests.
//! Secrets may be given as `<NAME>_FILE`, a path whose contents are the value.
//!
//! A source can also *record* what the settings code asks of it — each
//! variable's kind, default and range — which is how `gateway config
//! reference` describes the configuration from the code itself, so the
//! documentation can be checked against it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use serde::Serialize;

use super::ConfigErrors;

#[derive(Clone, Debug, Default)]
pub struct Source {
    vars: HashMap<String, String>,
    reads: Option<Arc<Mutex<BTreeMap<String, VarSpec>>>>,
}

/// One variable the settings code reads, as `gateway config reference` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VarSpec {
    pub name: String,
    pub kind: VarKind,
    /// The value used when the variable is unset, when the code has one.
    pub default: Option<String>,
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub unit: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VarKind {
    Text,
    Secret,
    Flag,
    Number,
    Parsed,
}

impl VarSpec {
    fn new(name: &str, kind: VarKind, default: Option<String>) -> Self {
        Self { name: name.to_owned(), kind, default, min: None, max: None, unit: None }
    }
}

impl Source {
    pub fn process() -> Self {
        Self { vars: std::env::vars().collect(), reads: None }
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), reads: None }
    }

    /// This source, noting every variable read from it (see [`Source::reads`]).
    pub fn recording(mut self) -> Self {
        self.reads = Some(Arc::default());
        self
    }

    /// The variables read so far, by name (empty unless [`Source::recording`]).
    pub fn reads(&self) -> Vec<VarSpec> {
        self.reads
            .as_ref()
            .map_or_else(Vec::new, |r| r.lock().map(|r| r.values().cloned().collect()).unwrap_or_default())
    }

    /// Notes a read; a more specific description (a number's range, a
    /// default) replaces a plain one.
    fn note(&self, spec: VarSpec) {
        if let Some(reads) = &self.reads
            && let Ok(mut reads) = reads.lock()
        {
            let keep = reads.get(&spec.name).is_some_and(|old| old.kind != VarKind::Text && spec.kind == VarKind::Text);
            if !keep {
                reads.insert(spec.name.clone(), spec);
            }
        }
    }

    fn raw(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// A plain (non-secret) variable; unset and empty are the same.
    pub fn get(&self, name: &str) -> Option<String> {
        self.note(VarSpec::new(name, VarKind::Text, None));
        self.raw(name)
    }

    /// A plain variable with a default.
    pub fn get_or(&self, name: &str, default: &str) -> String {
        self.note(VarSpec::new(name, VarKind::Text, Some(default.to_owned())));
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    /// A secret from `name` or `name_FILE` (not both). Errors never include the value.
    pub fn secret(&self, name: &str, errs: &mut ConfigErrors) -> Option<SecretString> {
        self.note(VarSpec::new(name, VarKind::Secret, None));
        let file_var = format!("{name}_FILE");
        // Empty is unset, as for plain variables (`NAME=` in a .env file).
        match (self.raw(name), self.raw(&file_var)) {
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
    pub fn parse_or<T: FromStr + Display>(
        &self,
        name: &str,
        default: Option<T>,
        expected: &str,
        errs: &mut ConfigErrors,
    ) -> Option<T> {
        self.note(VarSpec::new(name, VarKind::Parsed, default.as_ref().map(ToString::to_string)));
        self.parse_raw(name, default, expected, errs)
    }

    fn parse_raw<T: FromStr>(
        &self,
        name: &str,
        default: Option<T>,
        expected: &str,
        errs: &mut ConfigErrors,
    ) -> Option<T> {
        match self.raw(name) {
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
        self.note(VarSpec {
            min: Some(*range.start()),
            max: Some(*range.end()),
            unit: Some(unit.to_owned()),
            ..VarSpec::new(name, VarKind::Number, Some(default.to_string()))
        });
        let expected = format!("a whole number of {unit} from {} to {}", range.start(), range.end());
        let value = self.parse_raw(name, Some(default), &expected, errs)?;
        if range.contains(&value) {
            Some(value)
        } else {
            errs.push(name, "is out of range", format!("set {name} to {expected}"));
            None
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), with a default.
    pub fn flag(&self, name: &str, default: bool, errs: &mut ConfigErrors) -> bool {
        self.note(VarSpec::new(name, VarKind::Flag, Some(default.to_string())));
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
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
