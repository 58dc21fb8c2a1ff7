//! Comparing a restored table with its export in bounded memory, whatever their size.
//!
//! Neither side is sorted (an export is in scan order, a scan of the restored table in its own),
//! so items are not paired up as they stream by. Instead each side is folded into a
//! [`TableDigest`]: every item's digest (SHA-256 of its canonical encoding, set members sorted,
//! since DynamoDB returns them in any order) is added into one of [`BUCKETS`] buckets chosen by
//! its key, with a count. Equal tables give equal buckets; memory is `BUCKETS` × 40 bytes
//! (160 KiB), whatever the item count.
//!
//! Only when buckets differ is a second pass made ([`Localizer`]), over both sides again but
//! keeping only the items of the first [`MAX_DIFFERENCES`] differing buckets, and of those only
//! per-attribute digests: that names the keys and the attributes that differ, never a value.
//! It holds about 2 × `MAX_DIFFERENCES` × items / `BUCKETS` items (500 for a table of 100 000,
//! 5 000 for a million; [`Localizer::held`] counts them), and only when the check fails.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha2::{Digest as _, Sha256};

use crate::dynamo_json::Item;

/// Buckets of a table's digest.
pub const BUCKETS: usize = 4096;
/// Differences named in a report (and differing buckets examined) at most.
pub const MAX_DIFFERENCES: usize = 10;

type Hash = [u8; 32];

fn feed_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Feeds a value's canonical encoding: type tag, length-prefixed parts, set members and map keys
/// sorted.
fn feed_value(hasher: &mut Sha256, value: &AttributeValue) {
    match value {
        AttributeValue::S(s) => {
            hasher.update(b"S");
            feed_bytes(hasher, s.as_bytes());
        }
        AttributeValue::N(n) => {
            hasher.update(b"N");
            feed_bytes(hasher, n.as_bytes());
        }
        AttributeValue::B(b) => {
            hasher.update(b"B");
            feed_bytes(hasher, b.as_ref());
        }
        AttributeValue::Bool(b) => hasher.update(if *b { b"T" } else { b"F" }),
        AttributeValue::Null(_) => hasher.update(b"0"),
        AttributeValue::Ss(items) | AttributeValue::Ns(items) => {
            hasher.update(if matches!(value, AttributeValue::Ss(_)) {
                b"SS"
            } else {
                b"NS"
            });
            let mut members: Vec<&[u8]> = items.iter().map(|s| s.as_bytes()).collect();
            members.sort();
            hasher.update((members.len() as u64).to_le_bytes());
            members.into_iter().for_each(|m| feed_bytes(hasher, m));
        }
        AttributeValue::Bs(items) => {
            hasher.update(b"BS");
            let mut members: Vec<&[u8]> = items.iter().map(|b| b.as_ref()).collect();
            members.sort();
            hasher.update((members.len() as u64).to_le_bytes());
            members.into_iter().for_each(|m| feed_bytes(hasher, m));
        }
        AttributeValue::L(items) => {
            hasher.update(b"L");
            hasher.update((items.len() as u64).to_le_bytes());
            items.iter().for_each(|v| feed_value(hasher, v));
        }
        AttributeValue::M(map) => {
            hasher.update(b"M");
            hasher.update((map.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                feed_bytes(hasher, key.as_bytes());
                feed_value(hasher, &map[key]);
            }
        }
        // A type newer than this code: its debug text, so it still compares.
        other => {
            hasher.update(b"?");
            feed_bytes(hasher, format!("{other:?}").as_bytes());
        }
    }
}

fn attribute_digest(name: &str, value: &AttributeValue) -> Hash {
    let mut hasher = Sha256::new();
    feed_bytes(&mut hasher, name.as_bytes());
    feed_value(&mut hasher, value);
    hasher.finalize().into()
}

/// Per attribute, sorted by name.
fn attribute_digests(item: &Item) -> BTreeMap<String, Hash> {
    item.iter()
        .map(|(name, value)| (name.clone(), attribute_digest(name, value)))
        .collect()
}

fn item_digest(item: &Item) -> Hash {
    let mut hasher = Sha256::new();
    for (_, digest) in attribute_digests(item) {
        hasher.update(digest);
    }
    hasher.finalize().into()
}

/// The item's primary key as people read it (`pk=USER#1 sk=PROFILE`): what a report names.
pub fn key_label(key_names: &[String], item: &Item) -> String {
    key_names
        .iter()
        .map(|name| {
            let value = match item.get(name) {
                Some(AttributeValue::S(s) | AttributeValue::N(s)) => s.clone(),
                Some(AttributeValue::B(b)) => STANDARD.encode(b.as_ref()),
                Some(_) => "(not a key type)".into(),
                None => "(absent)".into(),
            };
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn bucket_of(key: &str) -> usize {
    let digest = Sha256::digest(key.as_bytes());
    usize::from(u16::from_be_bytes([digest[0], digest[1]])) % BUCKETS
}

/// One side of a comparison, folded: per bucket a count and the wrapping sum of its items'
/// digests (a sum, not a XOR, so a duplicated item does not cancel out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    key_names: Vec<String>,
    buckets: Vec<(u64, [u64; 4])>,
    items: u64,
}

impl TableDigest {
    pub fn new(key_names: Vec<String>) -> Self {
        Self {
            key_names,
            buckets: vec![(0, [0; 4]); BUCKETS],
            items: 0,
        }
    }

    pub fn add(&mut self, item: &Item) {
        let bucket = &mut self.buckets[bucket_of(&key_label(&self.key_names, item))];
        let digest = item_digest(item);
        bucket.0 += 1;
        for (lane, chunk) in bucket.1.iter_mut().zip(digest.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *lane = lane.wrapping_add(u64::from_le_bytes(word));
        }
        self.items += 1;
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// The buckets where the two sides differ, in order.
    pub fn differing_buckets(&self, other: &Self) -> Vec<usize> {
        (0..BUCKETS)
            .filter(|&b| self.buckets[b] != other.buckets[b])
            .collect()
    }
}

/// What differs for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the export, not in the restored table.
    Missing { key: String },
    /// In the restored table, not in the export.
    Unexpected { key: String },
    /// On both sides, with these attributes different (present on one side only, or unequal).
    Attributes { key: String, names: Vec<String> },
    /// The same item a different number of times (a key repeated in the export).
    Repeated {
        key: String,
        exported: usize,
        restored: usize,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { key } => write!(f, "{key}: missing from the restored table"),
            Self::Unexpected { key } => write!(f, "{key}: restored but not in the export"),
            Self::Attributes { key, names } => {
                write!(f, "{key}: attribute(s) {} differ", names.join(", "))
            }
            Self::Repeated {
                key,
                exported,
                restored,
            } => write!(
                f,
                "{key}: {exported} time(s) in the export, {restored} in the restored table"
            ),
        }
    }
}

type Versions = Vec<BTreeMap<String, Hash>>;

/// The second pass: per key of the differing buckets, each side's per-attribute digests.
pub struct Localizer {
    key_names: Vec<String>,
    buckets: BTreeSet<usize>,
    exported: BTreeMap<String, Versions>,
    restored: BTreeMap<String, Versions>,
}

impl Localizer {
    /// For the first [`MAX_DIFFERENCES`] of `differing` (each holds at least one difference).
    pub fn new(key_names: Vec<String>, differing: &[usize]) -> Self {
        Self {
            key_names,
            buckets: differing.iter().copied().take(MAX_DIFFERENCES).collect(),
            exported: BTreeMap::new(),
            restored: BTreeMap::new(),
        }
    }

    fn keep(&self, item: &Item) -> Option<String> {
        let key = key_label(&self.key_names, item);
        self.buckets.contains(&bucket_of(&key)).then_some(key)
    }

    pub fn add_exported(&mut self, item: &Item) {
        if let Some(key) = self.keep(item) {
            self.exported
                .entry(key)
                .or_default()
                .push(attribute_digests(item));
        }
    }

    pub fn add_restored(&mut self, item: &Item) {
        if let Some(key) = self.keep(item) {
            self.restored
                .entry(key)
                .or_default()
                .push(attribute_digests(item));
        }
    }

    /// Items held so far, both sides.
    pub fn held(&self) -> usize {
        self.exported
            .values()
            .chain(self.restored.values())
            .map(Vec::len)
            .sum()
    }

    /// At most [`MAX_DIFFERENCES`], by key.
    pub fn differences(self) -> Vec<Difference> {
        let keys: BTreeSet<&String> = self.exported.keys().chain(self.restored.keys()).collect();
        let none = Vec::new();
        let mut out = Vec::new();
        for key in keys {
            let exported = self.exported.get(key).unwrap_or(&none);
            let restored = self.restored.get(key).unwrap_or(&none);
            let difference = match (exported.first(), restored.first()) {
                (None, _) => Difference::Unexpected { key: key.clone() },
                (_, None) => Difference::Missing { key: key.clone() },
                (Some(_), Some(_)) => {
                    // The first exported version that no restored version equals, against the
                    // restored one it shares most attributes with.
                    let unmatched = exported.iter().find(|e| !restored.contains(e));
                    match unmatched {
                        Some(e) => {
                            let names = restored
                                .iter()
                                .map(|r| differing_attributes(e, r))
                                .min_by_key(Vec::len)
                                .unwrap_or_default();
                            Difference::Attributes {
                                key: key.clone(),
                                names,
                            }
                        }
                        None if exported.len() != restored.len() => Difference::Repeated {
                            key: key.clone(),
                            exported: exported.len(),
                            restored: restored.len(),
                        },
                        None => continue,
                    }
                }
            };
            out.push(difference);
            if out.len() == MAX_DIFFERENCES {
                break;
            }
        }
        out
    }
}

fn differing_attributes(a: &BTreeMap<String, Hash>, b: &BTreeMap<String, Hash>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|name| a.get(*name) != b.get(*name))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(id: usize, hash: &str) -> Item {
        Item::from([
            ("pk".into(), AttributeValue::S(format!("USER#{id}"))),
            ("sk".into(), AttributeValue::S("PROFILE".into())),
            ("password_hash".into(), AttributeValue::S(hash.into())),
            (
                "roles".into(),
                AttributeValue::Ss(vec!["admin".into(), "customer".into()]),
            ),
        ])
    }

    fn keys() -> Vec<String> {
        vec!["pk".into(), "sk".into()]
    }

    /// Both passes as the restore check makes them: the export in one order, the restored
    /// table in pages of `page` items in another.
    fn compare(exported: &[Item], restored: &[Item], page: usize) -> (Vec<Difference>, usize) {
        let mut left = TableDigest::new(keys());
        exported.iter().for_each(|i| left.add(i));
        let mut right = TableDigest::new(keys());
        for chunk in restored.rchunks(page) {
            chunk.iter().for_each(|i| right.add(i));
        }
        let differing = left.differing_buckets(&right);
        if differing.is_empty() {
            return (Vec::new(), 0);
        }
        let mut localizer = Localizer::new(keys(), &differing);
        exported.iter().for_each(|i| localizer.add_exported(i));
        for chunk in restored.rchunks(page) {
            chunk.iter().for_each(|i| localizer.add_restored(i));
        }
        let held = localizer.held();
        (localizer.differences(), held)
    }

    #[test]
    fn equal_tables_in_any_order_and_set_order_compare_equal() {
        let exported: Vec<Item> = (0..500).map(|i| user(i, "$argon2id$x")).collect();
        let mut restored = exported.clone();
        restored.reverse();
        // DynamoDB returns set members in its own order.
        restored[7].insert(
            "roles".into(),
            AttributeValue::Ss(vec!["customer".into(), "admin".into()]),
        );
        assert_eq!(compare(&exported, &restored, 3), (Vec::new(), 0));
    }

    #[test]
    fn a_difference_names_the_key_and_attribute_never_the_value_and_holds_few_items() {
        let items = 5_000;
        let exported: Vec<Item> = (0..items)
            .map(|i| user(i, "$argon2id$secret-hash"))
            .collect();
        let mut restored = exported.clone();
        restored[1234].insert(
            "password_hash".into(),
            AttributeValue::S("$argon2id$other-hash".into()),
        );
        restored.remove(4000);
        restored.push(user(99_999, "$argon2id$stray-hash"));

        let (differences, held) = compare(&exported, &restored, 7);
        let report: Vec<String> = differences.iter().map(ToString::to_string).collect();
        let text = report.join("; ");
        assert!(
            report.contains(&"pk=USER#1234 sk=PROFILE: attribute(s) password_hash differ".into()),
            "{text}"
        );
        assert!(
            report.contains(&"pk=USER#4000 sk=PROFILE: missing from the restored table".into()),
            "{text}"
        );
        assert!(
            report.contains(&"pk=USER#99999 sk=PROFILE: restored but not in the export".into()),
            "{text}"
        );
        assert_eq!(report.len(), 3, "{text}");
        assert!(!text.contains("argon2id"), "no value: {text}");
        // Three differing buckets of 5 000 items spread over 4 096: a few items each, both sides.
        assert!(held < 100, "held {held} of {items}");
    }

    #[test]
    fn a_repeated_key_and_the_cap_on_reported_differences() {
        let exported: Vec<Item> = (0..50).map(|i| user(i, "h")).collect();
        let mut doubled = exported.clone();
        doubled.push(user(3, "h"));
        let (differences, _) = compare(&doubled, &exported, 4);
        assert_eq!(
            differences,
            vec![Difference::Repeated {
                key: "pk=USER#3 sk=PROFILE".into(),
                exported: 2,
                restored: 1
            }]
        );
        let (differences, _) = compare(&exported, &[], 4);
        assert_eq!(differences.len(), MAX_DIFFERENCES);
    }
}
