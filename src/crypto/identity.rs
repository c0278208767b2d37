//! Secrets of people: password hashes (Argon2id), session and invitation
//! tokens (256 random bits, stored as SHA-256), TOTP secrets sealed at rest
//! (AES-256-GCM under a key derived from the pepper), recovery codes.
//! Nothing here logs, and nothing prints a secret through `Debug`.

use std::fmt;
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Pepper;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (Argon2 takes any length; this bounds the work
/// an attacker can ask for).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A password that may not be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Outside the length bounds.
    #[error("a password is {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} bytes")]
    Length,
    /// The hasher failed (should not happen).
    #[error("password hashing failed")]
    Hash,
}

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes,
/// one lane, as OWASP recommends) and a random salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.len() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Whether `password` matches the PHC string `hash`. With `None` (no such
/// user, or no password set yet), a dummy hash is checked instead and the
/// answer is false, so that the time taken does not tell whether the user
/// exists.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(b"not a password anyone has", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    let (phc, real) = match hash {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let password = if password.len() > MAX_PASSWORD_LEN {
        &password[..0]
    } else {
        password
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    real && matches
}

/// A random 256-bit bearer secret (a session, an anti-CSRF or an
/// invitation token), written as 43 base64url characters.
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A fresh token from the operating system's generator.
    pub fn generate() -> Token {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Token(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The text to hand to the client, once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored: SHA-256 of the text (a 256-bit random secret needs
    /// no slow hash).
    pub fn hash(&self) -> [u8; 32] {
        token_hash(&self.0)
    }
}

/// SHA-256 of a token's text as the client sent it.
pub fn token_hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Whether `text` hashes to `expected`, in constant time.
pub fn token_matches(text: &str, expected: &[u8]) -> bool {
    token_hash(text).ct_eq(expected).into()
}

/// Recovery codes: 10 of 16 base32-ish characters (80 bits), shown once,
/// stored as SHA-256 of their normalised form.
pub fn recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..10)
        .map(|_| {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let chars: String = bytes
                .iter()
                .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
                .collect();
            format!(
                "{}-{}-{}-{}",
                &chars[..4],
                &chars[4..8],
                &chars[8..12],
                &chars[12..]
            )
        })
        .collect()
}

/// The stored form of a recovery code: dashes and case do not matter.
pub fn recovery_code_hash(code: &str) -> [u8; 32] {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(normal.as_bytes()).into()
}

/// Seals small secrets (TOTP seeds) for storage: AES-256-GCM under a key
/// derived from the pepper, with the owner's id as associated data so a
/// sealed value moved to another row does not open.
#[derive(Clone)]
pub struct Sealer(Aes256Gcm);

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// A sealed value that does not open: wrong key, wrong owner, or altered.
#[derive(Debug, thiserror::Error)]
#[error("a sealed secret does not open")]
pub struct Unsealable;

impl Sealer {
    /// The sealer of a deployment.
    pub fn new(pepper: &Pepper) -> Sealer {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&pepper.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA-256 takes keys of any length"),
        };
        mac.update(b"annal sealed secrets v1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Sealer(Aes256Gcm::new(&key.into()))
    }

    /// `nonce (12 bytes) || ciphertext+tag`.
    pub fn seal(&self, owner: &[u8], secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: owner,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    /// Opens what [`Sealer::seal`] sealed for `owner`.
    pub fn open(&self, owner: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < 12 + 16 {
            return Err(Unsealable);
        }
        let (nonce, body) = sealed.split_at(12);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: owner,
                },
            )
            .map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Some(&hash), "correct horse battery"));
        assert!(!verify_password(Some(&hash), "correct horse batterx"));
        assert!(!verify_password(None, "correct horse battery"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn sealed_secrets_open_only_for_their_owner_and_key() {
        let sealer = Sealer::new(&Pepper::generate());
        let sealed = sealer.seal(b"user-1", b"seed");
        assert_eq!(sealer.open(b"user-1", &sealed).unwrap(), b"seed");
        assert!(sealer.open(b"user-2", &sealed).is_err());
        assert!(
            Sealer::new(&Pepper::generate())
                .open(b"user-1", &sealed)
                .is_err()
        );
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(sealer.open(b"user-1", &altered).is_err());
    }

    #[test]
    fn tokens_and_codes() {
        let token = Token::generate();
        assert_eq!(token.expose().len(), 43);
        assert!(token_matches(token.expose(), &token.hash()));
        assert!(!token_matches("other", &token.hash()));
        let codes = recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(
            recovery_code_hash(&codes[0]),
            recovery_code_hash(&codes[0].to_uppercase().replace('-', ""))
        );
    }
}
