//! The RFC 6962 proof vectors of transparency-dev/merkle
//! (`tests/vectors/rfc6962/`, see its README): every file must verify or fail
//! exactly as its `wantErr` says. The test only decodes base64; semantics for
//! the edge cases (empty trees, equal sizes, hashes of the wrong length) are
//! the verifier's own. Each test also counts its files (98 + 98 = 196), so a
//! lost directory fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

use annal::ledger::{verify_consistency_bytes, verify_inclusion_bytes};
use base64::Engine as _;
use serde::Deserialize;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/rfc6962");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

fn decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn decode_proof(proof: Option<Vec<String>>) -> Vec<Vec<u8>> {
    proof
        .unwrap_or_default()
        .iter()
        .map(|entry| decode(entry))
        .collect()
}

/// Every `.json` file under `dir`, at any depth, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(json_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Runs `check` (which returns whether verification failed and the case's
/// `wantErr`) on every vector under `kind`, and fails with the list of files
/// whose outcome differs. Returns how many files it walked.
fn walk(kind: &str, check: impl Fn(&str) -> (bool, bool, String)) -> usize {
    let files = json_files(&Path::new(VECTORS).join(kind));
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let (failed, want_err, detail) = check(&fs::read_to_string(path).unwrap());
            (failed != want_err).then(|| format!("{}: {detail}", path.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {kind} vectors disagree:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn every_inclusion_vector_verifies_or_fails_as_it_says() {
    let walked = walk("inclusion", |json| {
        let case: Inclusion = serde_json::from_str(json).unwrap();
        let result = verify_inclusion_bytes(
            case.leaf_idx,
            case.tree_size,
            &decode(&case.leaf_hash),
            &decode_proof(case.proof),
            &decode(&case.root),
        );
        let detail = format!("{} (wantErr {}): got {result:?}", case.desc, case.want_err);
        (result.is_err(), case.want_err, detail)
    });
    assert_eq!(walked, 98, "inclusion vectors went missing or appeared");
}

#[test]
fn every_consistency_vector_verifies_or_fails_as_it_says() {
    let walked = walk("consistency", |json| {
        let case: Consistency = serde_json::from_str(json).unwrap();
        let result = verify_consistency_bytes(
            case.size1,
            case.size2,
            &decode_proof(case.proof),
            &decode(&case.root1),
            &decode(&case.root2),
        );
        let detail = format!("{} (wantErr {}): got {result:?}", case.desc, case.want_err);
        (result.is_err(), case.want_err, detail)
    });
    assert_eq!(walked, 98, "consistency vectors went missing or appeared");
}
