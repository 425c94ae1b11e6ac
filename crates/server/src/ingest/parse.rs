//! Streaming row readers for ingested files: `csv` (RFC 4180 through csv-core), `jsonl` and
//! `lines`. Memory is bounded whatever the input: a record longer than the row limit is
//! skipped (and reported), never buffered whole. Each row reports its first line number and the
//! byte offset just past it, so ingestion can checkpoint and resume exactly at a row boundary.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

/// How a file's rows become messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Two columns `userId,alertMessage` (header optional and detected): the message is
    /// `{"userId":"...","alertMessage":"..."}`.
    Csv,
    /// One JSON object per line, sent as is.
    Jsonl,
    /// Each line is a raw message.
    Lines,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "lines" | "text" | "txt" => Some(Format::Lines),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Lines => "lines",
        }
    }
    /// The dedup key when none is given: one alert per user for csv, every row otherwise.
    pub fn default_dedup(self) -> DedupKey {
        match self {
            Format::Csv => DedupKey::User,
            _ => DedupKey::Row,
        }
    }
}

/// What makes two rows of one file "the same" (sent once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DedupKey {
    /// The line number: every row is sent.
    Row,
    /// The user id (csv: first column; jsonl: the `userId` field): one message per user.
    User,
    /// The message bytes: identical rows are sent once.
    Content,
}

impl DedupKey {
    pub fn parse(s: &str) -> Option<DedupKey> {
        match s.to_ascii_lowercase().as_str() {
            "row" | "line" => Some(DedupKey::Row),
            "user" | "userid" => Some(DedupKey::User),
            "content" | "body" => Some(DedupKey::Content),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DedupKey::Row => "row",
            DedupKey::User => "user",
            DedupKey::Content => "content",
        }
    }
    /// Is this key usable with this format? (`lines` has no user column.)
    pub fn check(self, format: Format) -> Result<(), String> {
        if self == DedupKey::User && format == Format::Lines {
            return Err("dedup `user` needs a user id column: use csv or jsonl, or dedup `row` or `content` for lines".into());
        }
        Ok(())
    }
}

/// One record of the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based line on which the record starts.
    pub line: u64,
    /// Byte offset just past the record (where reading resumes).
    pub end: u64,
    pub kind: RowKind,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RowKind {
    /// A message: its body and the user id it is for (csv, or jsonl with `userId`).
    Message { body: Vec<u8>, user: Option<String> },
    /// The csv header line (skipped).
    Header,
    /// A row that cannot be sent: the start of its raw bytes and why.
    Bad { raw: Vec<u8>, reason: String },
}

/// Bytes of a bad row kept for its report line.
pub const RAW_KEEP: usize = 1024;

/// Reads rows from `input`, which is positioned at byte `offset` (a row boundary), on line
/// `line`. `max_row` bounds the bytes of one message.
pub struct RowReader<R> {
    input: R,
    format: Format,
    offset: u64,
    line: u64,
    max_row: usize,
    /// Only the file's first record may be a header.
    at_start: bool,
    csv: csv_core::Reader,
    out: Vec<u8>,
    ends: [usize; 8],
    raw: Vec<u8>,
    done: bool,
}

impl<R: BufRead> RowReader<R> {
    pub fn new(input: R, format: Format, offset: u64, line: u64, max_row: usize) -> Self {
        RowReader {
            input,
            format,
            offset,
            line: line.max(1),
            max_row,
            at_start: offset == 0,
            csv: csv_core::Reader::new(),
            out: vec![0; max_row + 64],
            ends: [0; 8],
            raw: Vec::with_capacity(RAW_KEEP),
            done: false,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next row, or None at the end of the input.
    pub fn next_row(&mut self) -> io::Result<Option<Row>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if !self.skip_blank()? {
                self.done = true;
                return Ok(None);
            }
            let start_line = self.line;
            let first = std::mem::take(&mut self.at_start);
            let kind = match self.format {
                Format::Csv => self.csv_record(first)?,
                Format::Jsonl | Format::Lines => self.text_line()?,
            };
            let Some(kind) = kind else { continue };
            return Ok(Some(Row {
                line: start_line,
                end: self.offset,
                kind,
            }));
        }
    }

    /// Skip line ends (blank lines) before a record. False at the end of the input.
    fn skip_blank(&mut self) -> io::Result<bool> {
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let n = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            self.line += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            let more = n < buf.len();
            self.input.consume(n);
            self.offset += n as u64;
            if more {
                return Ok(true);
            }
        }
    }

    fn keep_raw(raw: &mut Vec<u8>, bytes: &[u8]) {
        let room = RAW_KEEP.saturating_sub(raw.len());
        raw.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// One line (jsonl, lines), at most `max_row` bytes kept.
    fn text_line(&mut self) -> io::Result<Option<RowKind>> {
        self.out.clear();
        let mut too_long = false;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            let n = chunk.len();
            if self.out.len() + n <= self.max_row + 2 {
                self.out.extend_from_slice(chunk);
            } else {
                if !too_long {
                    Self::keep_raw(&mut self.raw, &self.out);
                }
                too_long = true;
                Self::keep_raw(&mut self.raw, chunk);
                self.out.clear();
            }
            self.input.consume(n);
            self.offset += n as u64;
            if found {
                self.line += 1;
                break;
            }
        }
        if too_long {
            let raw = std::mem::take(&mut self.raw);
            return Ok(Some(RowKind::Bad {
                raw,
                reason: format!("line is longer than {} bytes (the row limit)", self.max_row),
            }));
        }
        while matches!(self.out.last(), Some(b'\n' | b'\r')) {
            self.out.pop();
        }
        let line = std::mem::take(&mut self.out);
        let kind = self.text_kind(line);
        self.out = Vec::with_capacity(self.max_row.min(64 * 1024));
        Ok(Some(kind))
    }

    fn text_kind(&self, line: Vec<u8>) -> RowKind {
        if line.contains(&0) {
            return bad(&line, "contains a NUL byte (binary data)".into());
        }
        if std::str::from_utf8(&line).is_err() {
            return bad(&line, "is not valid UTF-8".into());
        }
        match self.format {
            Format::Lines => RowKind::Message {
                body: line,
                user: None,
            },
            _ => {
                let v: serde_json::Value = match serde_json::from_slice(&line) {
                    Ok(v) => v,
                    Err(e) => return bad(&line, format!("is not valid JSON: {e}")),
                };
                let Some(obj) = v.as_object() else {
                    return bad(&line, "is not a JSON object".into());
                };
                let user = match obj.get("userId") {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                RowKind::Message { body: line, user }
            }
        }
    }

    /// One csv record: exactly two fields, `userId,alertMessage`.
    fn csv_record(&mut self, first: bool) -> io::Result<Option<RowKind>> {
        use csv_core::ReadRecordResult as R;
        let (mut outlen, mut endlen) = (0usize, 0usize);
        let mut overflow: Option<String> = None;
        self.raw.clear();
        loop {
            let buf = self.input.fill_buf()?;
            let (res, nin, nout, nend) =
                self.csv
                    .read_record(buf, &mut self.out[outlen..], &mut self.ends[endlen..]);
            let consumed = &buf[..nin];
            self.line += consumed.iter().filter(|&&b| b == b'\n').count() as u64;
            Self::keep_raw(&mut self.raw, consumed);
            self.input.consume(nin);
            self.offset += nin as u64;
            outlen += nout;
            endlen += nend;
            match res {
                R::InputEmpty => continue,
                R::OutputFull => {
                    overflow.get_or_insert_with(|| {
                        format!(
                            "record is longer than {} bytes (the row limit)",
                            self.max_row
                        )
                    });
                    // Keep reading to the end of the record, discarding its bytes.
                    outlen = 0;
                    endlen = 0;
                }
                R::OutputEndsFull => {
                    overflow.get_or_insert_with(|| {
                        format!(
                            "has more than {} fields; expected 2: userId,alertMessage (quote a message that contains commas)",
                            self.ends.len()
                        )
                    });
                    outlen = 0;
                    endlen = 0;
                }
                R::Record => break,
                R::End => {
                    if outlen == 0 && endlen == 0 && overflow.is_none() {
                        return Ok(None);
                    }
                    break;
                }
            }
        }
        // The raw text of the record, without its line end.
        while matches!(self.raw.last(), Some(b'\n' | b'\r')) {
            self.raw.pop();
        }
        if let Some(reason) = overflow {
            return Ok(Some(RowKind::Bad {
                raw: std::mem::take(&mut self.raw),
                reason,
            }));
        }
        let mut fields = Vec::with_capacity(endlen);
        let mut start = 0;
        for &end in &self.ends[..endlen] {
            fields.push(&self.out[start..end]);
            start = end;
        }
        if fields.len() != 2 {
            let reason = format!(
                "has {} field{}; expected 2: userId,alertMessage (quote a message that contains commas)",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            );
            return Ok(Some(bad(&self.raw, reason)));
        }
        if fields.iter().any(|f| f.contains(&0)) {
            return Ok(Some(bad(
                &self.raw,
                "contains a NUL byte (binary data)".into(),
            )));
        }
        let (Ok(user), Ok(message)) = (
            std::str::from_utf8(fields[0]),
            std::str::from_utf8(fields[1]),
        ) else {
            return Ok(Some(bad(&self.raw, "is not valid UTF-8".into())));
        };
        let (user, message) = (user.trim(), message.trim());
        if first && is_header(user, message) {
            return Ok(Some(RowKind::Header));
        }
        if user.is_empty() {
            return Ok(Some(bad(&self.raw, "userId (column 1) is empty".into())));
        }
        if message.is_empty() {
            return Ok(Some(bad(
                &self.raw,
                "alertMessage (column 2) is empty".into(),
            )));
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "userId": user,
            "alertMessage": message,
        }))
        .expect("json");
        if body.len() > self.max_row {
            return Ok(Some(bad(
                &self.raw,
                format!(
                    "message is {} bytes; the row limit is {}",
                    body.len(),
                    self.max_row
                ),
            )));
        }
        Ok(Some(RowKind::Message {
            body,
            user: Some(user.to_string()),
        }))
    }
}

fn bad(raw: &[u8], reason: String) -> RowKind {
    RowKind::Bad {
        raw: raw[..raw.len().min(RAW_KEEP)].to_vec(),
        reason,
    }
}

/// A first csv record is a header when its two fields name the columns: the first one of
/// `userId`, `user_id`, `user`, `id`, `uid`, the second one of `alertMessage`,
/// `alert_message`, `message`, `alert`, `msg`, `text` (case, `_`, `-` and spaces ignored).
pub fn is_header(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }
    matches!(norm(a).as_str(), "userid" | "user" | "id" | "uid")
        && matches!(
            norm(b).as_str(),
            "alertmessage" | "message" | "alert" | "msg" | "text"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(format: Format, input: &str, max: usize) -> Vec<Row> {
        let mut r = RowReader::new(input.as_bytes(), format, 0, 1, max);
        let mut out = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            out.push(row);
        }
        out
    }

    fn msg(body: &str, user: Option<&str>) -> RowKind {
        RowKind::Message {
            body: body.as_bytes().to_vec(),
            user: user.map(String::from),
        }
    }

    #[test]
    fn csv_seed_rows_quotes_and_header() {
        let got = rows(
            Format::Csv,
            "userId,alertMessage\nuser123,\"order has been placed\"\r\n\nu2,\"a, b\"\"c\"\"\nline two\"\nu3,plain",
            1000,
        );
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].kind, RowKind::Header);
        assert_eq!((got[1].line, got[2].line, got[3].line), (2, 4, 6));
        assert_eq!(
            got[1].kind,
            msg(
                r#"{"alertMessage":"order has been placed","userId":"user123"}"#,
                Some("user123")
            )
        );
        assert_eq!(
            got[2].kind,
            msg(
                r#"{"alertMessage":"a, b\"c\"\nline two","userId":"u2"}"#,
                Some("u2")
            )
        );
        assert_eq!(
            got[3].end, 86,
            "the last record ends at the end of the input"
        );
        // Without a header the first row is a row.
        let got = rows(Format::Csv, "user123,\"order has been placed\"\n", 1000);
        assert!(matches!(got[0].kind, RowKind::Message { .. }));
        // A header-like row later is just a row.
        let got = rows(Format::Csv, "a,b\nuserId,message\n", 1000);
        assert!(matches!(got[1].kind, RowKind::Message { .. }));
    }

    #[test]
    fn csv_bad_rows_are_reported_and_reading_goes_on() {
        let long = "x".repeat(500);
        let input = format!("u1,hi, there\nonlyone\n,empty user\nu4,\nu5,{long}\nu6,\"ok\"\n");
        let got = rows(Format::Csv, &input, 200);
        let reasons: Vec<String> = got
            .iter()
            .map(|r| match &r.kind {
                RowKind::Bad { reason, .. } => reason.clone(),
                RowKind::Message { .. } => "ok".into(),
                RowKind::Header => "header".into(),
            })
            .collect();
        assert!(reasons[0].starts_with("has 3 fields"), "{reasons:?}");
        assert!(reasons[1].starts_with("has 1 field;"), "{reasons:?}");
        assert!(reasons[2].contains("userId"), "{reasons:?}");
        assert!(reasons[3].contains("alertMessage"), "{reasons:?}");
        assert!(reasons[4].contains("longer than 200"), "{reasons:?}");
        assert_eq!(reasons[5], "ok");
        assert_eq!(got[5].line, 6);
        match &got[0].kind {
            RowKind::Bad { raw, .. } => assert_eq!(raw, b"u1,hi, there"),
            _ => unreachable!(),
        }
        // Invalid UTF-8 and NUL bytes.
        let got = rows(Format::Csv, "u1,\u{0}x\n", 100);
        assert!(matches!(&got[0].kind, RowKind::Bad { reason, .. } if reason.contains("NUL")));
        let mut r = RowReader::new(&b"u1,\xff\xfe\n"[..], Format::Csv, 0, 1, 100);
        let row = r.next_row().unwrap().unwrap();
        assert!(matches!(&row.kind, RowKind::Bad { reason, .. } if reason.contains("UTF-8")));
    }

    #[test]
    fn jsonl_and_lines() {
        let got = rows(
            Format::Jsonl,
            "{\"userId\":\"a\",\"x\":1}\n[1]\nnot json\n{\"userId\":7}\n",
            100,
        );
        assert_eq!(got[0].kind, msg(r#"{"userId":"a","x":1}"#, Some("a")));
        assert!(matches!(&got[1].kind, RowKind::Bad { reason, .. } if reason.contains("object")));
        assert!(matches!(&got[2].kind, RowKind::Bad { reason, .. } if reason.contains("JSON")));
        assert_eq!(got[3].kind, msg(r#"{"userId":7}"#, Some("7")));
        let long = "y".repeat(300);
        let got = rows(Format::Lines, &format!("one\r\n\n{long}\nthree"), 100);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].kind, msg("one", None));
        assert!(matches!(&got[1].kind, RowKind::Bad { raw, .. } if raw.len() == 301));
        assert_eq!((got[1].line, got[2].line), (3, 4));
        assert_eq!(got[2].kind, msg("three", None));
    }

    #[test]
    fn resumes_at_a_row_boundary() {
        let input = "a,1\nb,\"2\n2\"\nc,3\n";
        let all = rows(Format::Csv, input, 100);
        let cut = &all[1];
        let mut r = RowReader::new(
            &input.as_bytes()[cut.end as usize..],
            Format::Csv,
            cut.end,
            all[2].line,
            100,
        );
        let next = r.next_row().unwrap().unwrap();
        assert_eq!(next, rows(Format::Csv, input, 100).remove(2));
        assert!(r.next_row().unwrap().is_none());
    }
}
