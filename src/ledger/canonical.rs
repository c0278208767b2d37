//! Canonical MessagePack: the one byte string each logical record has.
//!
//! Owns the writer and the strict reader for the small MessagePack subset in
//! `docs/FORMAT.md`. The writer always picks the shortest form and sorts map
//! keys by their UTF-8 bytes; the reader accepts a value only if writing it
//! back gives the very same bytes. Must never accept two encodings of one
//! value: the hashes are computed over these bytes.
//!
//! The output is byte-identical to `rmp-serde` serialising the same value as
//! a tuple with maps in sorted order (the tests check this), so any
//! MessagePack library with "shortest form" writers can reproduce it.

use serde_json::{Map, Number, Value};

/// How deeply arrays and maps may nest inside one free-form JSON value.
///
/// `serde_json`'s parser refuses 128 levels, so any JSON that reached the
/// service through it encodes and decodes again. Bounding it keeps the
/// decoder's recursion safe on hostile input.
pub const MAX_JSON_DEPTH: usize = 128;

/// Why bytes are not a canonical record or payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not MessagePack at all, or a type Annal never writes (extensions,
    /// the reserved `0xc1`), or truncated.
    #[error("malformed MessagePack at byte {offset}: {reason}")]
    Malformed {
        /// Position of the offending byte.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Well-formed MessagePack, but not the canonical encoding of what it
    /// holds (a longer integer or length form than needed, float32, map keys
    /// out of order).
    #[error("non-canonical encoding: first differs from canonical at byte {offset}")]
    NonCanonical {
        /// First byte that differs from the canonical re-encoding.
        offset: usize,
    },
    /// A map holds the same key twice.
    #[error("duplicate map key at byte {offset}")]
    DuplicateKey {
        /// Position of the repeated key.
        offset: usize,
    },
    /// A string is not valid UTF-8.
    #[error("invalid UTF-8 in string at byte {offset}")]
    InvalidUtf8 {
        /// Position of the string's marker.
        offset: usize,
    },
    /// Bytes remain after the single top-level value.
    #[error("{extra} trailing bytes after the value ending at byte {offset}")]
    TrailingBytes {
        /// Where the value ended.
        offset: usize,
        /// How many bytes follow it.
        extra: usize,
    },
    /// The record declares a format version this code does not know.
    #[error("unsupported format version {version}")]
    UnsupportedVersion {
        /// The declared version.
        version: u64,
    },
    /// A field has the wrong MessagePack type, an array the wrong length, or a
    /// value is outside its domain.
    #[error("field `{field}`: expected {expected}")]
    WrongShape {
        /// The field, as named in `docs/FORMAT.md`.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// Free-form JSON nests deeper than [`MAX_JSON_DEPTH`].
    #[error("field `{field}`: JSON nests deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep {
        /// The field holding the JSON.
        field: &'static str,
    },
}

/// Appends canonical MessagePack to a buffer. Writing to memory cannot fail,
/// so nothing here returns a `Result`.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

/// Lengths are 32-bit in MessagePack. Nothing Annal encodes comes near 4 GiB
/// (request bodies are capped far below), so saturating is unreachable in
/// practice; if it ever happened the decoder would refuse the bytes rather
/// than accept a wrong record.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn nil(&mut self) {
        self.buf.push(0xc0);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.buf.push(if value { 0xc3 } else { 0xc2 });
    }

    /// Non-negative integers: positive fixint, uint 8, 16, 32 or 64, the
    /// shortest that fits.
    pub(crate) fn uint(&mut self, value: u64) {
        if value < 0x80 {
            self.buf.push(value as u8);
        } else if let Ok(v) = u8::try_from(value) {
            self.buf.push(0xcc);
            self.buf.push(v);
        } else if let Ok(v) = u16::try_from(value) {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(value) {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&v.to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// Signed integers: non-negative ones as [`Writer::uint`]; negative ones
    /// as negative fixint, int 8, 16, 32 or 64, the shortest that fits.
    pub(crate) fn int(&mut self, value: i64) {
        if let Ok(v) = u64::try_from(value) {
            return self.uint(v);
        }
        if value >= -32 {
            self.buf.push(value as u8);
        } else if let Ok(v) = i8::try_from(value) {
            self.buf.push(0xd0);
            self.buf.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = i16::try_from(value) {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(value) {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&v.to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// Always float 64, even for values float 32 could hold exactly, so a
    /// number's encoding never depends on its value.
    pub(crate) fn f64(&mut self, value: f64) {
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&value.to_bits().to_be_bytes());
    }

    /// Writes a length in the shortest form its family has: the fix form
    /// (`fix_base | len`, for `len < fix_limit`), then 8-, 16- and 32-bit
    /// forms. Arrays and maps have no 8-bit form; bin has no fix form.
    fn length(&mut self, len: usize, fix: Option<(u8, u32)>, marker8: Option<u8>, wide: [u8; 2]) {
        let len = len32(len);
        match (fix, marker8) {
            (Some((base, limit)), _) if len < limit => self.buf.push(base | len as u8),
            (_, Some(marker)) if len <= u32::from(u8::MAX) => {
                self.buf.push(marker);
                self.buf.push(len as u8);
            }
            _ => match u16::try_from(len) {
                Ok(short) => {
                    self.buf.push(wide[0]);
                    self.buf.extend_from_slice(&short.to_be_bytes());
                }
                Err(_) => {
                    self.buf.push(wide[1]);
                    self.buf.extend_from_slice(&len.to_be_bytes());
                }
            },
        }
    }

    /// fixstr, str 8, 16 or 32, the shortest that fits.
    pub(crate) fn str(&mut self, value: &str) {
        self.length(value.len(), Some((0xa0, 32)), Some(0xd9), [0xda, 0xdb]);
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// bin 8, 16 or 32, the shortest that fits.
    pub(crate) fn bin(&mut self, value: &[u8]) {
        self.length(value.len(), None, Some(0xc4), [0xc5, 0xc6]);
        self.buf.extend_from_slice(value);
    }

    /// fixarray, array 16 or 32 header; the caller writes the elements.
    pub(crate) fn array_len(&mut self, len: usize) {
        self.length(len, Some((0x90, 16)), None, [0xdc, 0xdd]);
    }

    /// fixmap, map 16 or 32 header; the caller writes the pairs.
    fn map_len(&mut self, len: usize) {
        self.length(len, Some((0x80, 16)), None, [0xde, 0xdf]);
    }

    pub(crate) fn opt_str(&mut self, value: Option<&str>) {
        match value {
            Some(s) => self.str(s),
            None => self.nil(),
        }
    }

    /// A JSON value: null → nil, booleans, integers as [`Writer::int`] /
    /// [`Writer::uint`], other numbers as float 64, strings, arrays, and
    /// objects as maps with keys sorted by their UTF-8 bytes.
    pub(crate) fn json(&mut self, value: &Value) {
        match value {
            Value::Null => self.nil(),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => self.number(n),
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.array_len(items.len());
                for item in items {
                    self.json(item);
                }
            }
            Value::Object(map) => {
                // Sort explicitly instead of trusting the map's iteration
                // order: serde_json's `preserve_order` feature, switched on by
                // any crate in the build, would make it insertion order.
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                self.map_len(entries.len());
                for (key, item) in entries {
                    self.str(key);
                    self.json(item);
                }
            }
        }
    }

    fn number(&mut self, n: &Number) {
        if let Some(u) = n.as_u64() {
            self.uint(u);
        } else if let Some(i) = n.as_i64() {
            self.int(i);
        } else if let Some(f) = n.as_f64() {
            self.f64(f);
        } else {
            // Unreachable without serde_json's `arbitrary_precision`, which
            // Annal does not enable; nil keeps `encode` total and the decoder
            // would then read the value back as null, never as another number.
            self.nil();
        }
    }
}

/// One MessagePack item; for arrays and maps only the header.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
}

/// Reads MessagePack items, accepting any width; canonical form is enforced
/// afterwards by [`decode_canonical`] comparing against a re-encoding.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len());
        let Some(end) = end else {
            return Err(DecodeError::Malformed {
                offset: self.pos,
                reason: "unexpected end of input",
            });
        };
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len8(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(u8::from_be_bytes(self.be()?)))
    }

    fn len16(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    fn len32(&mut self) -> Result<usize, DecodeError> {
        let len = u32::from_be_bytes(self.be()?);
        usize::try_from(len).map_err(|_| DecodeError::Malformed {
            offset: self.pos,
            reason: "length does not fit in memory",
        })
    }

    fn str_body(&mut self, start: usize, len: usize) -> Result<Item<'a>, DecodeError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Item::Str)
            .map_err(|_| DecodeError::InvalidUtf8 { offset: start })
    }

    fn item(&mut self) -> Result<Item<'a>, DecodeError> {
        let start = self.pos;
        let [marker] = self.be::<1>()?;
        Ok(match marker {
            0x00..=0x7f => Item::Uint(u64::from(marker)),
            0x80..=0x8f => Item::Map(u32::from(marker & 0x0f)),
            0x90..=0x9f => Item::Array(u32::from(marker & 0x0f)),
            0xa0..=0xbf => return self.str_body(start, usize::from(marker & 0x1f)),
            0xc0 => Item::Nil,
            0xc2 => Item::Bool(false),
            0xc3 => Item::Bool(true),
            0xc4 => {
                let len = self.len8()?;
                Item::Bin(self.take(len)?)
            }
            0xc5 => {
                let len = self.len16()?;
                Item::Bin(self.take(len)?)
            }
            0xc6 => {
                let len = self.len32()?;
                Item::Bin(self.take(len)?)
            }
            0xca => Item::Float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => Item::Float(f64::from_be_bytes(self.be()?)),
            0xcc => Item::Uint(u64::from(u8::from_be_bytes(self.be()?))),
            0xcd => Item::Uint(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Item::Uint(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Item::Uint(u64::from_be_bytes(self.be()?)),
            0xd0 => Item::Int(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Item::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Item::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Item::Int(i64::from_be_bytes(self.be()?)),
            0xd9 => {
                let len = self.len8()?;
                return self.str_body(start, len);
            }
            0xda => {
                let len = self.len16()?;
                return self.str_body(start, len);
            }
            0xdb => {
                let len = self.len32()?;
                return self.str_body(start, len);
            }
            0xdc => Item::Array(u32::from(u16::from_be_bytes(self.be()?))),
            0xdd => Item::Array(u32::from_be_bytes(self.be()?)),
            0xde => Item::Map(u32::from(u16::from_be_bytes(self.be()?))),
            0xdf => Item::Map(u32::from_be_bytes(self.be()?)),
            0xe0..=0xff => Item::Int(i64::from(marker as i8)),
            0xc1 => {
                return Err(DecodeError::Malformed {
                    offset: start,
                    reason: "reserved marker 0xc1",
                });
            }
            0xc7..=0xc9 | 0xd4..=0xd8 => {
                return Err(DecodeError::Malformed {
                    offset: start,
                    reason: "extension types are not part of the format",
                });
            }
        })
    }

    /// An array header that must announce exactly `len` elements.
    pub(crate) fn array(
        &mut self,
        field: &'static str,
        len: u32,
        expected: &'static str,
    ) -> Result<(), DecodeError> {
        match self.array_len(field, expected)? {
            n if n == len => Ok(()),
            _ => Err(DecodeError::WrongShape { field, expected }),
        }
    }

    /// Any array header; returns how many elements it announces.
    pub(crate) fn array_len(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<u32, DecodeError> {
        match self.item()? {
            Item::Array(n) => Ok(n),
            _ => Err(DecodeError::WrongShape { field, expected }),
        }
    }

    pub(crate) fn uint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        match self.item()? {
            Item::Uint(v) => Ok(v),
            Item::Int(v) if v >= 0 => Ok(v as u64),
            _ => Err(DecodeError::WrongShape {
                field,
                expected: "a non-negative integer",
            }),
        }
    }

    pub(crate) fn int(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let wrong = DecodeError::WrongShape {
            field,
            expected: "a 64-bit signed integer",
        };
        match self.item()? {
            Item::Int(v) => Ok(v),
            Item::Uint(v) => i64::try_from(v).map_err(|_| wrong),
            _ => Err(wrong),
        }
    }

    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        match self.item()? {
            Item::Str(s) => Ok(s),
            _ => Err(DecodeError::WrongShape {
                field,
                expected: "a string",
            }),
        }
    }

    pub(crate) fn bin<const N: usize>(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        match self.item()? {
            Item::Bin(bytes) => {
                <[u8; N]>::try_from(bytes).map_err(|_| DecodeError::WrongShape { field, expected })
            }
            _ => Err(DecodeError::WrongShape { field, expected }),
        }
    }

    /// Consumes a nil if one is next and reports whether it did.
    pub(crate) fn nil(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        if self.nil() {
            return Ok(None);
        }
        self.str(field).map(|s| Some(s.to_owned()))
    }

    /// A JSON value nested at most [`MAX_JSON_DEPTH`] arrays/maps deep.
    pub(crate) fn json(&mut self, field: &'static str) -> Result<Value, DecodeError> {
        self.json_at(field, 0)
    }

    fn json_at(&mut self, field: &'static str, depth: usize) -> Result<Value, DecodeError> {
        let item = self.item()?;
        let container_depth = || {
            if depth >= MAX_JSON_DEPTH {
                Err(DecodeError::TooDeep { field })
            } else {
                Ok(depth + 1)
            }
        };
        Ok(match item {
            Item::Nil => Value::Null,
            Item::Bool(b) => Value::Bool(b),
            Item::Uint(u) => Value::Number(u.into()),
            Item::Int(i) => Value::Number(i.into()),
            Item::Float(f) => {
                Value::Number(Number::from_f64(f).ok_or(DecodeError::WrongShape {
                    field,
                    expected: "a finite number (JSON has no NaN or infinity)",
                })?)
            }
            Item::Str(s) => Value::String(s.to_owned()),
            Item::Bin(_) => {
                return Err(DecodeError::WrongShape {
                    field,
                    expected: "a JSON value (binary is not JSON)",
                });
            }
            Item::Array(n) => {
                let inner = container_depth()?;
                // Never trust a length for preallocation: each element takes
                // at least one byte, so the remaining input bounds it.
                let cap = (n as usize).min(self.buf.len() - self.pos);
                let mut items = Vec::with_capacity(cap);
                for _ in 0..n {
                    items.push(self.json_at(field, inner)?);
                }
                Value::Array(items)
            }
            Item::Map(n) => {
                let inner = container_depth()?;
                let mut map = Map::new();
                for _ in 0..n {
                    let key_at = self.pos;
                    let key = match self.item()? {
                        Item::Str(s) => s.to_owned(),
                        _ => {
                            return Err(DecodeError::WrongShape {
                                field,
                                expected: "string map keys",
                            });
                        }
                    };
                    let value = self.json_at(field, inner)?;
                    if map.insert(key, value).is_some() {
                        return Err(DecodeError::DuplicateKey { offset: key_at });
                    }
                }
                Value::Object(map)
            }
        })
    }
}

/// Decodes one value with `parse`, then insists that the input was exactly
/// one value and exactly `encode`'s output for it. The byte comparison is what
/// makes decoding canonical: any second encoding of a value (wider integers,
/// float 32, unsorted keys) differs from the one `encode` writes.
pub(crate) fn decode_canonical<T>(
    bytes: &[u8],
    parse: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
    encode: impl FnOnce(&T) -> Vec<u8>,
) -> Result<T, DecodeError> {
    let mut reader = Reader::new(bytes);
    let value = parse(&mut reader)?;
    if reader.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            offset: reader.pos,
            extra: bytes.len() - reader.pos,
        });
    }
    let canonical = encode(&value);
    if canonical != bytes {
        let offset = canonical
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(canonical.len().min(bytes.len()));
        return Err(DecodeError::NonCanonical { offset });
    }
    Ok(value)
}

/// Encodes a free-form JSON value on its own (used by tests and tools that
/// want to see how `before`/`after`/`metadata` are laid out).
pub fn encode_json(value: &Value) -> Vec<u8> {
    let mut writer = Writer::default();
    writer.json(value);
    writer.finish()
}

/// Decodes a free-form JSON value on its own, with the same canonical rules.
pub fn decode_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    decode_canonical(bytes, |r| r.json("json"), encode_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn int_bytes(v: i64) -> Vec<u8> {
        let mut w = Writer::default();
        w.int(v);
        w.finish()
    }

    #[test]
    fn integers_use_the_shortest_form() {
        assert_eq!(int_bytes(0), [0x00]);
        assert_eq!(int_bytes(127), [0x7f]);
        assert_eq!(int_bytes(128), [0xcc, 0x80]);
        assert_eq!(int_bytes(256), [0xcd, 0x01, 0x00]);
        assert_eq!(int_bytes(65536), [0xce, 0, 1, 0, 0]);
        assert_eq!(int_bytes(1 << 32), [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(int_bytes(-1), [0xff]);
        assert_eq!(int_bytes(-32), [0xe0]);
        assert_eq!(int_bytes(-33), [0xd0, 0xdf]);
        assert_eq!(int_bytes(-129), [0xd1, 0xff, 0x7f]);
        assert_eq!(int_bytes(-32769), [0xd2, 0xff, 0xff, 0x7f, 0xff]);
        assert_eq!(int_bytes(i64::MIN)[0], 0xd3);
    }

    #[test]
    fn lengths_use_the_shortest_form() {
        let mut w = Writer::default();
        w.str(&"a".repeat(31));
        w.str(&"a".repeat(32));
        w.bin(&[]);
        w.array_len(15);
        w.array_len(16);
        let out = w.finish();
        assert_eq!(out[0], 0xbf);
        assert_eq!(&out[32..34], &[0xd9, 32]);
        assert_eq!(&out[66..68], &[0xc4, 0]);
        assert_eq!(&out[68..], &[0x9f, 0xdc, 0, 16]);
    }

    #[test]
    fn json_maps_are_sorted_by_key_bytes() {
        let value = json!({"b": 1, "a": 2, "é": 3, "Z": 4});
        let bytes = encode_json(&value);
        assert_eq!(
            bytes,
            [
                0x84, 0xa1, b'Z', 4, 0xa1, b'a', 2, 0xa1, b'b', 1, 0xa2, 0xc3, 0xa9, 3
            ]
        );
        assert_eq!(decode_json(&bytes).unwrap(), value);
    }

    #[test]
    fn json_numbers_are_integers_only_when_written_as_fitting_integers() {
        let first_byte = |text: &str| encode_json(&serde_json::from_str(text).unwrap())[0];
        assert_eq!(first_byte("5"), 0x05);
        assert_eq!(first_byte("-5"), 0xfb);
        assert_eq!(first_byte("18446744073709551615"), 0xcf);
        for float in ["1.0", "1e2", "18446744073709551616", "-9223372036854775809"] {
            assert_eq!(first_byte(float), 0xcb, "{float}");
        }
    }

    #[test]
    fn decoder_rejects_each_non_canonical_form() {
        // 5 as uint 16.
        assert_eq!(
            decode_json(&[0xcd, 0, 5]),
            Err(DecodeError::NonCanonical { offset: 0 })
        );
        // 5 as int 8.
        assert!(matches!(
            decode_json(&[0xd0, 5]),
            Err(DecodeError::NonCanonical { .. })
        ));
        // 1.5 as float 32.
        let mut f32_bytes = vec![0xca];
        f32_bytes.extend_from_slice(&1.5f32.to_be_bytes());
        assert!(matches!(
            decode_json(&f32_bytes),
            Err(DecodeError::NonCanonical { .. })
        ));
        // {"b":1,"a":2}: keys out of order.
        assert_eq!(
            decode_json(&[0x82, 0xa1, b'b', 1, 0xa1, b'a', 2]),
            Err(DecodeError::NonCanonical { offset: 2 })
        );
        // {"a":1,"a":2}.
        assert_eq!(
            decode_json(&[0x82, 0xa1, b'a', 1, 0xa1, b'a', 2]),
            Err(DecodeError::DuplicateKey { offset: 4 })
        );
        // "\xff".
        assert_eq!(
            decode_json(&[0xa1, 0xff]),
            Err(DecodeError::InvalidUtf8 { offset: 0 })
        );
        // A short string as str 8.
        assert!(matches!(
            decode_json(&[0xd9, 1, b'a']),
            Err(DecodeError::NonCanonical { .. })
        ));
        // Trailing byte.
        assert_eq!(
            decode_json(&[0x01, 0x02]),
            Err(DecodeError::TrailingBytes {
                offset: 1,
                extra: 1
            })
        );
        // Truncated, reserved, extension, NaN.
        assert!(matches!(
            decode_json(&[0xcd, 0]),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_json(&[0xc1]),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_json(&[0xd4, 1, 1]),
            Err(DecodeError::Malformed { .. })
        ));
        let mut nan = vec![0xcb];
        nan.extend_from_slice(&f64::NAN.to_be_bytes());
        assert!(matches!(
            decode_json(&nan),
            Err(DecodeError::WrongShape { .. })
        ));
    }

    #[test]
    fn a_huge_announced_length_does_not_allocate() {
        assert!(matches!(
            decode_json(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn json_depth_is_bounded_and_covers_what_serde_json_parses() {
        // serde_json's parser stops at 128 open brackets, so everything it
        // hands the service nests less deeply than the decoder allows.
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<Value>(&nested(MAX_JSON_DEPTH)).is_err());
        let deepest_parsed: Value = serde_json::from_str(&nested(MAX_JSON_DEPTH - 1)).unwrap();
        assert_eq!(
            decode_json(&encode_json(&deepest_parsed)).unwrap(),
            deepest_parsed
        );

        let mut at_limit = vec![0x91; MAX_JSON_DEPTH - 1];
        at_limit.push(0x90);
        assert!(decode_json(&at_limit).is_ok());
        let too_deep = vec![0x91; MAX_JSON_DEPTH + 1];
        assert_eq!(
            decode_json(&too_deep),
            Err(DecodeError::TooDeep { field: "json" })
        );
    }
}
