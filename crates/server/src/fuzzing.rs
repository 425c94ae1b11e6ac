//! Entry points of the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`): each takes
//! arbitrary bytes, drives one of sluice's own parsers with them and checks what must hold
//! whatever the input. None may panic, hang or allocate without bound. The storage record
//! decoder's target lives in `fuzz/` itself: it needs only `sluice-engine`.

use std::io::Cursor;

use crate::ingest::parse::{Format, RowKind, RowReader};

/// SQS actions the JSON protocol's target header is chosen from.
const SQS_ACTIONS: [&str; 8] = [
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
    "CreateQueue",
    "SetQueueAttributes",
    "TagQueue",
];

/// The SQS decoders: byte 0 picks the protocol (even: AWS JSON 1.0 with an action from
/// [`SQS_ACTIONS`]; odd: the query protocol, the rest split at the first newline into the
/// URL's query string and the form body).
pub fn sqs_request(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        let action = SQS_ACTIONS[(pick as usize / 2) % SQS_ACTIONS.len()];
        crate::api::sqs::fuzz_request(Some(&format!("AmazonSQS.{action}")), "", rest);
    } else {
        let (query, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        crate::api::sqs::fuzz_request(None, &String::from_utf8_lossy(query), body);
    }
}

/// The ingestion row readers: byte 0 picks the format and the row limit; the rest is the file.
/// Checked: rows end in increasing order inside the file, no message exceeds the limit, and
/// resuming at any row's checkpoint (its end offset and the next line) reads exactly the rows
/// that followed it, which is what a restart after a crash relies on.
pub fn csv_rows(data: &[u8]) {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let format = [Format::Csv, Format::Jsonl, Format::Lines][pick as usize % 3];
    let max_row = 8 + (pick as usize / 3) % 80;
    let all = read_all(file, format, 0, 1, max_row);
    let mut prev = 0;
    for (row, _) in &all {
        assert!(
            row.end > prev && row.end <= file.len() as u64,
            "row ends move forward"
        );
        prev = row.end;
        if let RowKind::Message { body, .. } = &row.kind {
            assert!(body.len() <= max_row + 2, "a message within the row limit");
        }
    }
    if all.is_empty() {
        return;
    }
    let k = (pick as usize) % all.len();
    let (at, next_line) = (all[k].0.end, all[k].1);
    let resumed = read_all(&file[at as usize..], format, at, next_line, max_row);
    let expected: Vec<_> = all[k + 1..].iter().map(|(r, _)| r).collect();
    let got: Vec<_> = resumed.iter().map(|(r, _)| r).collect();
    assert_eq!(
        got, expected,
        "resuming at a checkpoint reads the same rows"
    );
}

/// Every row of `file` read from `offset`, each with the line the reader stood on after it.
fn read_all(
    file: &[u8],
    format: Format,
    offset: u64,
    line: u64,
    max_row: usize,
) -> Vec<(crate::ingest::parse::Row, u64)> {
    let mut r = RowReader::new(Cursor::new(file), format, offset, line, max_row);
    let mut out = Vec::new();
    while let Some(row) = r.next_row().expect("reading memory cannot fail") {
        out.push((row, r.line()));
        assert!(out.len() <= file.len() + 1, "a row consumes input");
    }
    out
}

/// The miniqueue command reader: the stream is fed in chunks (their sizes taken from byte 0),
/// every command parsed, and a stream of well-formed commands gives the same commands however
/// it is cut.
pub fn miniqueue_commands(data: &[u8]) {
    use crate::api::miniqueue::{parse_command, CommandReader};
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let chunk = 1 + pick as usize % 16;
    let mut cut = CommandReader::default();
    let mut pieces = Vec::new();
    for c in stream.chunks(chunk) {
        pieces.extend(cut.feed(c));
    }
    let mut whole = CommandReader::default();
    let at_once = whole.feed(stream);
    // Garbage may be cut differently (a number at the end of a chunk parses as a whole
    // number), so only streams of well-formed commands must agree.
    let bad = |cs: &[crate::api::miniqueue::Command]| {
        cs.iter()
            .any(|c| matches!(c, crate::api::miniqueue::Command::Bad(_)))
    };
    if !bad(&at_once) && !bad(&pieces) {
        assert_eq!(pieces, at_once, "chunking does not change the commands");
    }
    let _ = parse_command(&String::from_utf8_lossy(stream));
}

/// The plain HTTP/1.1 head parser of the direct way (`direct_h1.rs`): any bytes as a request
/// head. Checked: a head it takes builds a request, its end is seen whichever read brought its
/// last byte, and it is partial when cut short.
pub fn direct_heads(data: &[u8]) {
    crate::direct_h1::fuzz_head(data);
}
