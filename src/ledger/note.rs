//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys: the
//! envelope around every checkpoint Annal publishes.
//!
//! A note is a text ending in a newline, a blank line, and one or more
//! signature lines `— <key name> <base64(key id || signature)>`. This module
//! owns parsing and formatting of notes and of verifier keys
//! (`<name>+<8 hex key id>+<base64(0x01 || Ed25519 public key)>`, the
//! `golang.org/x/mod/sumdb/note` encoding) and the rule that decides whether
//! a note is trusted. It must never hold a private key: signing lives in
//! `crypto`, which builds [`NoteSignature`]s with
//! [`NoteSignature::from_ed25519`].

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 keys, mixed into the key id and
/// leading the encoded public key.
pub const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// The largest note [`Note::parse`] reads, in bytes. The spec asks verifiers
/// to bound a note's size and to accept at least 16 signatures of up to 5 kB
/// (post-quantum); 1 MiB leaves room for that and far more text than any
/// checkpoint has.
pub const MAX_NOTE_LEN: usize = 1 << 20;

/// The most signature lines [`Note::parse`] reads (the spec's floor is 16).
pub const MAX_SIGNATURES: usize = 100;

/// What starts every signature line: an em dash (U+2014) and a space.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Length of an Ed25519 signature in bytes.
const ED25519_SIGNATURE_LEN: usize = 64;

/// A verifier key or a key name that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not `<name>+<key id>+<key data>`.
    #[error("a key must have the form <name>+<8 hex digits>+<base64 key data>")]
    Malformed,
    /// The key name is empty or holds a space, a `+` or a control character.
    #[error(
        "a key name must be non-empty and free of spaces, '+' and control characters: {name:?}"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The key id is not 8 lowercase hexadecimal digits.
    #[error("a key id must be 8 lowercase hex digits")]
    InvalidKeyId,
    /// The key data is not canonical standard base64.
    #[error("the key data is not canonical base64")]
    InvalidBase64,
    /// The key data names a signature type other than Ed25519.
    #[error("unsupported signature type {0:#04x} (only Ed25519, 0x01, is supported)")]
    UnsupportedSignatureType(u8),
    /// The key data has the wrong length for an Ed25519 key.
    #[error("an Ed25519 key is 32 bytes, got {actual}")]
    WrongKeyLength {
        /// The number of key bytes after the type byte.
        actual: usize,
    },
    /// The 32 bytes are not a usable Ed25519 public key (not a curve point,
    /// or a point of small order).
    #[error("the key data is not a usable Ed25519 public key")]
    InvalidPublicKey,
    /// The stated key id is not the one the name and key hash to.
    #[error("the key id {stated:08x} does not match the key, which has id {computed:08x}")]
    KeyIdMismatch {
        /// The id written in the key.
        stated: u32,
        /// The id computed from the name and key.
        computed: u32,
    },
}

/// A note that does not parse, a signature or text that cannot form a note,
/// or a note that does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is longer than [`MAX_NOTE_LEN`].
    #[error("the note is {len} bytes, more than the limit of {MAX_NOTE_LEN}")]
    TooLarge {
        /// The note's length in bytes.
        len: usize,
    },
    /// The note holds an ASCII control character other than newline.
    #[error("control character {character:?} at byte {offset}")]
    ControlCharacter {
        /// The offending character.
        character: char,
        /// Its byte offset in the note.
        offset: usize,
    },
    /// No blank line separates the text from the signatures.
    #[error("no blank line separates the text from the signatures")]
    MissingSeparator,
    /// Nothing follows the blank line.
    #[error("the note has no signature lines")]
    NoSignatures,
    /// The last signature line does not end with a newline.
    #[error("the note does not end with a newline")]
    MissingFinalNewline,
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// A signature line is not `— <name> <base64>`.
    #[error("line {line}: a signature line must be '— <key name> <base64 signature>'")]
    MalformedSignatureLine {
        /// 1-based line number in the note.
        line: usize,
    },
    /// A signature line names an invalid key.
    #[error("line {line}: {source}")]
    InvalidKeyName {
        /// 1-based line number in the note.
        line: usize,
        /// Why the name is invalid.
        source: KeyError,
    },
    /// A signature is not canonical base64 of at least 5 bytes (a 4-byte key
    /// id and a non-empty signature).
    #[error("line {line}: the signature is not canonical base64 of a key id and a signature")]
    InvalidSignatureEncoding {
        /// 1-based line number in the note.
        line: usize,
    },
    /// A note's text must be non-empty and end with a newline.
    #[error("a note's text must be non-empty and end with a newline")]
    InvalidText,
    /// A signature was built with an invalid key name.
    #[error("invalid signer: {0}")]
    InvalidSigner(KeyError),
    /// A signature was built with no signature bytes.
    #[error("a signature must not be empty")]
    EmptySignature,
    /// A signature by a trusted key does not verify: the note was altered or
    /// forged.
    #[error("the signature by {name}+{key_id:08x} does not verify")]
    InvalidSignature {
        /// The key's name.
        name: String,
        /// The key's id.
        key_id: u32,
    },
    /// A trusted key signed the note twice.
    #[error("{name}+{key_id:08x} signed the note more than once")]
    DuplicateSignature {
        /// The key's name.
        name: String,
        /// The key's id.
        key_id: u32,
    },
    /// Two different trusted keys share a name and key id, so a signature
    /// cannot be attributed.
    #[error("more than one trusted key is named {name}+{key_id:08x}")]
    AmbiguousKey {
        /// The keys' name.
        name: String,
        /// The keys' id.
        key_id: u32,
    },
    /// No signature is by a trusted key.
    #[error("the note is not signed by any trusted key")]
    NoTrustedSignature,
}

/// Checks a key name: non-empty, no Unicode spaces, no `+`, and (since notes
/// forbid them) no ASCII control characters.
fn check_key_name(name: &str) -> Result<(), KeyError> {
    let bad = |c: char| c.is_whitespace() || c == '+' || c < ' ';
    if name.is_empty() || name.contains(bad) {
        return Err(KeyError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || signature type || public key)[:4]`, big-endian.
fn compute_key_id(name: &str, signature_type: u8, public_key: &[u8]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', signature_type])
        .chain_update(public_key)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Parses a key id: exactly 8 lowercase hex digits.
fn parse_key_id(text: &str) -> Result<u32, KeyError> {
    let lowercase_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if text.len() != 8 || !text.chars().all(lowercase_hex) {
        return Err(KeyError::InvalidKeyId);
    }
    u32::from_str_radix(text, 16).map_err(|_| KeyError::InvalidKeyId)
}

/// Splits `<name>+<key id>+<base64>` into its parts, checking the name and
/// the id's form. The base64 may itself contain `+`.
pub(crate) fn split_key(text: &str) -> Result<(&str, u32, &str), KeyError> {
    let (name, rest) = text.split_once('+').ok_or(KeyError::Malformed)?;
    let (id, data) = rest.split_once('+').ok_or(KeyError::Malformed)?;
    check_key_name(name)?;
    Ok((name, parse_key_id(id)?, data))
}

/// A trusted Ed25519 public key with its name and C2SP key id.
///
/// Written as a verifier key, `<name>+<key id as 8 lowercase hex>+<base64(0x01
/// || 32-byte public key)>`, where the key id is
/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses a verifier key, refusing an invalid name, an id that is not
    /// the one the name and key hash to, a signature type other than
    /// Ed25519, and public keys that are not usable.
    pub fn parse(text: &str) -> Result<VerifierKey, KeyError> {
        let (name, stated, data) = split_key(text)?;
        let bytes = STANDARD.decode(data).map_err(|_| KeyError::InvalidBase64)?;
        let (&signature_type, public) = bytes.split_first().ok_or(KeyError::Malformed)?;
        if signature_type != ED25519_SIGNATURE_TYPE {
            return Err(KeyError::UnsupportedSignatureType(signature_type));
        }
        let public: [u8; 32] = public.try_into().map_err(|_| KeyError::WrongKeyLength {
            actual: public.len(),
        })?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| KeyError::InvalidPublicKey)?;
        let verifier = VerifierKey::from_public(name, key)?;
        if verifier.key_id != stated {
            return Err(KeyError::KeyIdMismatch {
                stated,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// The verifier key of `key` under `name`, computing its key id.
    /// Refuses an invalid name and a public key of small order (which would
    /// accept signatures over many messages).
    pub fn from_public(name: &str, key: VerifyingKey) -> Result<VerifierKey, KeyError> {
        check_key_name(name)?;
        if key.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: compute_key_id(name, ED25519_SIGNATURE_TYPE, key.as_bytes()),
            key,
        })
    }

    /// The key's name, e.g. `audit.example.com`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The C2SP key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The verifier key text, `<name>+<key id>+<base64(0x01 || key)>`.
    pub fn to_vkey(&self) -> String {
        let mut data = Vec::with_capacity(33);
        data.push(ED25519_SIGNATURE_TYPE);
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(data)
        )
    }

    /// Whether this key signed `signature` over `text`. Strict verification:
    /// non-canonical signatures are refused.
    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; ED25519_SIGNATURE_LEN]>::try_from(signature) else {
            return false;
        };
        self.key
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&bytes))
            .is_ok()
    }

    fn signed(&self, signature: &NoteSignature) -> bool {
        self.name == signature.name && self.key_id == signature.key_id
    }
}

impl fmt::Display for VerifierKey {
    /// The verifier key text (see [`VerifierKey::to_vkey`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl FromStr for VerifierKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        VerifierKey::parse(text)
    }
}

/// One signature line of a note: who signed (key name and id) and the
/// signature bytes, whatever the algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    /// A signature by the key `name`/`key_id`. Refuses an invalid name and
    /// an empty signature, which no note can carry.
    pub fn new(name: &str, key_id: u32, signature: Vec<u8>) -> Result<NoteSignature, NoteError> {
        check_key_name(name).map_err(NoteError::InvalidSigner)?;
        if signature.is_empty() {
            return Err(NoteError::EmptySignature);
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id,
            signature,
        })
    }

    /// An Ed25519 signature made by the private half of `key`.
    pub fn from_ed25519(key: &VerifierKey, signature: &Signature) -> NoteSignature {
        NoteSignature {
            name: key.name.clone(),
            key_id: key.key_id,
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// The signing key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signing key's id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature bytes, without the key id.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// `— <name> <base64(key id || signature)>\n`.
    fn write_line(&self, out: &mut String) {
        let mut bytes = Vec::with_capacity(4 + self.signature.len());
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&self.signature);
        out.push_str(SIGNATURE_LINE_PREFIX);
        out.push_str(&self.name);
        out.push(' ');
        out.push_str(&STANDARD.encode(bytes));
        out.push('\n');
    }

    /// Parses one signature line (without its newline); `line` is its
    /// 1-based number in the note, for errors.
    fn parse_line(text: &str, line: usize) -> Result<NoteSignature, NoteError> {
        let (name, encoded) = text
            .strip_prefix(SIGNATURE_LINE_PREFIX)
            .and_then(|rest| rest.split_once(' '))
            .ok_or(NoteError::MalformedSignatureLine { line })?;
        check_key_name(name).map_err(|source| NoteError::InvalidKeyName { line, source })?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| NoteError::InvalidSignatureEncoding { line })?;
        match bytes.split_first_chunk::<4>() {
            Some((id, signature)) if !signature.is_empty() => Ok(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes(*id),
                signature: signature.to_vec(),
            }),
            _ => Err(NoteError::InvalidSignatureEncoding { line }),
        }
    }
}

/// A signed note: a text and one or more signatures over it.
///
/// Every `Note` formats to a note that [`Note::parse`] reads back to an equal
/// value, and every parsed note formats back to the exact bytes it was read
/// from. Parsing checks form only; [`Note::verify`] decides trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// The first ASCII control character other than newline, with its offset.
fn find_control_character(text: &str) -> Option<(usize, char)> {
    text.char_indices().find(|&(_, c)| c < ' ' && c != '\n')
}

impl Note {
    /// A note of `text` with `signatures`. The text must be non-empty, end
    /// with a newline and hold no control character but newline; there must
    /// be between 1 and [`MAX_SIGNATURES`] signatures, and the whole note
    /// must fit in [`MAX_NOTE_LEN`].
    pub fn new(text: &str, signatures: Vec<NoteSignature>) -> Result<Note, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::InvalidText);
        }
        if let Some((offset, character)) = find_control_character(text) {
            return Err(NoteError::ControlCharacter { character, offset });
        }
        if signatures.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        let note = Note {
            text: text.to_owned(),
            signatures,
        };
        let len = note.to_text().len();
        if len > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge { len });
        }
        Ok(note)
    }

    /// Parses a signed note, following every rule of the C2SP format: at
    /// most [`MAX_NOTE_LEN`] bytes; no control character but newline; the
    /// text (ending with its newline) runs up to the last blank line, and
    /// every line after it is a signature line `— <key name> <base64(4-byte
    /// big-endian key id || signature)>` ending with a newline. Signatures
    /// are not checked here: see [`Note::verify`].
    pub fn parse(note: &str) -> Result<Note, NoteError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge { len: note.len() });
        }
        if let Some((offset, character)) = find_control_character(note) {
            return Err(NoteError::ControlCharacter { character, offset });
        }
        let split = note.rfind("\n\n").ok_or(NoteError::MissingSeparator)?;
        let (text, signature_block) = (&note[..=split], &note[split + 2..]);
        if signature_block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let lines = signature_block
            .strip_suffix('\n')
            .ok_or(NoteError::MissingFinalNewline)?;
        // The text's lines, then the blank line, then the signatures.
        let first_signature_line = text.matches('\n').count() + 2;
        let mut signatures = Vec::new();
        for (i, line) in lines.split('\n').enumerate() {
            if i == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            signatures.push(NoteSignature::parse_line(line, first_signature_line + i)?);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures, in note order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The note: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for signature in &self.signatures {
            signature.write_line(&mut out);
        }
        out
    }

    /// Checks the note against the trusted `keys` and returns those that
    /// signed it, in signature order.
    ///
    /// A signature counts as by a trusted key only when both its key name
    /// and its key id match one; all others are ignored (that is how keys
    /// rotate and witnesses cosign). A signature by a trusted key that does
    /// not verify rejects the whole note, as does a trusted key signing
    /// twice or two different trusted keys sharing a name and id. With no
    /// signature by a trusted key the note is rejected.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<VerifierKey>, NoteError> {
        let mut verified: Vec<VerifierKey> = Vec::new();
        for signature in &self.signatures {
            let mut matching = keys.iter().filter(|key| key.signed(signature));
            let Some(key) = matching.next() else {
                continue;
            };
            let (name, key_id) = (signature.name.clone(), signature.key_id);
            if matching.any(|other| other != key) {
                return Err(NoteError::AmbiguousKey { name, key_id });
            }
            if verified.contains(key) {
                return Err(NoteError::DuplicateSignature { name, key_id });
            }
            if !key.verifies(&self.text, &signature.signature) {
                return Err(NoteError::InvalidSignature { name, key_id });
            }
            verified.push(key.clone());
        }
        if verified.is_empty() {
            return Err(NoteError::NoTrustedSignature);
        }
        Ok(verified)
    }
}

impl FromStr for Note {
    type Err = NoteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Note::parse(text)
    }
}

impl fmt::Display for Note {
    /// The note text (see [`Note::to_text`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use proptest::prelude::*;

    use super::*;

    /// The example key of the C2SP signed-note spec.
    const EXAMPLE_VKEY: &str =
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn verifier(name: &str, seed: u8) -> VerifierKey {
        VerifierKey::from_public(name, signing_key(seed).verifying_key()).unwrap()
    }

    fn sign(name: &str, seed: u8, text: &str) -> NoteSignature {
        let key = signing_key(seed);
        NoteSignature::from_ed25519(&verifier(name, seed), &key.sign(text.as_bytes()))
    }

    fn encode_vkey(name: &str, id: &str, data: &[u8]) -> String {
        format!("{name}+{id}+{}", STANDARD.encode(data))
    }

    #[test]
    fn the_spec_example_vkey_parses_and_formats_back() {
        let key = VerifierKey::parse(EXAMPLE_VKEY).unwrap();
        assert_eq!(key.name(), "example.com/foo");
        assert_eq!(key.key_id(), 0x530d903a);
        assert_eq!(key.to_vkey(), EXAMPLE_VKEY);
        assert_eq!(key.to_string(), EXAMPLE_VKEY);
        assert_eq!(EXAMPLE_VKEY.parse::<VerifierKey>().unwrap(), key);
    }

    #[test]
    fn from_public_computes_the_c2sp_key_id() {
        let key = verifier("audit.example.com", 7);
        let mut input = b"audit.example.com\n\x01".to_vec();
        input.extend_from_slice(key.public_key().as_bytes());
        let digest = Sha256::digest(&input);
        assert_eq!(key.key_id().to_be_bytes(), digest[..4]);
        assert_eq!(VerifierKey::parse(&key.to_vkey()).unwrap(), key);
    }

    #[test]
    fn malformed_verifier_keys_are_refused() {
        let key = verifier("audit.example.com", 7);
        let id = format!("{:08x}", key.key_id());
        let mut good = vec![ED25519_SIGNATURE_TYPE];
        good.extend_from_slice(key.public_key().as_bytes());
        let mut identity = vec![ED25519_SIGNATURE_TYPE, 1];
        identity.extend_from_slice(&[0; 31]);
        let weak_id = format!(
            "{:08x}",
            compute_key_id("audit.example.com", 1, &identity[1..])
        );
        let cases: Vec<(String, KeyError)> = vec![
            ("".into(), KeyError::Malformed),
            ("audit.example.com".into(), KeyError::Malformed),
            (format!("audit.example.com+{id}"), KeyError::Malformed),
            (
                encode_vkey("", &id, &good),
                KeyError::InvalidName { name: "".into() },
            ),
            (
                encode_vkey("audit example", &id, &good),
                KeyError::InvalidName {
                    name: "audit example".into(),
                },
            ),
            (
                encode_vkey("audit\u{a0}example", &id, &good),
                KeyError::InvalidName {
                    name: "audit\u{a0}example".into(),
                },
            ),
            (
                encode_vkey("audit.example.com", &id.to_uppercase(), &good),
                KeyError::InvalidKeyId,
            ),
            (
                encode_vkey("audit.example.com", &id[1..], &good),
                KeyError::InvalidKeyId,
            ),
            (
                encode_vkey("audit.example.com", "+2345678", &good),
                KeyError::InvalidKeyId,
            ),
            (
                format!("audit.example.com+{id}+not base64"),
                KeyError::InvalidBase64,
            ),
            (
                encode_vkey("audit.example.com", &id, &[]),
                KeyError::Malformed,
            ),
            (
                encode_vkey("audit.example.com", &id, &[&[2u8][..], &good[1..]].concat()),
                KeyError::UnsupportedSignatureType(2),
            ),
            (
                encode_vkey("audit.example.com", &id, &good[..32]),
                KeyError::WrongKeyLength { actual: 31 },
            ),
            (
                encode_vkey("audit.example.com", &weak_id, &identity),
                KeyError::InvalidPublicKey,
            ),
            (
                encode_vkey("audit.example.org", &id, &good),
                KeyError::KeyIdMismatch {
                    stated: key.key_id(),
                    computed: verifier("audit.example.org", 7).key_id(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(VerifierKey::parse(&text), Err(want), "{text}");
        }
    }

    #[test]
    fn a_note_round_trips_byte_for_byte() {
        let text = "first line\n\nafter an empty line\n\n";
        let note = Note::new(
            text,
            vec![
                sign("a.example", 1, text),
                sign("b.example/log", 2, text),
                NoteSignature::new("witness.example", 0xdeadbeef, vec![9; 70]).unwrap(),
            ],
        )
        .unwrap();
        let written = note.to_text();
        assert!(written.starts_with("first line\n\nafter an empty line\n\n\n— a.example "));
        let parsed = Note::parse(&written).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(parsed.text(), text);
        assert_eq!(parsed.to_text(), written);
        assert_eq!(parsed.signatures()[2].key_id(), 0xdeadbeef);
        assert_eq!(parsed.signatures()[2].signature(), &[9; 70]);
    }

    #[test]
    fn the_text_runs_to_the_last_blank_line() {
        let note = Note::parse("a\n\n— x AAAAAAA=\n\n— y AAAAAAA=\n").unwrap();
        assert_eq!(note.text(), "a\n\n— x AAAAAAA=\n");
        assert_eq!(note.signatures().len(), 1);
        assert_eq!(note.signatures()[0].name(), "y");
    }

    #[test]
    fn malformed_notes_are_refused() {
        let sig = "AAAAAAA="; // key id 0, one signature byte
        let cases: Vec<(String, NoteError)> = vec![
            ("".into(), NoteError::MissingSeparator),
            (format!("text\n— k {sig}\n"), NoteError::MissingSeparator),
            ("text\n\n".into(), NoteError::NoSignatures),
            (format!("text\n\n— k {sig}"), NoteError::MissingFinalNewline),
            (
                format!("text\r\n\n— k {sig}\n"),
                NoteError::ControlCharacter {
                    character: '\r',
                    offset: 4,
                },
            ),
            (
                format!("te\txt\n\n— k {sig}\n"),
                NoteError::ControlCharacter {
                    character: '\t',
                    offset: 2,
                },
            ),
            (
                format!("text\n\n- k {sig}\n"),
                NoteError::MalformedSignatureLine { line: 3 },
            ),
            (
                format!("text\n\n—k {sig}\n"),
                NoteError::MalformedSignatureLine { line: 3 },
            ),
            (
                "text\n\n— k\n".into(),
                NoteError::MalformedSignatureLine { line: 3 },
            ),
            (
                format!("a\nb\n\n— k {sig}\n— k+1 {sig}\n"),
                NoteError::InvalidKeyName {
                    line: 5,
                    source: KeyError::InvalidName { name: "k+1".into() },
                },
            ),
            (
                format!("text\n\n—  k {sig}\n"),
                NoteError::InvalidKeyName {
                    line: 3,
                    source: KeyError::InvalidName { name: "".into() },
                },
            ),
            (
                format!("text\n\n— k\u{3000}x {sig}\n"),
                NoteError::InvalidKeyName {
                    line: 3,
                    source: KeyError::InvalidName {
                        name: "k\u{3000}x".into(),
                    },
                },
            ),
            (
                "text\n\n— k \n".into(),
                NoteError::InvalidSignatureEncoding { line: 3 },
            ),
            (
                format!("text\n\n— k  {sig}\n"),
                NoteError::InvalidSignatureEncoding { line: 3 },
            ),
            (
                format!("text\n\n— k {sig} \n"),
                NoteError::InvalidSignatureEncoding { line: 3 },
            ),
            (
                "text\n\n— k AAAAAAA\n".into(),
                NoteError::InvalidSignatureEncoding { line: 3 },
            ),
            // Non-zero padding bits: not the canonical encoding.
            (
                "text\n\n— k AAAAAAB=\n".into(),
                NoteError::InvalidSignatureEncoding { line: 3 },
            ),
            (
                "text\n\n— k AAAAAA==\n".into(),
                NoteError::InvalidSignatureEncoding { line: 3 },
            ),
            (
                "text\n\n— k AAAAAA-_\n".into(),
                NoteError::InvalidSignatureEncoding { line: 3 },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Note::parse(&text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn size_limits_are_enforced() {
        let line = "— k AAAAAAA=\n";
        let at_limit = format!("t\n\n{}", line.repeat(MAX_SIGNATURES));
        assert_eq!(Note::parse(&at_limit).unwrap().signatures().len(), 100);
        let over = format!("t\n\n{}", line.repeat(MAX_SIGNATURES + 1));
        assert_eq!(Note::parse(&over), Err(NoteError::TooManySignatures));
        let huge = format!("{}\n\n{line}", "x".repeat(MAX_NOTE_LEN));
        assert_eq!(
            Note::parse(&huge),
            Err(NoteError::TooLarge { len: huge.len() })
        );
    }

    #[test]
    fn new_refuses_what_could_not_be_parsed_back() {
        let sig = || sign("k", 1, "t\n");
        assert_eq!(Note::new("", vec![sig()]), Err(NoteError::InvalidText));
        assert_eq!(Note::new("t", vec![sig()]), Err(NoteError::InvalidText));
        assert_eq!(
            Note::new("t\u{1b}\n", vec![sig()]),
            Err(NoteError::ControlCharacter {
                character: '\u{1b}',
                offset: 1
            })
        );
        assert_eq!(Note::new("t\n", vec![]), Err(NoteError::NoSignatures));
        assert_eq!(
            Note::new("t\n", vec![sig(); MAX_SIGNATURES + 1]),
            Err(NoteError::TooManySignatures)
        );
        assert!(matches!(
            Note::new(&format!("{}\n", "x".repeat(MAX_NOTE_LEN)), vec![sig()]),
            Err(NoteError::TooLarge { .. })
        ));
        assert_eq!(
            NoteSignature::new("a b", 1, vec![1]),
            Err(NoteError::InvalidSigner(KeyError::InvalidName {
                name: "a b".into()
            }))
        );
        assert_eq!(
            NoteSignature::new("k", 1, vec![]),
            Err(NoteError::EmptySignature)
        );
    }

    #[test]
    fn verify_returns_the_trusted_keys_that_signed() {
        let text = "checkpoint\n";
        let note = Note::new(text, vec![sign("a", 1, text), sign("b", 2, text)]).unwrap();
        let (a, b) = (verifier("a", 1), verifier("b", 2));
        assert_eq!(note.verify(&[b.clone(), a.clone()]), Ok(vec![a.clone(), b]));
        assert_eq!(note.verify(std::slice::from_ref(&a)), Ok(vec![a]));
    }

    #[test]
    fn signatures_by_unknown_keys_are_ignored_even_when_they_share_a_name_or_an_id() {
        let text = "checkpoint\n";
        let trusted = verifier("log.example", 1);
        let impostor_same_name =
            NoteSignature::new("log.example", 0x0bad0bad, vec![0; 64]).unwrap();
        let impostor_same_id = NoteSignature::new("other", trusted.key_id(), vec![0; 64]).unwrap();
        let note = Note::new(
            text,
            vec![
                impostor_same_name,
                impostor_same_id,
                sign("log.example", 1, text),
            ],
        )
        .unwrap();
        assert_eq!(
            note.verify(std::slice::from_ref(&trusted)),
            Ok(vec![trusted])
        );
    }

    #[test]
    fn a_note_without_a_trusted_signature_is_refused() {
        let text = "checkpoint\n";
        let note = Note::new(text, vec![sign("a", 1, text)]).unwrap();
        assert_eq!(
            note.verify(&[verifier("a", 2), verifier("b", 1)]),
            Err(NoteError::NoTrustedSignature)
        );
        assert_eq!(note.verify(&[]), Err(NoteError::NoTrustedSignature));
    }

    #[test]
    fn a_bad_signature_by_a_trusted_key_rejects_the_note() {
        let text = "checkpoint\n";
        let good = sign("a", 1, text);
        let key = verifier("a", 1);
        let mut flipped = good.signature().to_vec();
        flipped[10] ^= 1;
        let short = good.signature()[..63].to_vec();
        for forged in [flipped, short] {
            let bad = NoteSignature::new("a", key.key_id(), forged).unwrap();
            // Even next to a good signature by another trusted key.
            let note = Note::new(text, vec![sign("b", 2, text), bad]).unwrap();
            assert_eq!(
                note.verify(&[key.clone(), verifier("b", 2)]),
                Err(NoteError::InvalidSignature {
                    name: "a".into(),
                    key_id: key.key_id()
                })
            );
        }
        let other_text = Note::new("other\n", vec![good]).unwrap();
        assert!(matches!(
            other_text.verify(&[key]),
            Err(NoteError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn a_trusted_key_signing_twice_or_an_ambiguous_key_rejects_the_note() {
        let text = "checkpoint\n";
        let twice = Note::new(text, vec![sign("a", 1, text), sign("a", 1, text)]).unwrap();
        let key = verifier("a", 1);
        assert_eq!(
            twice.verify(std::slice::from_ref(&key)),
            Err(NoteError::DuplicateSignature {
                name: "a".into(),
                key_id: key.key_id()
            })
        );
        let once = Note::new(text, vec![sign("a", 1, text)]).unwrap();
        let colliding = VerifierKey {
            key: signing_key(3).verifying_key(),
            ..key.clone()
        };
        assert_eq!(
            once.verify(&[key.clone(), colliding]),
            Err(NoteError::AmbiguousKey {
                name: "a".into(),
                key_id: key.key_id()
            })
        );
        // The same key listed twice is not ambiguous.
        assert_eq!(once.verify(&[key.clone(), key.clone()]), Ok(vec![key]));
    }

    fn arb_signature() -> impl Strategy<Value = NoteSignature> {
        (
            "[a-z0-9./—-]{1,24}",
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 1..100),
        )
            .prop_map(|(name, key_id, bytes)| NoteSignature::new(&name, key_id, bytes).unwrap())
    }

    proptest! {
        #[test]
        fn any_note_round_trips(
            text in "([^\\x00-\\x1f]{0,20}\n){1,6}",
            signatures in proptest::collection::vec(arb_signature(), 1..5),
        ) {
            let note = Note::new(&text, signatures).unwrap();
            let written = note.to_text();
            let parsed = Note::parse(&written).unwrap();
            prop_assert_eq!(parsed.to_text(), written);
            prop_assert_eq!(parsed, note);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in any::<String>()) {
            if let Ok(note) = Note::parse(&text) {
                prop_assert_eq!(note.to_text(), text);
            }
        }
    }
}
