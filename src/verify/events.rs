//! Exported events as JSON: the shape `GET /v1/events` and exports serve,
//! read into [`ChainRecord`]s.
//!
//! Owns the mapping from the served JSON fields to bytes, hashes and the
//! displayed view; must never judge the records (that is
//! [`super::verify_chain`]'s job) and ignores every field it does not need.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use super::{ChainRecord, Displayed};
use crate::ledger::{ChainHash, LeafHash, Salt, Seq};

/// The fields of a served event the verifier reads.
#[derive(Deserialize)]
struct WireEvent {
    seq: u64,
    record: String,
    leaf_hash: LeafHash,
    chain_hash: ChainHash,
    #[serde(default)]
    payload_bytes: Option<String>,
    #[serde(default)]
    salt: Option<Salt>,
}

/// Why one event object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A required field is missing or has the wrong JSON type or format.
    #[error("{0}")]
    Fields(#[source] serde_json::Error),
    /// A field that should be standard padded base64 is not.
    #[error("`{field}` is not valid base64: {source}")]
    Base64 {
        /// The field.
        field: &'static str,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
}

/// Why a text is not a list of exported events.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The text is not a sequence of JSON values.
    #[error("line {line}: invalid JSON: {source}")]
    Json {
        /// 1-based line where the problem was found.
        line: usize,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON value is neither an event, nor an array of events, nor an
    /// object with an `"events"` array.
    #[error(
        "line {line}: expected an event object, an array of events, or an object with an \"events\" array"
    )]
    NotEvents {
        /// 1-based line where the value starts.
        line: usize,
    },
    /// An event object could not be read.
    #[error("line {line}, event #{index}: {source}")]
    Event {
        /// 1-based line where the enclosing JSON value starts.
        line: usize,
        /// 0-based position of the event in the text.
        index: usize,
        /// What was wrong with it.
        #[source]
        source: EventError,
    },
}

/// Reads every event in `text`, which may be JSON Lines (one event object per
/// line), a JSON array of events, an object with an `"events"` array (a saved
/// page of `GET /v1/events`), or several of these one after another.
pub fn parse_events(text: &str) -> Result<Vec<ChainRecord>, EventsError> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let before = stream.byte_offset();
        let line = line_of(text, before);
        let value = match stream.next() {
            None => break,
            Some(Ok(value)) => value,
            Some(Err(source)) => {
                return Err(EventsError::Json {
                    line: source.line(),
                    source,
                });
            }
        };
        let events = match value {
            Value::Array(events) => events,
            Value::Object(mut object) => match object.remove("events") {
                Some(Value::Array(events)) => events,
                Some(_) => return Err(EventsError::NotEvents { line }),
                None => vec![Value::Object(object)],
            },
            _ => return Err(EventsError::NotEvents { line }),
        };
        for event in events {
            let index = out.len();
            let record = parse_event(event).map_err(|source| EventsError::Event {
                line,
                index,
                source,
            })?;
            out.push(record);
        }
    }
    Ok(out)
}

/// 1-based line of the first non-whitespace byte at or after `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let rest = text.get(offset..).unwrap_or("");
    let start = offset + (rest.len() - rest.trim_start().len());
    text.as_bytes()
        .iter()
        .take(start)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn base64(field: &'static str, text: &str) -> Result<Vec<u8>, EventError> {
    STANDARD
        .decode(text)
        .map_err(|source| EventError::Base64 { field, source })
}

fn parse_event(value: Value) -> Result<ChainRecord, EventError> {
    let displayed = match &value {
        Value::Object(object) => Displayed::from_event(object),
        _ => Displayed::default(),
    };
    let wire: WireEvent = serde_json::from_value(value).map_err(EventError::Fields)?;
    Ok(ChainRecord {
        seq: Seq::new(wire.seq),
        record: base64("record", &wire.record)?,
        leaf_hash: wire.leaf_hash,
        chain_hash: wire.chain_hash,
        payload: wire
            .payload_bytes
            .map(|p| base64("payload_bytes", &p))
            .transpose()?,
        salt: wire.salt,
        displayed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAF: &str = "d91550200feea946185b39bf49cc2231826897cefe792d35148cea2f736904ea";
    const CHAIN: &str = "288fb1027c43b58ad1e948f1440e16a44364739486a97c802af63828b5d7cf96";

    fn event(seq: u64) -> String {
        format!(
            r#"{{"seq":{seq},"record":"AAE=","leaf_hash":"{LEAF}","chain_hash":"{CHAIN}","actor":{{"id":"x"}}}}"#
        )
    }

    #[test]
    fn reads_json_lines_arrays_and_pages() {
        let lines = format!("{}\n\n{}\n", event(1), event(2));
        let array = format!("[{}, {}]", event(1), event(2));
        let page = format!(
            r#"{{"events": [{}, {}], "next_cursor": null}}"#,
            event(1),
            event(2)
        );
        for text in [lines, array, page] {
            let records = parse_events(&text).unwrap();
            assert_eq!(records.len(), 2);
            assert_eq!(records[0].seq, Seq::new(1));
            assert_eq!(records[0].record, vec![0, 1]);
            assert_eq!(records[0].payload, None);
            assert_eq!(
                records[0].displayed,
                Displayed {
                    actor: Some(serde_json::json!({"id": "x"})),
                    ..Displayed::default()
                }
            );
        }
    }

    #[test]
    fn reads_optional_payload_and_salt() {
        let salt = "00".repeat(32);
        let text = format!(
            r#"{{"seq":0,"record":"AA==","leaf_hash":"{LEAF}","chain_hash":"{CHAIN}","payload_bytes":"wA==","salt":"{salt}"}}"#
        );
        let record = parse_events(&text).unwrap().remove(0);
        assert_eq!(record.payload, Some(vec![0xc0]));
        assert_eq!(record.salt, Some(Salt::from_bytes([0; 32])));
    }

    #[test]
    fn keeps_displayed_fields_as_shown_including_null() {
        let text = format!(
            r#"{{"seq":0,"record":"AA==","leaf_hash":"{LEAF}","chain_hash":"{CHAIN}","event_id":"E","before":null,"status":"created"}}"#
        );
        let shown = parse_events(&text).unwrap().remove(0).displayed;
        assert_eq!(shown.event_id, Some(Value::String("E".to_owned())));
        assert_eq!(shown.before, Some(Value::Null));
        assert_eq!(shown.after, None);
    }

    #[test]
    fn errors_name_the_line_and_event() {
        let text = format!("{}\n{}\n", event(1), event(2).replace("AAE=", "AAE"));
        match parse_events(&text) {
            Err(EventsError::Event {
                line: 2,
                index: 1,
                source:
                    EventError::Base64 {
                        field: "record", ..
                    },
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_events("{\"seq\": 1"),
            Err(EventsError::Json { .. })
        ));
        assert!(matches!(
            parse_events("\n42"),
            Err(EventsError::NotEvents { line: 2 })
        ));
        assert!(matches!(
            parse_events(r#"{"seq": "x"}"#),
            Err(EventsError::Event {
                source: EventError::Fields(_),
                ..
            })
        ));
    }
}
