//! Form-encoded request parameters with RFC 6749's rules: a parameter without a value
//! counts as absent (§3.1) and none may appear twice (§3.1, §3.2).

use url::form_urlencoded;

/// The parameters of a query string or an `application/x-www-form-urlencoded` body, in
/// the order they were sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub(crate) fn parse(encoded: &[u8]) -> Self {
        Self { pairs: form_urlencoded::parse(encoded).into_owned().collect() }
    }

    /// `base` overlaid with `overrides`: a name present in `overrides` wins.
    pub(crate) fn overlaid(base: &Self, overrides: &Self) -> Self {
        let mut pairs: Vec<(String, String)> =
            base.pairs.iter().filter(|(name, _)| overrides.get(name).is_none()).cloned().collect();
        pairs.extend(overrides.pairs.iter().cloned());
        Self { pairs }
    }

    /// The value of `name`, `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, value)| key == name && !value.is_empty()).map(|(_, value)| value.as_str())
    }

    /// The first parameter sent more than once with a value, which RFC 6749 forbids.
    pub(crate) fn duplicate(&self) -> Option<&str> {
        self.pairs.iter().enumerate().find_map(|(index, (name, value))| {
            let repeated = !value.is_empty()
                && self.pairs[..index].iter().any(|(earlier, value)| earlier == name && !value.is_empty());
            repeated.then_some(name.as_str())
        })
    }

    pub(crate) fn into_pairs(self) -> Vec<(String, String)> {
        self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_absent() {
        let params = Params::parse(b"a=&b=2&scope=x+y%20z");
        assert_eq!(params.get("a"), None);
        assert_eq!(params.get("b"), Some("2"));
        assert_eq!(params.get("scope"), Some("x y z"));
        assert_eq!(params.duplicate(), None);
    }

    #[test]
    fn duplicates_are_reported() {
        assert_eq!(Params::parse(b"a=1&b=2&a=3").duplicate(), Some("a"));
        assert_eq!(Params::parse(b"a=&a=3").duplicate(), None);
    }

    #[test]
    fn overlay_prefers_the_overrides() {
        let query = Params::parse(b"client_id=q&grant_type=fb_exchange_token");
        let body = Params::parse(b"client_id=b");
        let merged = Params::overlaid(&query, &body);
        assert_eq!(merged.get("client_id"), Some("b"));
        assert_eq!(merged.get("grant_type"), Some("fb_exchange_token"));
        assert_eq!(merged.duplicate(), None);
    }
}
