//! Annal checkpoints: a tenant's signed tree head in the C2SP tlog-checkpoint
//! format (<https://c2sp.org/tlog-checkpoint>), carried in a signed note.
//!
//! The body is exactly four lines:
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <base64 Merkle root>
//! annal-chain-head <base64 chain hash of the last record>
//! ```
//!
//! Owns that text, both ways; must never accept a body it would not write
//! (other origins' extension lines included), so that one checkpoint has one
//! encoding and one signature covers all of it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::hash::{ChainHash, HASH_LEN, TreeHash};
use super::ids::TenantId;
use super::note::{Note, NoteError, VerifierKey};

/// The keyword of Annal's one extension line, followed by a space and the
/// base64 chain hash.
pub const CHAIN_HEAD_EXTENSION: &str = "annal-chain-head";

/// A checkpoint body that is not exactly what Annal writes, or a signed
/// checkpoint whose note is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not end with a newline.
    #[error("a checkpoint body must end with a newline")]
    MissingFinalNewline,
    /// The body stops before a required line.
    #[error("the checkpoint has no {0} line")]
    MissingLine(&'static str),
    /// The origin is empty or holds a space, a `+` or a control character.
    #[error("the origin must be non-empty and free of spaces, '+' and control characters")]
    InvalidOrigin,
    /// The tree size is not a decimal number without leading zeros that
    /// fits in 64 bits.
    #[error("the tree size must be a decimal number without leading zeros")]
    InvalidSize,
    /// The root is not canonical base64 of 32 bytes.
    #[error("the root hash must be canonical base64 of {HASH_LEN} bytes")]
    InvalidRoot,
    /// The fourth line is not `annal-chain-head <canonical base64 of 32
    /// bytes>`.
    #[error("line 4 must be '{CHAIN_HEAD_EXTENSION} <base64 of {HASH_LEN} bytes>'")]
    InvalidChainHead,
    /// Lines follow the chain head; Annal writes none.
    #[error("unexpected extension line {line}")]
    UnexpectedLine {
        /// 1-based line number in the body.
        line: usize,
    },
    /// The signed note around the body is malformed.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tenant's tree head at one size: what a signature commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, `<deployment origin>/<tenant id>` (see
    /// [`tenant_origin`]). Must be non-empty and free of Unicode spaces, `+`
    /// and control characters; [`Checkpoint::new`] checks it.
    pub origin: String,
    /// The number of records in the tree.
    pub size: u64,
    /// The RFC 6962 Merkle root over the first `size` leaves.
    pub root: TreeHash,
    /// The chain hash at seq `size - 1`; for an empty log, the tenant's
    /// genesis value ([`ChainHash::genesis`]).
    pub chain_head: ChainHash,
}

/// The origin of a tenant's log: `<deployment origin>/<tenant id>`, the
/// tenant id lowercase and hyphenated. The deployment origin is a
/// schema-less URL such as `audit.example.com`.
pub fn tenant_origin(deployment_origin: &str, tenant: TenantId) -> String {
    format!("{deployment_origin}/{tenant}")
}

/// Checks an origin: non-empty, no Unicode spaces, no `+`, no control
/// characters.
fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    let bad = |c: char| c.is_whitespace() || c == '+' || c.is_control();
    if origin.is_empty() || origin.contains(bad) {
        return Err(CheckpointError::InvalidOrigin);
    }
    Ok(())
}

/// Parses a decimal `u64` written without sign or leading zeros.
pub(crate) fn parse_canonical_decimal(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// Decodes canonical standard base64 of exactly 32 bytes. The engine
/// refuses missing padding and non-zero padding bits, so one hash has one
/// encoding.
pub(crate) fn decode_hash(text: &str) -> Option<[u8; HASH_LEN]> {
    let bytes = STANDARD.decode(text).ok()?;
    bytes.try_into().ok()
}

impl Checkpoint {
    /// A checkpoint, refusing an origin that [`Checkpoint::parse_body`]
    /// would refuse.
    pub fn new(
        origin: String,
        size: u64,
        root: TreeHash,
        chain_head: ChainHash,
    ) -> Result<Checkpoint, CheckpointError> {
        check_origin(&origin)?;
        Ok(Checkpoint {
            origin,
            size,
            root,
            chain_head,
        })
    }

    /// The note text to sign: origin, size, base64 root, and the
    /// `annal-chain-head` line, each ending with a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{CHAIN_HEAD_EXTENSION} {}\n",
            self.origin,
            self.size,
            self.root.to_base64(),
            STANDARD.encode(self.chain_head.as_bytes()),
        )
    }

    /// Parses a body, accepting exactly the text [`Checkpoint::body`] writes:
    /// four newline-terminated lines, a valid origin, a size without leading
    /// zeros, canonical base64, and no extension line but `annal-chain-head`.
    pub fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let body = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let mut lines = body.split('\n');
        let mut next = |what| lines.next().ok_or(CheckpointError::MissingLine(what));
        let origin = next("origin")?;
        let size = next("tree size")?;
        let root = next("root hash")?;
        let chain_head = next(CHAIN_HEAD_EXTENSION)?;
        if lines.next().is_some() {
            return Err(CheckpointError::UnexpectedLine { line: 5 });
        }
        check_origin(origin)?;
        let size = parse_canonical_decimal(size).ok_or(CheckpointError::InvalidSize)?;
        let root = decode_hash(root).ok_or(CheckpointError::InvalidRoot)?;
        let chain_head = chain_head
            .strip_prefix(CHAIN_HEAD_EXTENSION)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(decode_hash)
            .ok_or(CheckpointError::InvalidChainHead)?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root: TreeHash::from_bytes(root),
            chain_head: ChainHash::from_bytes(chain_head),
        })
    }
}

/// A checkpoint together with the signed note that carries it. The note's
/// text is always exactly the checkpoint's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl SignedCheckpoint {
    /// Parses a signed note and then its text as a checkpoint body.
    /// Signatures are not checked: see [`SignedCheckpoint::verify`].
    pub fn parse(note_text: &str) -> Result<SignedCheckpoint, CheckpointError> {
        SignedCheckpoint::from_note(Note::parse(note_text)?)
    }

    /// Reads a note's text as a checkpoint body.
    pub fn from_note(note: Note) -> Result<SignedCheckpoint, CheckpointError> {
        let checkpoint = Checkpoint::parse_body(note.text())?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// The checkpoint. Untrusted until [`SignedCheckpoint::verify`] succeeds.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The note, signatures included.
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// The signed note text, byte for byte as parsed or signed.
    pub fn to_text(&self) -> String {
        self.note.to_text()
    }

    /// Checks the signatures against the trusted `keys` (see
    /// [`Note::verify`]) and returns the keys that signed.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<VerifierKey>, NoteError> {
        self.note.verify(keys)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;
    use crate::ledger::note::NoteSignature;

    fn tenant() -> TenantId {
        "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint::new(
            tenant_origin("audit.example.com", tenant()),
            20852163,
            TreeHash::from_bytes([0xab; 32]),
            ChainHash::from_bytes([0x01; 32]),
        )
        .unwrap()
    }

    const BODY: &str = "audit.example.com/0f8fad5b-d9cb-469f-a165-70867728950e\n\
                        20852163\n\
                        q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\
                        annal-chain-head AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";

    fn sign_body(seed: u8, body: &str) -> (Note, VerifierKey) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let verifier = VerifierKey::from_public("audit.example.com", key.verifying_key()).unwrap();
        let signature = NoteSignature::from_ed25519(&verifier, &key.sign(body.as_bytes()));
        (Note::new(body, vec![signature]).unwrap(), verifier)
    }

    #[test]
    fn the_tenant_origin_is_the_deployment_origin_then_the_lowercase_tenant_id() {
        let tenant = "0F8FAD5B-D9CB-469F-A165-70867728950E".parse().unwrap();
        assert_eq!(
            tenant_origin("audit.example.com", tenant),
            "audit.example.com/0f8fad5b-d9cb-469f-a165-70867728950e"
        );
    }

    #[test]
    fn the_body_is_four_lines_and_parses_back() {
        assert_eq!(checkpoint().body(), BODY);
        assert_eq!(Checkpoint::parse_body(BODY), Ok(checkpoint()));
    }

    #[test]
    fn an_empty_log_has_size_zero() {
        let empty = Checkpoint {
            size: 0,
            ..checkpoint()
        };
        assert!(empty.body().contains("\n0\n"));
        assert_eq!(Checkpoint::parse_body(&empty.body()), Ok(empty));
    }

    #[test]
    fn new_refuses_origins_the_parser_would_refuse() {
        for origin in ["", "audit example", "audit+example", "audit\u{7f}", "a\nb"] {
            let made = Checkpoint::new(
                origin.to_owned(),
                1,
                TreeHash::from_bytes([0; 32]),
                ChainHash::from_bytes([0; 32]),
            );
            assert_eq!(made, Err(CheckpointError::InvalidOrigin), "{origin:?}");
        }
    }

    #[test]
    fn every_deviation_from_the_written_body_is_refused() {
        let lines: Vec<&str> = BODY.lines().collect();
        let with = |index: usize, line: &str| {
            let mut changed = lines.clone();
            changed[index] = line;
            format!("{}\n", changed.join("\n"))
        };
        let cases = [
            (
                BODY.trim_end().to_owned(),
                CheckpointError::MissingFinalNewline,
            ),
            (String::new(), CheckpointError::MissingFinalNewline),
            ("\n".to_owned(), CheckpointError::MissingLine("tree size")),
            (
                format!("{}\n", lines[..2].join("\n")),
                CheckpointError::MissingLine("root hash"),
            ),
            (
                format!("{}\n", lines[..3].join("\n")),
                CheckpointError::MissingLine(CHAIN_HEAD_EXTENSION),
            ),
            (
                format!("{BODY}more\n"),
                CheckpointError::UnexpectedLine { line: 5 },
            ),
            (
                format!("{BODY}\n"),
                CheckpointError::UnexpectedLine { line: 5 },
            ),
            (with(0, ""), CheckpointError::InvalidOrigin),
            (
                with(0, "audit.example.com/a b"),
                CheckpointError::InvalidOrigin,
            ),
            (
                with(0, "audit.example.com+x"),
                CheckpointError::InvalidOrigin,
            ),
            (
                with(0, "audit\u{2003}example"),
                CheckpointError::InvalidOrigin,
            ),
            (with(1, ""), CheckpointError::InvalidSize),
            (with(1, "020852163"), CheckpointError::InvalidSize),
            (with(1, "00"), CheckpointError::InvalidSize),
            (with(1, "+20852163"), CheckpointError::InvalidSize),
            (with(1, "-1"), CheckpointError::InvalidSize),
            (with(1, " 20852163"), CheckpointError::InvalidSize),
            (with(1, "0x10"), CheckpointError::InvalidSize),
            (
                with(1, "18446744073709551616"),
                CheckpointError::InvalidSize,
            ),
            (with(2, ""), CheckpointError::InvalidRoot),
            (
                with(2, "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s"),
                CheckpointError::InvalidRoot,
            ),
            (
                with(2, "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6t="),
                CheckpointError::InvalidRoot,
            ),
            (
                with(2, "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urqw=="),
                CheckpointError::InvalidRoot,
            ),
            (
                with(2, "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\r"),
                CheckpointError::InvalidRoot,
            ),
            (with(3, ""), CheckpointError::InvalidChainHead),
            (
                with(
                    3,
                    "annal-chain-head  AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                ),
                CheckpointError::InvalidChainHead,
            ),
            (
                with(
                    3,
                    "annal-chain-headAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                ),
                CheckpointError::InvalidChainHead,
            ),
            (
                with(
                    3,
                    "other-extension AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                ),
                CheckpointError::InvalidChainHead,
            ),
            (
                with(
                    3,
                    "annal-chain-head AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ==",
                ),
                CheckpointError::InvalidChainHead,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(Checkpoint::parse_body(&body), Err(want), "{body:?}");
        }
    }

    #[test]
    fn a_signed_checkpoint_parses_round_trips_and_verifies() {
        let (note, key) = sign_body(1, BODY);
        let text = note.to_text();
        let signed = SignedCheckpoint::parse(&text).unwrap();
        assert_eq!(signed.checkpoint(), &checkpoint());
        assert_eq!(signed.note(), &note);
        assert_eq!(signed.to_text(), text);
        assert_eq!(signed.verify(std::slice::from_ref(&key)), Ok(vec![key]));
    }

    #[test]
    fn a_tampered_checkpoint_does_not_verify() {
        let (note, key) = sign_body(1, BODY);
        let tampered = note.to_text().replace("20852163", "20852164");
        let signed = SignedCheckpoint::parse(&tampered).unwrap();
        assert_eq!(signed.checkpoint().size, 20852164);
        assert!(matches!(
            signed.verify(&[key]),
            Err(NoteError::InvalidSignature { .. })
        ));
        let (_, stranger) = sign_body(2, BODY);
        assert_eq!(
            SignedCheckpoint::parse(&note.to_text())
                .unwrap()
                .verify(&[stranger]),
            Err(NoteError::NoTrustedSignature)
        );
    }

    #[test]
    fn a_note_that_is_not_a_checkpoint_is_refused() {
        let (note, _) = sign_body(1, "hello\n");
        assert_eq!(
            SignedCheckpoint::parse(&note.to_text()),
            Err(CheckpointError::MissingLine("tree size"))
        );
        assert!(matches!(
            SignedCheckpoint::parse(BODY),
            Err(CheckpointError::Note(NoteError::MissingSeparator))
        ));
    }
}
