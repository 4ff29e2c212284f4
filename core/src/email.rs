//! User email addresses: the profile id of every credential and session.
//!
//! The accepted grammar is exactly the design document's PostgreSQL CHECK,
//! `^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$`, so SQLite and PostgreSQL
//! accept the same addresses; a test holds the two to each other. Addresses
//! are trimmed and lower-cased so `Alice@Company.com` and `alice@company.com`
//! are one user.

use std::fmt;

use serde::Serialize;

/// Longest address the `profile_id VARCHAR(255)` column holds.
pub const MAX_LEN: usize = 255;

/// A validated, normalised email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("the email address is not of the form name@domain.tld")]
    Malformed,
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let normalised = input.trim().to_ascii_lowercase();
        if normalised.is_empty() {
            return Err(EmailError::Empty);
        }
        if normalised.len() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        if !matches_design_grammar(&normalised) {
            return Err(EmailError::Malformed);
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$`, without a regex engine.
/// Neither side may contain `@`, so there is exactly one; the domain's final
/// `.` must be followed by two or more letters and preceded by at least one
/// allowed character.
fn matches_design_grammar(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty() && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b));
    let tld_ok = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic());
    local_ok && host_ok && tld_ok
}

/// Examples of the grammar: (input, accepted by the design document's regex).
/// Tests hold both this module and PostgreSQL's CHECK to these answers.
pub const GRAMMAR_EXAMPLES: &[(&str, bool)] = &[
    ("alice@company.com", true),
    ("Alice.Smith+mcp@Company.co.uk", true),
    ("a_b%c-d@sub-domain.example.io", true),
    ("x@y.zz", true),
    ("1@2.ab", true),
    ("a@b..com", true),
    ("a@.b.com", true),
    ("", false),
    ("alice", false),
    ("alice@", false),
    ("@company.com", false),
    ("alice@company", false),
    ("alice@company.c", false),
    ("alice@company.c0m", false),
    ("alice@@company.com", false),
    ("al ice@company.com", false),
    ("alice@comp any.com", false),
    ("alice@company.com.", false),
    ("alice@compa_ny.com", false),
    ("al\"ice@company.com", false),
    ("alice@company.com\u{0}", false),
    ("élise@company.com", false),
    ("alice@bücher.de", false),
    ("alice@.com", false),
    ("a,b@company.com", false),
    ("'; drop table oauth_credentials; --@x.com", false),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_matches_the_design_documents_regex() {
        for (input, accepted) in GRAMMAR_EXAMPLES {
            assert_eq!(matches_design_grammar(input), *accepted, "{input:?}");
        }
    }

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        let email = Email::parse("  Alice@Company.COM ").unwrap();
        assert_eq!(email.as_str(), "alice@company.com");
        assert_eq!(email.domain(), "company.com");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
        assert_eq!(Email::parse("bob"), Err(EmailError::Malformed));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }
}
