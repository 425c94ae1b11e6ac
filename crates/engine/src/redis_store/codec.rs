//! The compact encoding of a message's unchanging part in Redis (the `m` hash): group, dedup
//! id, attributes and body in one binary string, with no field names. Lua never reads it.
//!
//! ```text
//! u16 group length, group, u16 dedup length, dedup, u16 attribute count,
//! per attribute: u16 name length, name, u32 value length, value; then the body to the end
//! ```

use crate::model::Attributes;

pub struct Payload {
    pub group: Option<String>,
    pub dedup_id: Option<String>,
    pub attributes: Attributes,
    pub body: Vec<u8>,
}

pub fn encode(
    group: Option<&str>,
    dedup: Option<&str>,
    attributes: &Attributes,
    body: &[u8],
) -> Vec<u8> {
    let g = group.unwrap_or_default().as_bytes();
    let d = dedup.unwrap_or_default().as_bytes();
    let attrs: usize = attributes.iter().map(|(k, v)| 6 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(6 + g.len() + d.len() + attrs + body.len());
    out.extend_from_slice(&(g.len() as u16).to_le_bytes());
    out.extend_from_slice(g);
    out.extend_from_slice(&(d.len() as u16).to_le_bytes());
    out.extend_from_slice(d);
    out.extend_from_slice(&(attributes.len() as u16).to_le_bytes());
    for (k, v) in attributes {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<usize> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize)
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn string(&mut self, n: usize) -> Option<String> {
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

pub fn decode(b: &[u8]) -> Option<Payload> {
    let mut r = Reader(b);
    let n = r.u16()?;
    let group = r.string(n)?;
    let n = r.u16()?;
    let dedup = r.string(n)?;
    let count = r.u16()?;
    let mut attributes = Attributes::new();
    for _ in 0..count {
        let n = r.u16()?;
        let k = r.string(n)?;
        let n = r.u32()?;
        let v = r.string(n)?;
        attributes.insert(k, v);
    }
    Some(Payload {
        group: (!group.is_empty()).then_some(group),
        dedup_id: (!dedup.is_empty()).then_some(dedup),
        attributes,
        body: r.0.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut a = Attributes::new();
        a.insert("k".into(), "v".repeat(70_000));
        a.insert("é".into(), String::new());
        let b = encode(Some("g1"), None, &a, b"\x00body\xff");
        let p = decode(&b).unwrap();
        assert_eq!(p.group.as_deref(), Some("g1"));
        assert_eq!(p.dedup_id, None);
        assert_eq!(p.attributes, a);
        assert_eq!(p.body, b"\x00body\xff");
        // Every cut inside the header part is refused, never misread.
        let header = b.len() - 6;
        for cut in 0..header {
            assert!(decode(&b[..cut]).is_none(), "cut at {cut}");
        }
    }
}
