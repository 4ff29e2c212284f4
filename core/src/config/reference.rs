//! `gateway config reference`: every variable the settings code reads, with
//! its kind, default and range, found by running the settings code itself
//! against recording sources (see [`Source::recording`]). The documentation
//! is checked against this list, so a new variable, default or range cannot
//! go undocumented.

use std::collections::BTreeMap;

use super::source::{VarKind, VarSpec};
use super::{Settings, Source, issuers, providers};

/// The id of the example provider and issuer the reference configures, and
/// what its variables are reported as.
const EXAMPLE_ID: &str = "zz-example";
const EXAMPLE_PREFIX: &str = "ZZ_EXAMPLE_";
const PLACEHOLDER: &str = "<ID>_";
/// Variables whose default depends on the machine: reported without one, so
/// the reference is the same everywhere.
const COMPUTED_DEFAULTS: [&str; 1] = [super::vars::ACTOR_THREADS];

/// Every variable, by name; per-provider and per-issuer variables once, as
/// `<ID>_…` and `IDP_<ID>_…`. A built-in provider's variable is listed
/// under its own name only when generic providers have no such variable.
pub fn reference() -> Vec<VarSpec> {
    let unset = Source::default().recording();
    let configured = Source::from_pairs(example_vars()).recording();
    let mut all: BTreeMap<String, VarSpec> = BTreeMap::new();
    for src in [unset, configured] {
        // Only what is read matters here, not whether it validates.
        let _ = Settings::from_source(&src);
        for mut spec in src.reads() {
            spec.name = spec.name.replace(EXAMPLE_PREFIX, PLACEHOLDER);
            if COMPUTED_DEFAULTS.contains(&spec.name.as_str()) {
                spec.default = None;
            }
            let richer = all.get(&spec.name).is_none_or(|old| old.kind == VarKind::Text);
            if richer {
                all.insert(spec.name.clone(), spec);
            }
        }
    }
    let generic: Vec<String> = all.keys().filter_map(|n| n.strip_prefix(PLACEHOLDER)).map(str::to_owned).collect();
    all.retain(|name, _| {
        !providers::BUILT_IN_PREFIXES
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|rest| generic.iter().any(|g| g == rest)))
    });
    all.into_values().collect()
}

/// A configuration that reaches every variable: a generic provider and an
/// issuer with the example id, and every built-in provider.
fn example_vars() -> Vec<(String, String)> {
    let mut vars = vec![
        (providers::PROVIDERS_VAR.to_owned(), EXAMPLE_ID.to_owned()),
        (issuers::ISSUERS_VAR.to_owned(), EXAMPLE_ID.to_owned()),
        (format!("IDP_{EXAMPLE_PREFIX}ISSUER"), "https://idp.example.com".to_owned()),
    ];
    for p in std::iter::once(EXAMPLE_PREFIX).chain(providers::BUILT_IN_PREFIXES.iter().copied()) {
        for (name, value) in [
            ("CLIENT_ID", "example"),
            ("CLIENT_SECRET", "example"),
            ("AUTH_URL", "https://provider.example.com/authorize"),
            ("TOKEN_URL", "https://provider.example.com/token"),
        ] {
            vars.push((format!("{p}{name}"), value.to_owned()));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(all: &'a [VarSpec], name: &str) -> &'a VarSpec {
        all.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn the_reference_holds_every_kind_of_variable_with_its_default_and_range() {
        let all = reference();
        let session = find(&all, "SESSION_EXPIRY_MINUTES");
        assert_eq!((session.kind, session.default.as_deref()), (VarKind::Number, Some("15")));
        assert_eq!((session.min, session.max), (Some(1), Some(1440)));
        assert_eq!(find(&all, "AUTH_GATEWAY_API_KEY").kind, VarKind::Secret);
        assert_eq!(find(&all, "PORT").default.as_deref(), Some("8000"));
        assert_eq!(find(&all, "ACTOR_THREADS").default, None, "depends on the machine");
        assert_eq!(find(&all, "DATA_DIR").default.as_deref(), Some("./data"));
        assert_eq!(find(&all, "JOB_CONNECTION_PROBE_ENABLED").default.as_deref(), Some("false"));
        // Per-provider and per-issuer variables appear once, with a placeholder.
        assert_eq!(find(&all, "<ID>_PKCE").kind, VarKind::Flag);
        assert_eq!(find(&all, "IDP_<ID>_CLOCK_SKEW_SECONDS").max, Some(600));
        assert!(all.iter().all(|s| !s.name.contains("ZZ_EXAMPLE")));
        assert!(all.iter().all(|s| !s.name.starts_with("GOOGLE_CLIENT_ID")), "covered by <ID>_CLIENT_ID");
        find(&all, "MICROSOFT_TENANT");
    }
}
