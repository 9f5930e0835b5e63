//! AMF0 decoding for inbound commands and data messages.
//!
//! Ours rather than rml_amf0's: that decoder recurses without a depth limit
//! (a few KiB of nested objects overflow the stack) and its command parser
//! panics on fewer than three values.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Amf {
    Number(f64),
    Boolean(bool),
    String(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
    Array(Vec<Amf>),
}

impl Amf {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Amf::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_number(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn property(&self, name: &str) -> Option<&Amf> {
        match self {
            Amf::Object(props) => props.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    #[error("AMF0 value truncated at offset {0}")]
    Truncated(usize),
    #[error("unsupported AMF0 marker {marker:#04x} at offset {offset}")]
    UnsupportedMarker { marker: u8, offset: usize },
    #[error("AMF0 nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("AMF0 string is not UTF-8 at offset {0}")]
    NotUtf8(usize),
}

const MAX_DEPTH: usize = 16;

/// Decodes every value in `data`.
pub(crate) fn decode_all(data: &[u8]) -> Result<Vec<Amf>, AmfError> {
    let mut reader = Reader { data, pos: 0 };
    let mut values = Vec::new();
    while reader.pos < data.len() {
        values.push(reader.value(0)?);
    }
    Ok(values)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AmfError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or(AmfError::Truncated(self.pos))?;
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, len: usize) -> Result<String, AmfError> {
        let at = self.pos;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| AmfError::NotUtf8(at))
    }

    fn value(&mut self, depth: usize) -> Result<Amf, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let offset = self.pos;
        let marker = self.u8()?;
        match marker {
            0x00 => {
                let b = self.take(8)?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                Ok(Amf::Number(f64::from_be_bytes(raw)))
            }
            0x01 => Ok(Amf::Boolean(self.u8()? != 0)),
            0x02 => {
                let len = usize::from(self.u16()?);
                Ok(Amf::String(self.string(len)?))
            }
            0x03 => self.object_body(depth),
            0x05 => Ok(Amf::Null),
            0x06 => Ok(Amf::Undefined),
            0x08 => {
                // The ECMA array count is advisory; encoders get it wrong, so
                // the end marker decides.
                self.u32()?;
                self.object_body(depth)
            }
            0x0a => {
                let count = self.u32()?;
                // Each element is at least one byte: bounds the allocation.
                let remaining = self.data.len() - self.pos;
                let mut items = Vec::with_capacity((count as usize).min(remaining));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Amf::Array(items))
            }
            0x0c => {
                let len = self.u32()? as usize;
                Ok(Amf::String(self.string(len)?))
            }
            marker => Err(AmfError::UnsupportedMarker { marker, offset }),
        }
    }

    fn object_body(&mut self, depth: usize) -> Result<Amf, AmfError> {
        let mut props = Vec::new();
        loop {
            let key_len = usize::from(self.u16()?);
            if key_len == 0 {
                let at = self.pos;
                if self.u8()? == 0x09 {
                    return Ok(Amf::Object(props));
                }
                return Err(AmfError::UnsupportedMarker {
                    marker: self.data.get(at).copied().unwrap_or_default(),
                    offset: at,
                });
            }
            let key = self.string(key_len)?;
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Vec<u8> {
        let mut v = vec![0x02];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn number(n: f64) -> Vec<u8> {
        let mut v = vec![0x00];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }

    #[test]
    fn decodes_connect_like_command() {
        let mut data = string("connect");
        data.extend(number(1.0));
        data.push(0x03);
        data.extend_from_slice(&3u16.to_be_bytes());
        data.extend_from_slice(b"app");
        data.extend(string("live"));
        data.extend_from_slice(&[0, 0, 0x09]);
        data.push(0x05);
        let values = decode_all(&data).expect("valid");
        assert_eq!(values.len(), 4);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_number(), Some(1.0));
        assert_eq!(values[2].property("app").and_then(Amf::as_str), Some("live"));
        assert_eq!(values[3], Amf::Null);
    }

    #[test]
    fn ecma_array_and_strict_array() {
        let mut data = vec![0x08, 0, 0, 0, 99];
        data.extend_from_slice(&5u16.to_be_bytes());
        data.extend_from_slice(b"width");
        data.extend(number(320.0));
        data.extend_from_slice(&[0, 0, 0x09]);
        data.extend_from_slice(&[0x0a, 0, 0, 0, 2, 0x01, 1, 0x06]);
        let values = decode_all(&data).expect("valid");
        assert_eq!(values[0].property("width"), Some(&Amf::Number(320.0)));
        assert_eq!(values[1], Amf::Array(vec![Amf::Boolean(true), Amf::Undefined]));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(decode_all(&[0x00, 1, 2]), Err(AmfError::Truncated(1)));
        assert_eq!(decode_all(&[0x02, 0, 10, b'a']), Err(AmfError::Truncated(3)));
        assert!(matches!(
            decode_all(&[0x11]),
            Err(AmfError::UnsupportedMarker { marker: 0x11, .. })
        ));
        assert!(decode_all(&[0x02, 0, 1, 0xff]).is_err());
        assert!(decode_all(&[0x0a, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_all(&[0x03, 0, 0, 0x07]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n([0x03u8, 0, 1, b'a'], 100_000).flatten().collect();
        assert_eq!(decode_all(&deep), Err(AmfError::TooDeep));
    }
}
