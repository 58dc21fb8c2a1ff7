//! Site content: the storefront's editable blocks (the runbook's `SiteContent`), one item each,
//! `SITE_CONTENT#<key>`/`CONTENT`, edited by admins and read by anyone.

use serde::{Deserialize, Serialize};

use lumi_shared::store::{Db, StoreError, Tx, key};

/// Largest block, in bytes of JSON.
pub const MAX_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContentBlock {
    pub key: String,
    /// Any JSON the storefront renders (text, markdown, a banner object, ...), as text.
    pub content: String,
    pub updated_at: String,
    pub updated_by: String,
}

#[derive(Serialize, Deserialize)]
struct ContentItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    block: ContentBlock,
}

/// A block key: 1 to 64 lower-case letters, digits, `-` or `_`.
pub fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub async fn get(db: &Db, table: &str, block: &str) -> Result<Option<ContentBlock>, StoreError> {
    if !valid_key(block) {
        return Ok(None);
    }
    Ok(db
        .get::<ContentItem>(table, key(format!("SITE_CONTENT#{block}"), "CONTENT"))
        .await?
        .map(|i| i.block))
}

/// Adds the write of `block` (replacing the block) to a transaction.
pub fn put(tx: &mut Tx, block: ContentBlock) -> Result<usize, StoreError> {
    let item = ContentItem {
        pk: format!("SITE_CONTENT#{}", block.key),
        sk: "CONTENT".into(),
        block,
    };
    tx.put(&item, None, Vec::new())
}
