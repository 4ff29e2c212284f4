//! Configuration problems, each naming its variable and the fix.

use std::fmt;

/// One problem with one variable. Never holds a secret's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(variable: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { variable: variable.into(), problem: problem.into(), fix: fix.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}. Fix: {}.", self.variable, self.problem, self.fix)
    }
}

/// Every problem found in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(err: ConfigError) -> Self {
        Self(vec![err])
    }

    pub fn push(&mut self, variable: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.0.push(ConfigError::new(variable, problem, fix));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some problem names `variable`.
    pub fn names(&self, variable: &str) -> bool {
        self.0.iter().any(|e| e.variable == variable)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for err in &self.0 {
            writeln!(f, "  - {err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
