//! Secrets: API key tokens and their keyed hashes, and the checkpoint
//! signing key ([`NoteSigner`], in `signing`).
//!
//! A token is `annal_<key id: 32 hex>_<secret: 64 hex>`. The database keeps
//! only `HMAC-SHA-256(pepper, secret)`, where the pepper is a deployment
//! secret that never enters the database, so a stolen table does not allow
//! guessing keys offline. Comparison is constant-time. Nothing here logs, and
//! no type here prints its secret through `Debug`.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub mod identity;
pub mod signing;

pub use signing::{NoteSigner, SigningKeyError};

const TOKEN_PREFIX: &str = "annal_";

/// The public id of an API key: the first half of its token, stored in
/// clear, used to find the key and to name it in the trail and in commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ApiKeyId(Uuid);

impl ApiKeyId {
    /// Wraps a UUID.
    pub fn from_uuid(id: Uuid) -> ApiKeyId {
        ApiKeyId(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The deployment's key for hashing API key secrets.
#[derive(Clone)]
pub struct Pepper([u8; 32]);

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(..)")
    }
}

/// A pepper that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("the API key pepper must be 64 hex characters (32 random bytes)")]
pub struct InvalidPepper;

impl Pepper {
    /// A new random pepper from the operating system's generator.
    pub fn generate() -> Pepper {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Pepper(bytes)
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Pepper, InvalidPepper> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| InvalidPepper)?;
        Ok(Pepper(bytes))
    }

    /// Hex form, for writing the pepper to its file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `HMAC-SHA-256(pepper, secret)`.
    pub fn mac(&self, secret: &KeySecret) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA-256 takes keys of any length"),
        };
        mac.update(&secret.0);
        mac.finalize().into_bytes().into()
    }

    /// Whether `secret` hashes to `expected`, in constant time.
    pub fn verify(&self, secret: &KeySecret, expected: &[u8]) -> bool {
        let actual = self.mac(secret);
        actual.ct_eq(expected).into()
    }
}

/// The secret half of an API key.
pub struct KeySecret([u8; 32]);

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(..)")
    }
}

/// A whole API key as the client sends it.
#[derive(Debug)]
pub struct ApiKeyToken {
    /// The key's id, stored in clear.
    pub id: ApiKeyId,
    /// The secret, stored only as a keyed hash.
    pub secret: KeySecret,
}

/// A token that is not of the form `annal_<32 hex>_<64 hex>`.
#[derive(Debug, thiserror::Error)]
#[error("malformed API key")]
pub struct MalformedToken;

impl ApiKeyToken {
    /// A new key with a random id and secret.
    pub fn generate() -> ApiKeyToken {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        ApiKeyToken {
            id: ApiKeyId(Uuid::new_v4()),
            secret: KeySecret(secret),
        }
    }

    /// Parses a token.
    pub fn parse(text: &str) -> Result<ApiKeyToken, MalformedToken> {
        let rest = text.strip_prefix(TOKEN_PREFIX).ok_or(MalformedToken)?;
        let (id, secret) = rest.split_once('_').ok_or(MalformedToken)?;
        if id.len() != 32 || secret.len() != 64 {
            return Err(MalformedToken);
        }
        let mut id_bytes = [0u8; 16];
        hex::decode_to_slice(id, &mut id_bytes).map_err(|_| MalformedToken)?;
        let mut secret_bytes = [0u8; 32];
        hex::decode_to_slice(secret, &mut secret_bytes).map_err(|_| MalformedToken)?;
        Ok(ApiKeyToken {
            id: ApiKeyId(Uuid::from_bytes(id_bytes)),
            secret: KeySecret(secret_bytes),
        })
    }

    /// The token text, to show once to whoever created the key.
    pub fn reveal(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}_{}",
            self.id.0.simple(),
            hex::encode(self.secret.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_to_the_same_key() {
        let token = ApiKeyToken::generate();
        let parsed = ApiKeyToken::parse(&token.reveal()).unwrap();
        assert_eq!(parsed.id, token.id);
        assert_eq!(parsed.secret.0, token.secret.0);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = ApiKeyToken::generate().reveal();
        for bad in [
            "",
            "annal_",
            &good[1..],
            &good[..good.len() - 1],
            &good.replace("annal_", "other_"),
            &format!("{good}0"),
            &good.replacen('_', "-", 2),
        ] {
            assert!(ApiKeyToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verification_needs_the_same_pepper_and_secret() {
        let pepper = Pepper::generate();
        let token = ApiKeyToken::generate();
        let mac = pepper.mac(&token.secret);
        assert!(pepper.verify(&token.secret, &mac));
        assert!(!Pepper::generate().verify(&token.secret, &mac));
        assert!(!pepper.verify(&ApiKeyToken::generate().secret, &mac));
        assert!(!pepper.verify(&token.secret, &mac[..31]));
    }
}
