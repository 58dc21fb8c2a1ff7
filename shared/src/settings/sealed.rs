//! Sealing sensitive settings: AES-256-GCM (authenticated encryption) under a key derived from
//! the config secret's `config_encryption_key` ([`ConfigKeys`]).
//!
//! A sealed value names its key by a key id derived from the key itself, so rotating is putting
//! a new key first in the list: new values are sealed under it, older values still open under
//! theirs until they are sealed again (`SettingsStore::reseal`). The setting's name and the key
//! id are the associated data: a sealed value moved to another setting, or relabelled with
//! another key id, does not open.
//!
//! Nonces are 96 random bits per seal: safe for far more seals under one key than settings are
//! ever written (the bound is about 2^32).

use aes_gcm::{
    Aes256Gcm, KeyInit as _, Nonce,
    aead::{Aead as _, Payload},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::secrets::ConfigKeys;

pub const ALGORITHM: &str = "A256GCM";
const NONCE_BYTES: usize = 12;

/// A sealed value as stored: `{"alg":"A256GCM","kid":"…","sealed":"<base64 nonce ‖ ciphertext ‖ tag>"}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub alg: String,
    pub kid: String,
    pub sealed: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({}, kid {})", self.alg, self.kid)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed with key {0}, which the config secret no longer holds")]
    UnknownKey(String),
    #[error("sealed with {0}, not {ALGORITHM}")]
    Algorithm(String),
    #[error("the value sealed with key {0} does not open (altered, or moved from another setting)")]
    Corrupt(String),
    #[error("encryption failed")]
    Encrypt,
}

/// 32 bytes of HMAC-SHA-256 of `label` under the configured key: the key id and the cipher key
/// come from the same secret but different labels, so one reveals nothing of the other.
fn derive(key: &SecretString, label: &[u8]) -> [u8; 32] {
    // HMAC accepts a key of any length.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of every length"));
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// The key id a value sealed under `key` carries: 16 hex digits, stable for the key.
pub fn key_id(key: &SecretString) -> String {
    derive(key, b"lumi/config-key-id/v1")[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cipher(key: &SecretString) -> Aes256Gcm {
    Aes256Gcm::new(&derive(key, b"lumi/settings-encryption/v1").into())
}

fn associated_data(setting: &str, kid: &str) -> Vec<u8> {
    format!("{setting}\n{kid}").into_bytes()
}

/// Seals `plaintext`, the value of `setting`, under the newest key.
pub fn seal(keys: &ConfigKeys, setting: &str, plaintext: &str) -> Result<Sealed, SealError> {
    let key = keys.newest();
    let kid = key_id(key);
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let aad = associated_data(setting, &kid);
    let ciphertext = cipher(key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Encrypt)?;
    let mut out = nonce.to_vec();
    out.extend(ciphertext);
    Ok(Sealed {
        alg: ALGORITHM.into(),
        kid,
        sealed: STANDARD.encode(out),
    })
}

/// Opens a value of `setting` with whichever configured key sealed it.
pub fn open(keys: &ConfigKeys, setting: &str, sealed: &Sealed) -> Result<SecretString, SealError> {
    if sealed.alg != ALGORITHM {
        return Err(SealError::Algorithm(sealed.alg.clone()));
    }
    let key = keys
        .all()
        .iter()
        .find(|k| key_id(k) == sealed.kid)
        .ok_or_else(|| SealError::UnknownKey(sealed.kid.clone()))?;
    let corrupt = || SealError::Corrupt(sealed.kid.clone());
    let bytes = STANDARD.decode(&sealed.sealed).map_err(|_| corrupt())?;
    if bytes.len() < NONCE_BYTES {
        return Err(corrupt());
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    let aad = associated_data(setting, &sealed.kid);
    let plaintext = cipher(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| corrupt())?;
    String::from_utf8(plaintext)
        .map(SecretString::from)
        .map_err(|_| corrupt())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(list: &[&str]) -> ConfigKeys {
        ConfigKeys::new(list.iter().map(|k| SecretString::from(*k)).collect()).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_setting() {
        let old = "o".repeat(43);
        let new = "n".repeat(43);
        let dsn = "https://publickey@o1.ingest.sentry.io/7";
        let sealed = seal(&keys(&[&old]), "errorReportingDsn", dsn).unwrap();
        assert!(
            !format!("{sealed:?}{}", serde_json::to_string(&sealed).unwrap()).contains("publickey")
        );
        assert_ne!(
            seal(&keys(&[&old]), "errorReportingDsn", dsn)
                .unwrap()
                .sealed,
            sealed.sealed,
            "a fresh nonce every time"
        );

        // After a rotation the old key still opens what it sealed; new values name the new key.
        let rotated = keys(&[&new, &old]);
        assert_eq!(
            open(&rotated, "errorReportingDsn", &sealed)
                .unwrap()
                .expose_secret(),
            dsn
        );
        assert_eq!(
            seal(&rotated, "x", dsn).unwrap().kid,
            key_id(&SecretString::from(new.clone()))
        );
        assert_ne!(
            key_id(&SecretString::from(old)),
            key_id(&SecretString::from(new.clone()))
        );

        // Dropped key, another setting, a flipped bit, a relabelled key id: refused.
        assert_eq!(
            open(&keys(&[&new]), "errorReportingDsn", &sealed).unwrap_err(),
            SealError::UnknownKey(sealed.kid.clone())
        );
        assert!(matches!(
            open(&rotated, "otherSetting", &sealed),
            Err(SealError::Corrupt(_))
        ));
        let mut bytes = STANDARD.decode(&sealed.sealed).unwrap();
        bytes[NONCE_BYTES] ^= 1;
        let flipped = Sealed {
            sealed: STANDARD.encode(bytes),
            ..sealed.clone()
        };
        assert!(matches!(
            open(&rotated, "errorReportingDsn", &flipped),
            Err(SealError::Corrupt(_))
        ));
        let relabelled = Sealed {
            kid: key_id(&SecretString::from(new)),
            ..sealed
        };
        assert!(matches!(
            open(&rotated, "errorReportingDsn", &relabelled),
            Err(SealError::Corrupt(_))
        ));
    }
}
