//! What each encryption key seals: the report behind `GET /admin/keys` and
//! `gateway keys status`, the values re-encryption still has to move to the
//! primary key, and re-encryption's batches.

use std::collections::BTreeMap;

use crate::crypto::Keyring;
use crate::store::{Store, StoreError};

pub use crate::store::keys::{ENCRYPTED_COLUMNS, EncryptedColumn};
pub use crate::store::reencrypt::{BatchOutcome, Position};

/// Every key id that is configured or seals a stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport {
    pub primary_key_id: String,
    pub keys: Vec<KeyUse>,
    /// Values under keys other than the primary: what re-encryption still has to do.
    pub pending_values: u64,
}

/// One key id and the values it seals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: String,
    pub primary: bool,
    /// False when rows need this key but it is not configured.
    pub configured: bool,
    pub values: u64,
    /// Values per `table.column`.
    pub by_column: BTreeMap<String, u64>,
}

/// Counts the values each key id seals (by the key-id columns, never by
/// trial decryption).
pub(crate) async fn report(store: &Store, keyring: &Keyring) -> Result<KeyReport, StoreError> {
    let usage = store.key_usage().await?;
    let primary = keyring.primary_id().to_string();
    let mut ids: Vec<String> = keyring.key_ids().map(ToString::to_string).collect();
    ids.extend(usage.rows.keys().filter(|id| !keyring.knows(id)).cloned());
    let keys: Vec<KeyUse> = ids
        .into_iter()
        .map(|id| KeyUse {
            primary: id == primary,
            configured: keyring.knows(&id),
            values: usage.total(&id),
            by_column: usage
                .rows
                .get(&id)
                .map(|cols| cols.iter().map(|(c, n)| (format!("{}.{}", c.table, c.column), *n)).collect())
                .unwrap_or_default(),
            key_id: id,
        })
        .collect();
    let pending_values = keys.iter().filter(|k| !k.primary).map(|k| k.values).sum();
    Ok(KeyReport { primary_key_id: primary, keys, pending_values })
}
