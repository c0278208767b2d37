//! Self-contained proofs that a record is in a tenant's log, in the C2SP
//! tlog-proof format (<https://c2sp.org/tlog-proof>, version 1).
//!
//! Owns that file's text, both ways. It must never decide trust: the extra
//! data and the hashes are unauthenticated until the proof is checked
//! against a checkpoint whose signature verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::checkpoint::{CheckpointError, SignedCheckpoint, decode_hash, parse_canonical_decimal};
use super::hash::{HASH_LEN, LeafHash, TreeHash, leaf_hash};
use super::note::{Note, NoteError};

/// The first line of every version-1 proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The most inclusion proof hashes a proof may carry: the depth of a tree
/// of 2^64 leaves.
pub const MAX_PROOF_HASHES: usize = 64;

/// Text that is not a version-1 tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// The first line is not [`TLOG_PROOF_HEADER`].
    #[error("the first line must be '{TLOG_PROOF_HEADER}'")]
    InvalidHeader,
    /// The text ends before the blank line that precedes the checkpoint.
    #[error("the proof ends before the blank line and the checkpoint")]
    Truncated,
    /// The `extra` line's data is not canonical base64.
    #[error("the extra data must be canonical base64")]
    InvalidExtra,
    /// The index line is not `index <decimal without leading zeros>`.
    #[error("expected 'index <decimal without leading zeros>' on line {line}")]
    InvalidIndex {
        /// 1-based line number in the proof.
        line: usize,
    },
    /// A proof line is not canonical base64 of a 32-byte hash.
    #[error("line {line} must be canonical base64 of a {HASH_LEN}-byte hash")]
    InvalidHash {
        /// 1-based line number in the proof.
        line: usize,
    },
    /// More than [`MAX_PROOF_HASHES`] proof hashes.
    #[error("more than {MAX_PROOF_HASHES} proof hashes")]
    TooManyHashes,
    /// What follows the blank line is not a signed note.
    #[error("the checkpoint is not a signed note: {0}")]
    Checkpoint(#[from] NoteError),
}

/// A C2SP tlog-proof: the index of an entry, its inclusion proof, and the
/// signed checkpoint the proof leads to, as one text file (conventionally
/// with the extension `.tlog-proof`):
///
/// ```text
/// c2sp.org/tlog-proof@v1
/// extra <base64 extra data>        (only when there is extra data)
/// index <decimal>
/// <base64 hash>                    (zero or more, leaf's sibling first)
///
/// <the signed checkpoint note, verbatim>
/// ```
///
/// Annal puts the hashed record (the canonical header encoding,
/// [`super::Header::encode`]) in `extra`, so the file alone proves the
/// record: its leaf hash is `SHA-256(0x00 || extra)`
/// ([`TlogProof::record_leaf_hash`]), and a verifier decodes the header to
/// check its tenant and that its seq equals `index`. The spec leaves the
/// extra data unauthenticated; it is trusted only once that leaf hash, the
/// inclusion proof and the checkpoint's signature all check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque extra data; for Annal, the hashed record bytes.
    pub extra: Option<Vec<u8>>,
    /// The entry's zero-based index in the log (the record's seq).
    pub index: u64,
    /// The RFC 6962 inclusion proof, from the leaf's sibling up to the
    /// root's child. At most [`MAX_PROOF_HASHES`].
    pub hashes: Vec<TreeHash>,
    /// The signed checkpoint note, byte for byte (as
    /// [`SignedCheckpoint::to_text`] writes it).
    pub checkpoint: String,
}

/// Takes the next newline-terminated line off `rest`, without its newline.
fn take_line<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let (line, after) = rest.split_once('\n')?;
    *rest = after;
    Some(line)
}

impl TlogProof {
    /// The proof file's text. It parses back to an equal value whenever
    /// `checkpoint` is a signed note and there are at most
    /// [`MAX_PROOF_HASHES`] hashes.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(64 * (self.hashes.len() + 2) + self.checkpoint.len());
        out.push_str(TLOG_PROOF_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&STANDARD.encode(extra));
            out.push('\n');
        }
        out.push_str("index ");
        out.push_str(&self.index.to_string());
        out.push('\n');
        for hash in &self.hashes {
            out.push_str(&hash.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof, accepting exactly what [`TlogProof::to_text`] writes:
    /// the header line; an optional `extra ` line of canonical base64 (an
    /// empty value is read as empty extra data); `index ` and a decimal
    /// without leading zeros; up to [`MAX_PROOF_HASHES`] lines of canonical
    /// base64 of 32 bytes; a blank line; and a well-formed signed note.
    /// Nothing is verified here.
    pub fn parse(text: &str) -> Result<TlogProof, TlogProofError> {
        let mut rest = text;
        if take_line(&mut rest) != Some(TLOG_PROOF_HEADER) {
            return Err(TlogProofError::InvalidHeader);
        }
        let mut line = take_line(&mut rest).ok_or(TlogProofError::Truncated)?;
        let mut line_number = 2;
        let extra = match line.strip_prefix("extra ") {
            Some(encoded) => {
                let extra = STANDARD
                    .decode(encoded)
                    .map_err(|_| TlogProofError::InvalidExtra)?;
                line = take_line(&mut rest).ok_or(TlogProofError::Truncated)?;
                line_number += 1;
                Some(extra)
            }
            None => None,
        };
        let index = line
            .strip_prefix("index ")
            .and_then(parse_canonical_decimal)
            .ok_or(TlogProofError::InvalidIndex { line: line_number })?;
        let mut hashes = Vec::new();
        loop {
            let line = take_line(&mut rest).ok_or(TlogProofError::Truncated)?;
            line_number += 1;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::TooManyHashes);
            }
            let hash =
                decode_hash(line).ok_or(TlogProofError::InvalidHash { line: line_number })?;
            hashes.push(TreeHash::from_bytes(hash));
        }
        Note::parse(rest)?;
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint: rest.to_owned(),
        })
    }

    /// The checkpoint, parsed (not verified).
    pub fn signed_checkpoint(&self) -> Result<SignedCheckpoint, CheckpointError> {
        SignedCheckpoint::parse(&self.checkpoint)
    }

    /// The leaf hash of the record carried in `extra`, if there is one.
    pub fn record_leaf_hash(&self) -> Option<LeafHash> {
        self.extra.as_deref().map(leaf_hash)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::{ChainHash, Checkpoint};

    /// A checkpoint note; its signature is well-formed but not real, which
    /// parsing does not check.
    const CHECKPOINT: &str = "audit.example.com/0f8fad5b-d9cb-469f-a165-70867728950e\n\
                              3\n\
                              q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\
                              annal-chain-head AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\
                              \n\
                              — audit.example.com AAAAAAA=\n";

    fn proof() -> TlogProof {
        TlogProof {
            extra: Some(b"record bytes".to_vec()),
            index: 2,
            hashes: vec![
                TreeHash::from_bytes([0x11; 32]),
                TreeHash::from_bytes([0x22; 32]),
            ],
            checkpoint: CHECKPOINT.to_owned(),
        }
    }

    fn text() -> String {
        format!(
            "c2sp.org/tlog-proof@v1\n\
             extra cmVjb3JkIGJ5dGVz\n\
             index 2\n\
             ERERERERERERERERERERERERERERERERERERERERERE=\n\
             IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n\
             \n\
             {CHECKPOINT}"
        )
    }

    #[test]
    fn a_proof_is_written_as_the_spec_lays_it_out_and_parses_back() {
        assert_eq!(proof().to_text(), text());
        assert_eq!(TlogProof::parse(&text()), Ok(proof()));
    }

    #[test]
    fn the_extra_line_and_the_hashes_are_optional() {
        let bare = TlogProof {
            extra: None,
            index: 0,
            hashes: vec![],
            checkpoint: CHECKPOINT.to_owned(),
        };
        let written = bare.to_text();
        assert_eq!(
            written,
            format!("c2sp.org/tlog-proof@v1\nindex 0\n\n{CHECKPOINT}")
        );
        assert_eq!(TlogProof::parse(&written), Ok(bare));
    }

    #[test]
    fn empty_extra_data_round_trips() {
        let empty = TlogProof {
            extra: Some(vec![]),
            ..proof()
        };
        assert!(empty.to_text().contains("\nextra \nindex 2\n"));
        assert_eq!(TlogProof::parse(&empty.to_text()), Ok(empty));
    }

    #[test]
    fn the_checkpoint_and_the_record_leaf_are_available() {
        let proof = proof();
        let signed = proof.signed_checkpoint().unwrap();
        assert_eq!(
            signed.checkpoint(),
            &Checkpoint {
                origin: "audit.example.com/0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(),
                size: 3,
                root: TreeHash::from_bytes([0xab; 32]),
                chain_head: ChainHash::from_bytes([0x01; 32]),
            }
        );
        assert_eq!(proof.record_leaf_hash(), Some(leaf_hash(b"record bytes")));
        let without = TlogProof {
            extra: None,
            ..proof
        };
        assert_eq!(without.record_leaf_hash(), None);
    }

    #[test]
    fn every_deviation_from_the_written_form_is_refused() {
        let good = text();
        let replace = |from: &str, to: &str| good.replacen(from, to, 1);
        let hash = "ERERERERERERERERERERERERERERERERERERERERERE=";
        let cases = [
            (String::new(), TlogProofError::InvalidHeader),
            (
                good.replacen("@v1", "@v2", 1),
                TlogProofError::InvalidHeader,
            ),
            (format!("\n{good}"), TlogProofError::InvalidHeader),
            (
                "c2sp.org/tlog-proof@v1".to_owned(),
                TlogProofError::InvalidHeader,
            ),
            (
                "c2sp.org/tlog-proof@v1\n".to_owned(),
                TlogProofError::Truncated,
            ),
            (
                "c2sp.org/tlog-proof@v1\nindex 2\n".to_owned(),
                TlogProofError::Truncated,
            ),
            (
                format!("c2sp.org/tlog-proof@v1\nindex 2\n{hash}\n"),
                TlogProofError::Truncated,
            ),
            (
                replace("extra cmVjb3JkIGJ5dGVz", "extra cmVjb3JkIGJ5dGVz="),
                TlogProofError::InvalidExtra,
            ),
            (
                replace("extra cmVjb3JkIGJ5dGVz", "extra cmVjb3JkIGJ5dGV"),
                TlogProofError::InvalidExtra,
            ),
            (
                replace("extra cmVjb3JkIGJ5dGVz", "extra  cmVjb3JkIGJ5dGVz"),
                TlogProofError::InvalidExtra,
            ),
            (
                replace("extra cmVjb3JkIGJ5dGVz", "extra\tcmVjb3JkIGJ5dGVz"),
                TlogProofError::InvalidIndex { line: 2 },
            ),
            (
                replace("index 2", "index 02"),
                TlogProofError::InvalidIndex { line: 3 },
            ),
            (
                replace("index 2", "index +2"),
                TlogProofError::InvalidIndex { line: 3 },
            ),
            (
                replace("index 2", "index  2"),
                TlogProofError::InvalidIndex { line: 3 },
            ),
            (
                replace("index 2", "index"),
                TlogProofError::InvalidIndex { line: 3 },
            ),
            (
                replace("index 2", "Index 2"),
                TlogProofError::InvalidIndex { line: 3 },
            ),
            (
                replace("index 2", "index 18446744073709551616"),
                TlogProofError::InvalidIndex { line: 3 },
            ),
            (
                replace(hash, &hash[1..]),
                TlogProofError::InvalidHash { line: 4 },
            ),
            (
                replace(hash, "ERERERERERERERERERERERERERERERERERERERERERF="),
                TlogProofError::InvalidHash { line: 4 },
            ),
            (
                replace(hash, "EREREREREREREREREREREREREREREREREREREREREREREQ=="),
                TlogProofError::InvalidHash { line: 4 },
            ),
            (
                replace(&format!("{hash}\n"), &format!("{hash} \n")),
                TlogProofError::InvalidHash { line: 4 },
            ),
            (
                replace("— audit.example.com AAAAAAA=\n", ""),
                TlogProofError::Checkpoint(NoteError::NoSignatures),
            ),
            (
                format!("{good}trailing"),
                TlogProofError::Checkpoint(NoteError::MissingFinalNewline),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(TlogProof::parse(&text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn at_most_64_hashes_are_read() {
        let hash = "ERERERERERERERERERERERERERERERERERERERERERE=\n";
        let with = |n: usize| {
            format!(
                "c2sp.org/tlog-proof@v1\nindex 2\n{}\n{CHECKPOINT}",
                hash.repeat(n)
            )
        };
        assert_eq!(TlogProof::parse(&with(64)).unwrap().hashes.len(), 64);
        assert_eq!(
            TlogProof::parse(&with(65)),
            Err(TlogProofError::TooManyHashes)
        );
    }

    proptest! {
        #[test]
        fn any_proof_round_trips(
            extra in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            index in any::<u64>(),
            hashes in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_PROOF_HASHES),
        ) {
            let proof = TlogProof {
                extra,
                index,
                hashes: hashes.into_iter().map(TreeHash::from_bytes).collect(),
                checkpoint: CHECKPOINT.to_owned(),
            };
            let text = proof.to_text();
            let parsed = TlogProof::parse(&text).unwrap();
            prop_assert_eq!(parsed.to_text(), text);
            prop_assert_eq!(parsed, proof);
        }
    }
}
