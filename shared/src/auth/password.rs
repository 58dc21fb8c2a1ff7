//! Passwords: argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane), a policy, and a check
//! against a fixed dummy hash when the account does not exist, so that an unknown email and a
//! wrong password cost the same time and give the same answer.

use std::sync::OnceLock;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::SaltString,
};

use crate::error::FieldError;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

fn argon2() -> Argon2<'static> {
    // Params::new only fails for out-of-range values; these are the documented defaults.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The policy: 12 to 128 characters, at least one letter and one digit or symbol, not the email.
pub fn check_policy(password: &str, email: &str) -> Result<(), FieldError> {
    let fail = |message: &str| {
        Err(FieldError {
            field: "password".into(),
            message: message.into(),
        })
    };
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return fail("must be at least 12 characters");
    }
    if chars > MAX_LEN {
        return fail("must be at most 128 characters");
    }
    if !password.chars().any(char::is_alphabetic) || password.chars().all(char::is_alphabetic) {
        return fail("must mix letters with digits or symbols");
    }
    if password.eq_ignore_ascii_case(email) {
        return fail("must not be the email address");
    }
    Ok(())
}

/// A PHC string (`$argon2id$v=19$...`) with a random salt.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// True when `password` matches `phc`; false for a malformed hash too.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the time a real verification would, for an account that does not exist.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("dummy-password-for-timing-1").unwrap_or_default());
    let _ = verify(password, dummy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash("correct horse 42").unwrap();
        let b = hash("correct horse 42").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse 42", &a));
        assert!(!verify("correct horse 43", &a));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn policy() {
        assert!(check_policy("short1", "a@b.c").is_err());
        assert!(check_policy("onlylettersherexx", "a@b.c").is_err());
        assert!(check_policy(&"a1".repeat(65), "a@b.c").is_err());
        assert!(check_policy("yuki@example.com", "yuki@example.com").is_err());
        assert!(check_policy("grilled-onigiri-7", "a@b.c").is_ok());
    }
}
