//! The C2SP signed-note Ed25519 example (`tests/vectors/signed-note-ed25519.json`,
//! see `signed-note.LICENSE.md` beside it) must parse, round-trip and
//! verify, and every mutation of its signature, text or key name must fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use annal::ledger::{Note, NoteError, NoteSignature, VerifierKey};

#[derive(Deserialize)]
struct Vector {
    vkey: String,
    note: String,
    signed_text: String,
    #[serde(rename = "wantErr")]
    want_err: bool,
}

fn vector() -> Vector {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/signed-note-ed25519.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The vector's note with its one signature line replaced by `name` and
/// `bytes` (key id and signature).
fn with_signature_line(vector: &Vector, name: &str, bytes: &[u8]) -> String {
    format!(
        "{}\n— {name} {}\n",
        vector.signed_text,
        STANDARD.encode(bytes)
    )
}

fn signature_bytes(note: &Note) -> Vec<u8> {
    let signature = &note.signatures()[0];
    [&signature.key_id().to_be_bytes()[..], signature.signature()].concat()
}

#[test]
fn the_spec_example_verifies_and_round_trips() {
    let vector = vector();
    assert!(!vector.want_err);
    let key = VerifierKey::parse(&vector.vkey).unwrap();
    assert_eq!(key.to_vkey(), vector.vkey);
    let note = Note::parse(&vector.note).unwrap();
    assert_eq!(note.text(), vector.signed_text);
    assert_eq!(note.to_text(), vector.note);
    assert_eq!(note.verify(std::slice::from_ref(&key)), Ok(vec![key]));
}

#[test]
fn flipping_any_bit_of_the_signature_fails_verification() {
    let vector = vector();
    let key = VerifierKey::parse(&vector.vkey).unwrap();
    let note = Note::parse(&vector.note).unwrap();
    let name = note.signatures()[0].name().to_owned();
    let bytes = signature_bytes(&note);
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let mutated = Note::parse(&with_signature_line(&vector, &name, &flipped)).unwrap();
        let result = mutated.verify(std::slice::from_ref(&key));
        // A flip in the first 4 bytes changes the key id: an unknown key,
        // so no trusted signature is left. Anywhere else: a bad signature.
        let want = if bit < 32 {
            NoteError::NoTrustedSignature
        } else {
            NoteError::InvalidSignature {
                name: name.clone(),
                key_id: key.key_id(),
            }
        };
        assert_eq!(result, Err(want), "bit {bit}");
    }
}

#[test]
fn changing_the_text_fails_verification() {
    let vector = vector();
    let key = VerifierKey::parse(&vector.vkey).unwrap();
    let note = Note::parse(&vector.note).unwrap();
    let text = &vector.signed_text;
    let mut texts: Vec<String> = (0..text.len() - 1)
        .map(|i| {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    texts.push(format!("{text}more\n"));
    texts.push(format!("x{text}"));
    texts.push(text.replacen('.', "", 1));
    texts.push(format!("{text}\n"));
    for changed in texts {
        let mutated = Note::new(&changed, note.signatures().to_vec()).unwrap();
        assert!(
            matches!(
                mutated.verify(std::slice::from_ref(&key)),
                Err(NoteError::InvalidSignature { .. })
            ),
            "{changed:?}"
        );
    }
}

#[test]
fn changing_the_key_name_fails_verification() {
    let vector = vector();
    let key = VerifierKey::parse(&vector.vkey).unwrap();
    let note = Note::parse(&vector.note).unwrap();
    let signature = &note.signatures()[0];

    // Renamed in the note: the signature is by an unknown key.
    for name in ["example.com/fop", "example.com/foo/", "Example.com/foo"] {
        let renamed =
            NoteSignature::new(name, signature.key_id(), signature.signature().to_vec()).unwrap();
        let mutated = Note::new(note.text(), vec![renamed]).unwrap();
        assert_eq!(
            mutated.verify(std::slice::from_ref(&key)),
            Err(NoteError::NoTrustedSignature),
            "{name}"
        );
    }

    // Renamed in the trusted key: its id changes with the name, so the
    // stated id no longer matches, and a key under the new name is unknown.
    let renamed_vkey = vector
        .vkey
        .replacen("example.com/foo", "example.com/fop", 1);
    assert!(VerifierKey::parse(&renamed_vkey).is_err());
    let renamed_key = VerifierKey::from_public("example.com/fop", *key.public_key()).unwrap();
    assert_eq!(
        note.verify(&[renamed_key]),
        Err(NoteError::NoTrustedSignature)
    );
}
