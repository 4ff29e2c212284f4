//! Credentials across users, for operators: a page of [`Connection`]s
//! matching a [`ConnectionFilter`], with the cursor of the next page, and
//! the counts of `/admin/stats`.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

pub use crate::store::connections::{Connection, ConnectionFilter, Counts};

/// Entries per page when the caller does not say.
pub const DEFAULT_PAGE: u64 = 100;
/// The largest page.
pub const MAX_PAGE: u64 = 1000;

/// One page, and where the next begins (`None`: this was the last).
#[derive(Clone, Debug)]
pub struct Page {
    pub connections: Vec<Connection>,
    pub next_cursor: Option<String>,
}

/// Why a listing request cannot be answered as asked.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("The cursor is not one this gateway handed out.")]
    BadCursor,
    #[error("limit must be between 1 and {MAX_PAGE}.")]
    BadLimit,
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// The cursor is the last row's id: rows are listed in id order and ids
/// only grow, so pages neither skip nor repeat a row under inserts.
pub(crate) fn parse_cursor(cursor: Option<&str>) -> Result<Option<Uuid>, ListError> {
    cursor.map(|c| Uuid::parse_str(c).map_err(|_| ListError::BadCursor)).transpose()
}

pub(crate) fn check_limit(limit: Option<u64>) -> Result<u64, ListError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ListError::BadLimit),
    }
}

/// The windows of `/admin/stats`' expiry counts.
pub(crate) fn expiry_windows(now: DateTime<Utc>) -> [DateTime<Utc>; 2] {
    [now + TimeDelta::hours(1), now + TimeDelta::hours(24)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_limits_are_checked() {
        assert!(matches!(parse_cursor(Some("nope")), Err(ListError::BadCursor)));
        let id = Uuid::now_v7();
        assert_eq!(parse_cursor(Some(&id.to_string())).unwrap(), Some(id));
        assert_eq!(check_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(check_limit(Some(MAX_PAGE)).unwrap(), MAX_PAGE);
        assert!(check_limit(Some(0)).is_err() && check_limit(Some(MAX_PAGE + 1)).is_err());
    }
}
