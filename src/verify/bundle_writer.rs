//! Writing an export bundle: the exact bytes of each line, and the running
//! SHA-256 the end line carries.
//!
//! Owns the byte form of every bundle line (key order, number and hash
//! encodings), so that the server's streaming exporter and the tests write
//! identical bundles. Must never decide what goes into a bundle or in which
//! order (that is the exporter's job; `docs/FORMAT.md` fixes the order and
//! [`super::bundle::verify_bundle`] enforces it) and never does I/O: each
//! method returns the bytes of one line, newline included, so a caller can
//! send the bundle in chunks of any size.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ledger::{ChainHash, Salt, TenantId, TreeHash};

/// Writes the lines of one bundle, in the order the caller calls its
/// methods, while hashing every byte written for the end line.
///
/// The caller writes: [`header`](Self::header), any [`vkey`](Self::vkey)s,
/// for a tenant whose oldest records were purged [`purged`](Self::purged),
/// [`start`](Self::start), then the records with a
/// [`checkpoint`](Self::checkpoint) after each signed size (and a
/// [`consistency`](Self::consistency) proof after every checkpoint but the
/// first), optionally one more consistency proof from an auditor's older
/// checkpoint, and finally [`end`](Self::end). The writer does not check that
/// order: the verifier does.
#[derive(Clone, Debug, Default)]
pub struct BundleWriter {
    hasher: Sha256,
    records: u64,
    checkpoints: u64,
}

/// A JSON string literal for arbitrary text (quotes and escapes included).
fn json_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// A JSON array of base64 tree hashes.
fn hash_array(hashes: &[TreeHash]) -> String {
    let items: Vec<String> = hashes
        .iter()
        .map(|hash| format!("\"{}\"", hash.to_base64()))
        .collect();
    format!("[{}]", items.join(","))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl BundleWriter {
    /// A writer that has written nothing yet.
    pub fn new() -> BundleWriter {
        BundleWriter::default()
    }

    /// `line` and its newline as bytes, hashed into the running digest.
    fn line(&mut self, line: String) -> Vec<u8> {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        self.hasher.update(&bytes);
        bytes
    }

    /// The header line:
    /// `{"annal_export":1,"origin":…,"tenant_id":…,"from_seq":A,"to_seq":B}`.
    /// `origin` is the tenant's checkpoint origin, `<deployment
    /// origin>/<tenant id>`; the records are `from_seq..=to_seq`.
    pub fn header(
        &mut self,
        origin: &str,
        tenant_id: TenantId,
        from_seq: u64,
        to_seq: u64,
    ) -> Vec<u8> {
        self.line(format!(
            "{{\"annal_export\":1,\"origin\":{},\"tenant_id\":\"{tenant_id}\",\"from_seq\":{from_seq},\"to_seq\":{to_seq}}}",
            json_string(origin),
        ))
    }

    /// A line with one public key the server publishes, as a C2SP vkey
    /// (`{"vkey":…}`). Informational: verifiers trust only keys they are
    /// given themselves.
    pub fn vkey(&mut self, vkey: &str) -> Vec<u8> {
        self.line(format!("{{\"vkey\":{}}}", json_string(vkey)))
    }

    /// The line that says records `0..size` were deleted by the tenant's
    /// retention policy (`{"purged":{"size":P,"attested_by":N}}`), written
    /// when the bundle starts at the purge boundary `size`. `attested_by`
    /// is the size of the bundle's first checkpoint, which proves the start
    /// line's compact range and chain hash for the purged prefix.
    pub fn purged(&mut self, size: u64, attested_by: u64) -> Vec<u8> {
        self.line(format!(
            "{{\"purged\":{{\"size\":{size},\"attested_by\":{attested_by}}}}}"
        ))
    }

    /// The start line: the tree of size `A` as its compact range (left to
    /// right, empty when `A = 0`) and the chain hash of seq `A - 1` (the
    /// tenant's genesis value when `A = 0`).
    pub fn start(
        &mut self,
        size: u64,
        chain_hash: &ChainHash,
        compact_range: &[TreeHash],
    ) -> Vec<u8> {
        self.line(format!(
            "{{\"start\":{{\"size\":{size},\"chain_hash\":\"{chain_hash}\",\"compact_range\":{}}}}}",
            hash_array(compact_range),
        ))
    }

    /// A record line: the hashed record bytes and, unless withheld or
    /// erased, the canonical payload bytes with their salt.
    pub fn record(&mut self, seq: u64, record: &[u8], payload: Option<(&[u8], &Salt)>) -> Vec<u8> {
        let (payload, salt) = match payload {
            Some((payload, salt)) => (format!("\"{}\"", base64(payload)), format!("\"{salt}\"")),
            None => ("null".to_owned(), "null".to_owned()),
        };
        self.records += 1;
        self.line(format!(
            "{{\"seq\":{seq},\"record\":\"{}\",\"payload\":{payload},\"salt\":{salt}}}",
            base64(record),
        ))
    }

    /// A checkpoint line: the tree size and the complete signed note text.
    pub fn checkpoint(&mut self, size: u64, note: &str) -> Vec<u8> {
        self.checkpoints += 1;
        self.line(format!(
            "{{\"checkpoint\":{{\"size\":{size},\"note\":{}}}}}",
            json_string(note)
        ))
    }

    /// A consistency line: the RFC 6962 consistency proof from tree size
    /// `from` to tree size `to`.
    pub fn consistency(&mut self, from: u64, to: u64, proof: &[TreeHash]) -> Vec<u8> {
        self.line(format!(
            "{{\"consistency\":{{\"from\":{from},\"to\":{to},\"proof\":{}}}}}",
            hash_array(proof),
        ))
    }

    /// The end line: how many record and checkpoint lines were written and
    /// the SHA-256 of every byte before this line. Consumes the writer: a
    /// bundle has exactly one end, and nothing follows it.
    pub fn end(self) -> Vec<u8> {
        let digest = hex::encode(self.hasher.finalize());
        format!(
            "{{\"end\":{{\"records\":{},\"checkpoints\":{},\"sha256\":\"{digest}\"}}}}\n",
            self.records, self.checkpoints,
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_form_and_the_end_hashes_all_before_it() {
        let tenant: TenantId = "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap();
        let mut writer = BundleWriter::new();
        let mut out = writer.header("annal.example/\"x\"", tenant, 0, 0);
        out.extend(writer.purged(5, 7));
        out.extend(writer.start(0, &ChainHash::genesis(tenant), &[]));
        out.extend(writer.record(0, &[1, 2, 3], None));
        out.extend(writer.record(0, &[1], Some((&[0xc0], &Salt::from_bytes([0xab; 32])))));
        out.extend(writer.checkpoint(1, "a\n\n\u{2014} k x\n"));
        out.extend(writer.consistency(1, 2, &[TreeHash::from_bytes([0; 32])]));
        let before_end = out.len();
        let digest = hex::encode(Sha256::digest(&out));
        out.extend(writer.end());
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "{\"annal_export\":1,\"origin\":\"annal.example/\\\"x\\\"\",\"tenant_id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"from_seq\":0,\"to_seq\":0}"
        );
        assert_eq!(lines[1], "{\"purged\":{\"size\":5,\"attested_by\":7}}");
        assert_eq!(
            lines[2],
            "{\"start\":{\"size\":0,\"chain_hash\":\"cd5e9ed8cbb6de55aae6ee1a0c8ca5b81546fe1eee59d18e9f3192d5d6d908fe\",\"compact_range\":[]}}"
        );
        assert_eq!(
            lines[3],
            "{\"seq\":0,\"record\":\"AQID\",\"payload\":null,\"salt\":null}"
        );
        assert_eq!(
            lines[4],
            format!(
                "{{\"seq\":0,\"record\":\"AQ==\",\"payload\":\"wA==\",\"salt\":\"{}\"}}",
                "ab".repeat(32)
            )
        );
        assert_eq!(
            lines[5],
            "{\"checkpoint\":{\"size\":1,\"note\":\"a\\n\\n\u{2014} k x\\n\"}}"
        );
        assert_eq!(
            lines[6],
            format!(
                "{{\"consistency\":{{\"from\":1,\"to\":2,\"proof\":[\"{}\"]}}}}",
                TreeHash::from_bytes([0; 32]).to_base64()
            )
        );
        assert_eq!(
            lines[7],
            format!("{{\"end\":{{\"records\":2,\"checkpoints\":1,\"sha256\":\"{digest}\"}}}}")
        );
        assert_eq!(text.len() - before_end, lines[7].len() + 1);
        assert!(text.ends_with("}}\n"));
    }
}
