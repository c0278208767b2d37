//! The deployment's checkpoint signing key: an Ed25519 key named after the
//! deployment origin, kept in a file in the `golang.org/x/mod/sumdb/note`
//! private key format
//! `PRIVATE+KEY+<name>+<key id as 8 hex>+<base64(0x01 || 32-byte seed)>`.
//!
//! Owns generating, loading, saving and using that key. It must never log
//! or print key material: `Debug` is redacted, errors never quote the key
//! text, and the only ways out are [`NoteSigner::to_skey`] (wiped on drop)
//! and [`NoteSigner::save_new`] (a new owner-only file).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SECRET_KEY_LENGTH, Signer as _, SigningKey};
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::ledger::{
    Checkpoint, CheckpointError, ED25519_SIGNATURE_TYPE, KeyError, Note, NoteError, NoteSignature,
    SignedCheckpoint, VerifierKey, split_key,
};

/// What every private key text starts with.
const SKEY_PREFIX: &str = "PRIVATE+KEY+";

/// Permission bits that let group or others read, write or execute.
const GROUP_OR_OTHER_BITS: u32 = 0o077;

/// The largest key file read. A key is about 60 bytes plus its name.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// A signing key that cannot be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// The text does not start with `PRIVATE+KEY+`.
    #[error("a signing key must start with {SKEY_PREFIX}")]
    NotPrivateKey,
    /// The name, key id or key data is invalid.
    #[error("invalid signing key: {0}")]
    Key(#[from] KeyError),
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed: {0}")]
    Random(rand::Error),
    /// The key file cannot be read or written.
    #[error("signing key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The key file is open to group or others.
    #[error(
        "signing key file {} can be accessed by group or others (mode {mode:03o}); \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a regular file, or is too large to be a key.
    #[error("signing key file {} is not a key file", path.display())]
    NotAKeyFile {
        /// The path given.
        path: PathBuf,
    },
    /// [`NoteSigner::save_new`] found a file already there.
    #[error("signing key file {} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
}

/// An Ed25519 signing key with its C2SP key name (the deployment origin,
/// e.g. `audit.example.com`). Signs notes and checkpoints.
pub struct NoteSigner {
    key: SigningKey,
    verifier: VerifierKey,
}

impl fmt::Debug for NoteSigner {
    /// Name and key id only: the key itself never goes through `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.verifier.name())
            .field("key_id", &format_args!("{:08x}", self.verifier.key_id()))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A new key named `name`, from the operating system's random generator.
    pub fn generate(name: &str) -> Result<NoteSigner, SigningKeyError> {
        let mut seed = Zeroizing::new([0u8; SECRET_KEY_LENGTH]);
        rand::rngs::OsRng
            .try_fill_bytes(seed.as_mut())
            .map_err(SigningKeyError::Random)?;
        NoteSigner::from_seed(name, &seed)
    }

    fn from_seed(
        name: &str,
        seed: &[u8; SECRET_KEY_LENGTH],
    ) -> Result<NoteSigner, SigningKeyError> {
        let key = SigningKey::from_bytes(seed);
        let verifier = VerifierKey::from_public(name, key.verifying_key())?;
        Ok(NoteSigner { key, verifier })
    }

    /// Parses `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`, refusing
    /// a key id that is not the one of the name and derived public key.
    pub fn from_skey(text: &str) -> Result<NoteSigner, SigningKeyError> {
        let rest = text
            .strip_prefix(SKEY_PREFIX)
            .ok_or(SigningKeyError::NotPrivateKey)?;
        let (name, stated, data) = split_key(rest)?;
        let bytes = Zeroizing::new(STANDARD.decode(data).map_err(|_| KeyError::InvalidBase64)?);
        let (&signature_type, seed) = bytes.split_first().ok_or(KeyError::Malformed)?;
        if signature_type != ED25519_SIGNATURE_TYPE {
            return Err(KeyError::UnsupportedSignatureType(signature_type).into());
        }
        let seed: &[u8; SECRET_KEY_LENGTH] = seed
            .try_into()
            .map_err(|_| KeyError::WrongKeyLength { actual: seed.len() })?;
        let signer = NoteSigner::from_seed(name, seed)?;
        let computed = signer.verifier.key_id();
        if computed != stated {
            return Err(KeyError::KeyIdMismatch { stated, computed }.into());
        }
        Ok(signer)
    }

    /// The private key text, `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ||
    /// seed)>`, wiped from memory when dropped.
    pub fn to_skey(&self) -> Zeroizing<String> {
        let mut data = Zeroizing::new([0u8; 1 + SECRET_KEY_LENGTH]);
        data[0] = ED25519_SIGNATURE_TYPE;
        data[1..].copy_from_slice(self.key.as_bytes());
        let encoded = Zeroizing::new(STANDARD.encode(data.as_slice()));
        let id = format!("{:08x}", self.verifier.key_id());
        let name = self.verifier.name();
        // Sized up front so that no reallocation leaves a copy behind.
        let len = SKEY_PREFIX.len() + name.len() + 1 + id.len() + 1 + encoded.len();
        let mut skey = Zeroizing::new(String::with_capacity(len));
        for part in [SKEY_PREFIX, name, "+", &id, "+", &encoded] {
            skey.push_str(part);
        }
        skey
    }

    /// The key's name: the deployment origin.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// The public half, to publish and to verify with.
    pub fn verifier_key(&self) -> VerifierKey {
        self.verifier.clone()
    }

    /// An Ed25519 signature over `text` under this key's name and id.
    pub fn sign(&self, text: &str) -> NoteSignature {
        NoteSignature::from_ed25519(&self.verifier, &self.key.sign(text.as_bytes()))
    }

    /// `text` signed by this key. The text must be a valid note text (see
    /// [`Note::new`]).
    pub fn sign_note(&self, text: &str) -> Result<Note, NoteError> {
        Note::new(text, vec![self.sign(text)])
    }

    /// `checkpoint` signed by this key.
    pub fn sign_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        SignedCheckpoint::from_note(self.sign_note(&checkpoint.body())?)
    }

    /// Reads a key file written by [`NoteSigner::save_new`] (one trailing
    /// newline is allowed). Refuses a file that group or others may read or
    /// write: a key anyone else could read must be treated as leaked.
    pub fn load(path: &Path) -> Result<NoteSigner, SigningKeyError> {
        let io_error = |source| SigningKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        // Checked on the open file, so the file read is the file checked.
        let metadata = file.metadata().map_err(io_error)?;
        if !metadata.is_file() || metadata.len() > MAX_KEY_FILE_LEN {
            return Err(SigningKeyError::NotAKeyFile {
                path: path.to_owned(),
            });
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & GROUP_OR_OTHER_BITS != 0 {
            return Err(SigningKeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        // Room for the whole file up front, so that reading never
        // reallocates and leaves a copy of the key behind.
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(io_error)?;
        let skey = text.strip_suffix('\n').unwrap_or(&text);
        NoteSigner::from_skey(skey)
    }

    /// Writes the key to a new file at `path` with mode 0600, followed by a
    /// newline. Never overwrites: an existing file is an error.
    pub fn save_new(&self, path: &Path) -> Result<(), SigningKeyError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => SigningKeyError::AlreadyExists {
                    path: path.to_owned(),
                },
                _ => SigningKeyError::Io {
                    path: path.to_owned(),
                    source,
                },
            })?;
        let skey = self.to_skey();
        let written = file
            .write_all(skey.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            // Best effort: a half-written key file must not be mistaken for
            // a key later; the write error is the one worth reporting.
            let _ = std::fs::remove_file(path);
            return Err(SigningKeyError::Io {
                path: path.to_owned(),
                source,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::ledger::{ChainHash, TreeHash, tenant_origin};

    /// The example key, text and note of the `golang.org/x/mod/sumdb/note`
    /// documentation: a known answer from the reference implementation.
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIGNATURE_LINE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn checkpoint(origin: &str) -> Checkpoint {
        Checkpoint::new(
            tenant_origin(
                origin,
                "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap(),
            ),
            42,
            TreeHash::from_bytes([7; 32]),
            ChainHash::from_bytes([9; 32]),
        )
        .unwrap()
    }

    #[test]
    fn the_reference_implementation_example_signs_identically() {
        let signer = NoteSigner::from_skey(GO_SKEY).unwrap();
        assert_eq!(signer.verifier_key().to_vkey(), GO_VKEY);
        assert_eq!(*signer.to_skey(), GO_SKEY);
        let note = signer.sign_note(GO_TEXT).unwrap();
        assert_eq!(note.to_text(), format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}"));
    }

    #[test]
    fn a_generated_key_round_trips_through_its_skey() {
        let signer = NoteSigner::generate("audit.example.com").unwrap();
        let skey = signer.to_skey();
        assert!(skey.starts_with(&format!(
            "PRIVATE+KEY+audit.example.com+{:08x}+",
            signer.verifier_key().key_id()
        )));
        let again = NoteSigner::from_skey(&skey).unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
        assert_eq!(*again.to_skey(), *skey);
        assert_eq!(again.name(), "audit.example.com");
    }

    #[test]
    fn the_vkey_matches_the_skey() {
        let signer = NoteSigner::generate("audit.example.com").unwrap();
        let vkey = VerifierKey::parse(&signer.verifier_key().to_vkey()).unwrap();
        assert_eq!(vkey, signer.verifier_key());
        // PRIVATE+KEY+<name>+<id>+… and <name>+<id>+…
        let skey = signer.to_skey();
        let vkey_text = vkey.to_vkey();
        assert_eq!(skey.split('+').nth(3), vkey_text.split('+').nth(1));
        assert_eq!(skey.split('+').nth(2), vkey_text.split('+').next());
    }

    #[test]
    fn malformed_skeys_are_refused() {
        let wrong_type = GO_SKEY.replace("+AYEK", "+AoEK");
        let cases = [
            ("", "NotPrivateKey"),
            (&GO_SKEY[12..], "NotPrivateKey"),
            (GO_VKEY, "NotPrivateKey"),
            ("PRIVATE+KEY+PeterNeumann", "Malformed"),
            (&GO_SKEY.replace("c74f20a3", "c74f20a4"), "KeyIdMismatch"),
            (&GO_SKEY.replace("c74f20a3", "C74F20A3"), "InvalidKeyId"),
            (
                &GO_SKEY.replace("PeterNeumann", "Peter Neumann"),
                "InvalidName",
            ),
            (
                &GO_SKEY.replace("PeterNeumann", "PeterNeumanm"),
                "KeyIdMismatch",
            ),
            (&wrong_type, "UnsupportedSignatureType"),
            (&GO_SKEY[..GO_SKEY.len() - 4], "WrongKeyLength"),
            (&format!("{GO_SKEY}\n"), "InvalidBase64"),
        ];
        for (text, want) in cases {
            let err = NoteSigner::from_skey(text).unwrap_err();
            assert!(format!("{err:?}").contains(want), "{text:?}: {err:?}");
            assert!(!err.to_string().contains("AYEKFALV"), "{err}");
        }
    }

    #[test]
    fn signatures_verify_with_note_verify_and_fail_after_tampering() {
        let signer = NoteSigner::generate("audit.example.com").unwrap();
        let keys = [signer.verifier_key()];
        let note = signer.sign_note("hello\n").unwrap();
        assert_eq!(note.verify(&keys), Ok(keys.to_vec()));
        let tampered = Note::parse(&note.to_text().replace("hello", "hellp")).unwrap();
        assert!(matches!(
            tampered.verify(&keys),
            Err(NoteError::InvalidSignature { .. })
        ));
        assert_eq!(signer.sign_note("no newline"), Err(NoteError::InvalidText));
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_fails_after_tampering() {
        let signer = NoteSigner::generate("audit.example.com").unwrap();
        let keys = [signer.verifier_key()];
        let signed = signer
            .sign_checkpoint(&checkpoint("audit.example.com"))
            .unwrap();
        let parsed = SignedCheckpoint::parse(&signed.to_text()).unwrap();
        assert_eq!(parsed.checkpoint(), &checkpoint("audit.example.com"));
        assert_eq!(parsed.verify(&keys), Ok(keys.to_vec()));

        let mut other = checkpoint("audit.example.com");
        other.size = 43;
        let forged_body = signed
            .to_text()
            .replace(&checkpoint("audit.example.com").body(), &other.body());
        let forged = SignedCheckpoint::parse(&forged_body).unwrap();
        assert_eq!(forged.checkpoint().size, 43);
        assert!(matches!(
            forged.verify(&keys),
            Err(NoteError::InvalidSignature { .. })
        ));
        let rotated = NoteSigner::generate("audit.example.com").unwrap();
        assert_eq!(
            parsed.verify(&[rotated.verifier_key()]),
            Err(NoteError::NoTrustedSignature)
        );
    }

    #[test]
    fn a_checkpoint_with_an_invalid_origin_is_not_signed() {
        let signer = NoteSigner::generate("audit.example.com").unwrap();
        let mut bad = checkpoint("audit.example.com");
        bad.origin = "two words".to_owned();
        assert_eq!(
            signer.sign_checkpoint(&bad),
            Err(CheckpointError::InvalidOrigin)
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let signer = NoteSigner::from_skey(GO_SKEY).unwrap();
        let debug = format!("{signer:?}");
        assert_eq!(
            debug,
            "NoteSigner { name: \"PeterNeumann\", key_id: c74f20a3, .. }"
        );
    }

    #[test]
    fn a_saved_key_is_owner_only_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let signer = NoteSigner::generate("audit.example.com").unwrap();
        signer.save_new(&path).unwrap();
        let metadata = fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", signer.to_skey().as_str())
        );
        let loaded = NoteSigner::load(&path).unwrap();
        assert_eq!(loaded.verifier_key(), signer.verifier_key());
    }

    #[test]
    fn saving_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        fs::write(&path, "keep me").unwrap();
        let err = NoteSigner::generate("audit.example.com")
            .unwrap()
            .save_new(&path)
            .unwrap_err();
        assert!(
            matches!(err, SigningKeyError::AlreadyExists { .. }),
            "{err:?}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn loading_a_file_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        NoteSigner::from_skey(GO_SKEY)
            .unwrap()
            .save_new(&path)
            .unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = NoteSigner::load(&path).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, SigningKeyError::Permissions { .. }),
                "{err:?}"
            );
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
            assert!(message.contains(&format!("{mode:o}")), "{message}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(NoteSigner::load(&path).is_ok());
    }

    #[test]
    fn loading_refuses_what_is_not_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            NoteSigner::load(dir.path()),
            Err(SigningKeyError::NotAKeyFile { .. })
        ));
        assert!(matches!(
            NoteSigner::load(&dir.path().join("missing")),
            Err(SigningKeyError::Io { .. })
        ));
        let big = dir.path().join("big");
        fs::write(&big, "x".repeat(5000)).unwrap();
        fs::set_permissions(&big, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            NoteSigner::load(&big),
            Err(SigningKeyError::NotAKeyFile { .. })
        ));
        let garbage = dir.path().join("garbage");
        fs::write(&garbage, "not a key\n").unwrap();
        fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            NoteSigner::load(&garbage),
            Err(SigningKeyError::NotPrivateKey)
        ));
    }
}
