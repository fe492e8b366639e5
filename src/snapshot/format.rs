//! The snapshot file format, version 1 (docs/SNAPSHOT.md has the byte-level description):
//! a header, one run of blocks per store shard, a trailer with the run table, and a fixed tail.
//!
//! Pure encoding and decoding of byte slices: no I/O, so the loader's parsing can be fuzzed on
//! its own. Every length read from a file is checked against the bytes actually present
//! before anything is allocated from it.

use std::ops::Range;

use crate::store::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// First bytes of every snapshot: a high-bit byte (catches 7-bit transfers), the name, CR LF
/// (catches newline conversion) and ^Z, as PNG does.
pub const MAGIC: [u8; 8] = [0x89, b'K', b'V', b'S', b'N', b'\r', b'\n', 0x1A];
/// Last bytes of a complete snapshot: a file without them was cut short.
pub const END_MAGIC: [u8; 8] = *b"KVSNEND\n";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the header's variable part: magic, version, header length.
pub const HEADER_PREFIX: usize = 16;
/// Largest header a loader accepts (the version string is at most 255 bytes).
pub const MAX_HEADER: usize = 512;
/// Size of a block header.
pub const BLOCK_HEADER: usize = 20;
/// Size of the fixed tail: trailer offset (u64), trailer checksum (u32), end magic.
pub const TAIL: usize = 20;
/// Bytes per run in the trailer's run table.
const RUN_ENTRY: usize = 32;
/// Most runs a trailer may list (the store's shard limit).
pub const MAX_RUNS: usize = 1 << 16;
/// Block payload stored as is.
pub const CODEC_RAW: u8 = 0;
/// Block payload compressed with LZ4 (block format, no frame).
pub const CODEC_LZ4: u8 = 1;
/// Largest LZ4 expansion (input byte to output bytes): a decoded size beyond this times the
/// stored size is a lie, refused before allocating for it.
const LZ4_MAX_RATIO: usize = 256;

const TAG_EXPIRY: u8 = 1;
const TAG_FLAGS: u8 = 2;
const TAG_CAS: u8 = 4;

/// What is wrong with a snapshot's bytes, worded for the one log line that reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The first bytes are not our magic.
    #[error("not a kvcache snapshot (unrecognised header)")]
    Foreign,
    /// A snapshot of another format version.
    #[error("format version {found}; this kvcache ({}) reads version {VERSION}", env!("CARGO_PKG_VERSION"))]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The file ends early: `what` was not complete.
    #[error("truncated: {what} (file is {len} bytes)")]
    Truncated {
        /// What was missing.
        what: &'static str,
        /// File length.
        len: u64,
    },
    /// A checksum did not match.
    #[error("corrupted: checksum mismatch in the {what} at byte {offset}")]
    Checksum {
        /// Header, trailer or block.
        what: &'static str,
        /// Where the checked part starts.
        offset: u64,
    },
    /// Checksummed bytes that still make no sense (a bug or a forged file).
    #[error("corrupted: {what} at byte {offset}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
        /// Where.
        offset: u64,
    },
}

fn malformed(what: &'static str, offset: u64) -> FormatError {
    FormatError::Malformed { what, offset }
}

/// The header's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header length in bytes, checksum included: the first block starts here.
    pub len: usize,
    /// When the save began, unix ms.
    pub created_ms: u64,
    /// Runs in the file (the saving store's shard count).
    pub runs: u32,
    /// `CARGO_PKG_VERSION` of the kvcache that wrote the file.
    pub writer: String,
}

/// Appends a header.
pub fn encode_header(created_ms: u64, runs: u32, out: &mut Vec<u8>) {
    let start = out.len();
    let writer = env!("CARGO_PKG_VERSION").as_bytes();
    let writer = &writer[..writer.len().min(255)];
    let len = HEADER_PREFIX + 8 + 4 + 4 + 1 + writer.len() + 4;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&created_ms.to_le_bytes());
    out.extend_from_slice(&runs.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // flags, none defined
    out.push(writer.len() as u8);
    out.extend_from_slice(writer);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, len);
}

/// Parses the header from the first bytes of a file (`file_len` is the whole file's length).
pub fn decode_header(buf: &[u8], file_len: u64) -> Result<Header, FormatError> {
    let truncated = |what| FormatError::Truncated {
        what,
        len: file_len,
    };
    if buf.len() < MAGIC.len() {
        // Too short even for the magic: whatever it is, it is not a snapshot we wrote.
        return Err(if MAGIC.starts_with(buf) && !buf.is_empty() {
            truncated("header")
        } else {
            FormatError::Foreign
        });
    }
    if buf[..8] != MAGIC {
        return Err(FormatError::Foreign);
    }
    if buf.len() < HEADER_PREFIX {
        return Err(truncated("header"));
    }
    let version = u32_at(buf, 8);
    if version != VERSION {
        return Err(FormatError::Version { found: version });
    }
    let len = u32_at(buf, 12) as usize;
    if !(HEADER_PREFIX + 21..=MAX_HEADER).contains(&len) {
        return Err(malformed("header length", 12));
    }
    if buf.len() < len {
        return Err(truncated("header"));
    }
    let crc = u32_at(buf, len - 4);
    if crc32c::crc32c(&buf[..len - 4]) != crc {
        return Err(FormatError::Checksum {
            what: "header",
            offset: 0,
        });
    }
    let created_ms = u64_at(buf, 16);
    let runs = u32_at(buf, 24);
    let wlen = buf[32] as usize;
    if 33 + wlen + 4 != len {
        return Err(malformed("header length", 12));
    }
    if runs as usize > MAX_RUNS {
        return Err(malformed("run count", 24));
    }
    Ok(Header {
        len,
        created_ms,
        runs,
        writer: String::from_utf8_lossy(&buf[33..33 + wlen]).into_owned(),
    })
}

/// Where one shard's run of blocks lies and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunInfo {
    /// Offset of its first block.
    pub offset: u64,
    /// Offset just past its last block.
    pub end: u64,
    /// Records in it.
    pub records: u64,
    /// Blocks in it.
    pub blocks: u64,
}

/// The trailer: the run table and the totals a loader checks at the end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trailer {
    /// One entry per run, in file order.
    pub runs: Vec<RunInfo>,
    /// Records in the file.
    pub records: u64,
    /// Blocks in the file.
    pub blocks: u64,
    /// The saving store's recency clock when the save ended: a record's age is this minus its
    /// `last_used`.
    pub ref_ticks: u64,
    /// When the save ended, unix ms.
    pub finished_ms: u64,
}

/// Appends the trailer body and the tail; `at` is the offset the body starts at in the file.
pub fn encode_trailer(t: &Trailer, at: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(t.runs.len() as u32).to_le_bytes());
    for r in &t.runs {
        for v in [r.offset, r.end, r.records, r.blocks] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for v in [t.records, t.blocks, t.ref_ticks, t.finished_ms] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
}

/// Reads the tail (the last [`TAIL`] bytes): the trailer's offset and checksum.
pub fn decode_tail(
    tail: &[u8],
    header_len: usize,
    file_len: u64,
) -> Result<(u64, u32), FormatError> {
    let truncated = FormatError::Truncated {
        what: "no end marker (the save did not finish, or the file was cut)",
        len: file_len,
    };
    if tail.len() < TAIL || file_len < (header_len + TAIL) as u64 || tail[12..20] != END_MAGIC {
        return Err(truncated);
    }
    let at = u64_at(tail, 0);
    let crc = u32_at(tail, 8);
    let body_end = file_len - TAIL as u64;
    if at < header_len as u64 || at > body_end {
        return Err(malformed("trailer offset", body_end));
    }
    if body_end - at > (4 + MAX_RUNS * RUN_ENTRY + 32) as u64 {
        return Err(malformed("trailer length", body_end));
    }
    Ok((at, crc))
}

/// Parses and checks the trailer body (the bytes from its offset to the tail) against the
/// header and the file's layout.
pub fn decode_trailer(
    body: &[u8],
    at: u64,
    crc: u32,
    header: &Header,
) -> Result<Trailer, FormatError> {
    if crc32c::crc32c(body) != crc {
        return Err(FormatError::Checksum {
            what: "trailer",
            offset: at,
        });
    }
    let bad = |what| malformed(what, at);
    if body.len() < 4 {
        return Err(bad("trailer length"));
    }
    let n = u32_at(body, 0) as usize;
    if n != header.runs as usize || body.len() != 4 + n * RUN_ENTRY + 32 {
        return Err(bad("run table size"));
    }
    let mut runs = Vec::with_capacity(n);
    let mut expect = header.len as u64;
    let (mut records, mut blocks) = (0u64, 0u64);
    for i in 0..n {
        let p = 4 + i * RUN_ENTRY;
        let r = RunInfo {
            offset: u64_at(body, p),
            end: u64_at(body, p + 8),
            records: u64_at(body, p + 16),
            blocks: u64_at(body, p + 24),
        };
        // Runs are contiguous, in order, and fill the space between header and trailer.
        if r.offset != expect || r.end < r.offset || r.end > at {
            return Err(bad("run table offsets"));
        }
        let span = r.end - r.offset;
        if span < r.blocks.saturating_mul(BLOCK_HEADER as u64)
            || (r.blocks == 0) != (r.records == 0)
            || r.records > span
        {
            return Err(bad("run table counts"));
        }
        records += r.records;
        blocks += r.blocks;
        expect = r.end;
        runs.push(r);
    }
    if expect != at {
        return Err(bad("run table offsets"));
    }
    let p = 4 + n * RUN_ENTRY;
    let t = Trailer {
        runs,
        records: u64_at(body, p),
        blocks: u64_at(body, p + 8),
        ref_ticks: u64_at(body, p + 16),
        finished_ms: u64_at(body, p + 24),
    };
    if t.records != records || t.blocks != blocks {
        return Err(bad("trailer totals"));
    }
    Ok(t)
}

/// A block's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Records in the block.
    pub records: u32,
    /// Payload size once decoded.
    pub raw_len: u32,
    /// Payload size in the file.
    pub stored_len: u32,
    /// [`CODEC_RAW`] or [`CODEC_LZ4`].
    pub codec: u8,
    /// crc32c of the header's first 16 bytes and the stored payload.
    pub crc: u32,
}

/// Appends a block: header, then `payload` (already compressed if `codec` says so).
pub fn encode_block(records: u32, raw_len: u32, codec: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut h = [0u8; BLOCK_HEADER];
    h[0..4].copy_from_slice(&records.to_le_bytes());
    h[4..8].copy_from_slice(&raw_len.to_le_bytes());
    h[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[12] = codec;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..16]), payload);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// Parses a block header found at `offset` of a run whose blocks end at `run_end`.
pub fn decode_block_header(
    h: &[u8],
    offset: u64,
    run_end: u64,
) -> Result<BlockHeader, FormatError> {
    let bad = |what| malformed(what, offset);
    if h.len() < BLOCK_HEADER {
        return Err(bad("block header"));
    }
    let b = BlockHeader {
        records: u32_at(h, 0),
        raw_len: u32_at(h, 4),
        stored_len: u32_at(h, 8),
        codec: h[12],
        crc: u32_at(h, 16),
    };
    if h[13..16] != [0, 0, 0] || b.codec > CODEC_LZ4 {
        return Err(bad("block header"));
    }
    if offset + BLOCK_HEADER as u64 + b.stored_len as u64 > run_end {
        return Err(bad("block length past the end of its run"));
    }
    let (raw, stored) = (b.raw_len as usize, b.stored_len as usize);
    let plausible = match b.codec {
        CODEC_RAW => raw == stored,
        // The writer keeps a compressed payload only when it is smaller.
        _ => raw > stored && raw <= stored.saturating_mul(LZ4_MAX_RATIO),
    };
    // Every record takes at least 4 bytes (tag, two lengths, recency).
    if !plausible || b.records == 0 || (b.records as usize).saturating_mul(4) > raw {
        return Err(bad("block sizes"));
    }
    Ok(b)
}

/// Checks a block's payload against its header's checksum and decodes it into `raw`
/// (replacing its contents).
pub fn open_block(
    h: &[u8],
    b: &BlockHeader,
    payload: &[u8],
    offset: u64,
    raw: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..16]), payload);
    if crc != b.crc {
        return Err(FormatError::Checksum {
            what: "block",
            offset,
        });
    }
    raw.clear();
    match b.codec {
        CODEC_RAW => raw.extend_from_slice(payload),
        _ => {
            raw.resize(b.raw_len as usize, 0);
            match lz4_flex::block::decompress_into(payload, raw) {
                Ok(n) if n == b.raw_len as usize => {}
                _ => return Err(malformed("block payload does not decompress", offset)),
            }
        }
    }
    Ok(())
}

/// One record as the writer sees it.
#[derive(Debug, Clone, Copy)]
pub struct RecordIn<'a> {
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
    /// Deadline, unix ms.
    pub expires_at: Option<u64>,
    /// memcached flags.
    pub flags: u32,
    /// memcached CAS unique (0 = none).
    pub cas: u64,
    /// Recency ticks of its last use.
    pub last_used: u64,
}

/// One decoded record: key and value as ranges of the block's decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOut {
    /// Key bytes.
    pub key: Range<usize>,
    /// Value bytes.
    pub value: Range<usize>,
    /// Deadline, unix ms.
    pub expires_at: Option<u64>,
    /// memcached flags.
    pub flags: u32,
    /// memcached CAS unique.
    pub cas: u64,
    /// Recency ticks of its last use (in the saving process's clock).
    pub last_used: u64,
}

/// Delta state of a block: recency and deadlines are stored as differences from the previous
/// record's (records are in LRU order, so both are close to their neighbours'). It starts
/// from zero in every block, so each block decodes on its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deltas {
    last_used: u64,
    expires_at: u64,
}

/// The largest encoding of a record: what a block writer must have room for.
pub fn max_record_len(key: usize, value: usize) -> usize {
    1 + 10 * 5 + key + value
}

/// Appends one record.
pub fn encode_record(r: &RecordIn<'_>, d: &mut Deltas, out: &mut Vec<u8>) {
    let mut tag = 0;
    if r.expires_at.is_some() {
        tag |= TAG_EXPIRY;
    }
    if r.flags != 0 {
        tag |= TAG_FLAGS;
    }
    if r.cas != 0 {
        tag |= TAG_CAS;
    }
    out.push(tag);
    put_varint(out, r.key.len() as u64);
    put_varint(out, r.value.len() as u64);
    put_varint(out, zigzag(r.last_used.wrapping_sub(d.last_used) as i64));
    d.last_used = r.last_used;
    if let Some(at) = r.expires_at {
        put_varint(out, zigzag(at.wrapping_sub(d.expires_at) as i64));
        d.expires_at = at;
    }
    if r.flags != 0 {
        put_varint(out, r.flags as u64);
    }
    if r.cas != 0 {
        put_varint(out, r.cas);
    }
    out.extend_from_slice(r.key);
    out.extend_from_slice(r.value);
}

/// Decodes the record at `*pos` of a block's decoded bytes and moves `*pos` past it.
pub fn decode_record(
    buf: &[u8],
    pos: &mut usize,
    d: &mut Deltas,
) -> Result<RecordOut, &'static str> {
    let tag = *buf.get(*pos).ok_or("record past the end of its block")?;
    *pos += 1;
    if tag & !(TAG_EXPIRY | TAG_FLAGS | TAG_CAS) != 0 {
        return Err("unknown record flags");
    }
    let key_len = get_varint(buf, pos)?;
    let value_len = get_varint(buf, pos)?;
    if key_len > MAX_KEY_LEN as u64 {
        return Err("key length over the limit");
    }
    if value_len > MAX_VALUE_LEN as u64 {
        return Err("value length over the limit");
    }
    d.last_used = d
        .last_used
        .wrapping_add(unzigzag(get_varint(buf, pos)?) as u64);
    let mut r = RecordOut {
        key: 0..0,
        value: 0..0,
        expires_at: None,
        flags: 0,
        cas: 0,
        last_used: d.last_used,
    };
    if tag & TAG_EXPIRY != 0 {
        d.expires_at = d
            .expires_at
            .wrapping_add(unzigzag(get_varint(buf, pos)?) as u64);
        r.expires_at = Some(d.expires_at);
    }
    if tag & TAG_FLAGS != 0 {
        r.flags = u32::try_from(get_varint(buf, pos)?).map_err(|_| "flags over 32 bits")?;
    }
    if tag & TAG_CAS != 0 {
        r.cas = get_varint(buf, pos)?;
    }
    let (k, v) = (key_len as usize, value_len as usize);
    if buf.len() - *pos < k + v {
        return Err("record past the end of its block");
    }
    r.key = *pos..*pos + k;
    r.value = *pos + k..*pos + k + v;
    *pos += k + v;
    Ok(r)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("record past the end of its block")?;
        *pos += 1;
        v |= ((b & 0x7F) as u64) << shift;
        if b < 0x80 {
            if shift == 63 && b > 1 {
                return Err("number over 64 bits");
            }
            return Ok(v);
        }
    }
    Err("number over 64 bits")
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn u32_at(b: &[u8], p: usize) -> u32 {
    u32::from_le_bytes(b[p..p + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], p: usize) -> u64 {
    u64::from_le_bytes(b[p..p + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut pos = 0;
            assert_eq!(get_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        // Eleven continuation bytes, or a tenth byte above 1, do not fit in 64 bits.
        assert!(get_varint(&[0xFF; 11], &mut 0).is_err());
        assert!(
            get_varint(
                &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 2],
                &mut 0
            )
            .is_err()
        );
    }

    #[test]
    fn records_round_trip_with_deltas() {
        let recs = [
            RecordIn {
                key: b"a",
                value: b"1",
                expires_at: None,
                flags: 0,
                cas: 0,
                last_used: 1 << 40,
            },
            RecordIn {
                key: b"bb",
                value: b"",
                expires_at: Some(1_700_000_000_000),
                flags: 7,
                cas: 99 << 16,
                last_used: (1 << 40) + 5,
            },
            RecordIn {
                key: b"",
                value: &[0xFF; 300],
                expires_at: Some(1_600_000_000_000),
                flags: 0,
                cas: 0,
                last_used: 3,
            },
        ];
        let mut buf = Vec::new();
        let mut d = Deltas::default();
        for r in &recs {
            encode_record(r, &mut d, &mut buf);
        }
        let (mut pos, mut d) = (0, Deltas::default());
        for r in &recs {
            let o = decode_record(&buf, &mut pos, &mut d).unwrap();
            assert_eq!(&buf[o.key.clone()], r.key);
            assert_eq!(&buf[o.value.clone()], r.value);
            assert_eq!(
                (o.expires_at, o.flags, o.cas, o.last_used),
                (r.expires_at, r.flags, r.cas, r.last_used)
            );
        }
        assert_eq!(pos, buf.len());
        assert!(decode_record(&buf, &mut pos, &mut d).is_err());
    }

    #[test]
    fn header_and_trailer_round_trip_and_refuse_damage() {
        let mut file = Vec::new();
        encode_header(1234, 2, &mut file);
        let h = decode_header(&file, 1000).unwrap();
        assert_eq!((h.len, h.created_ms, h.runs), (file.len(), 1234, 2));
        assert_eq!(h.writer, env!("CARGO_PKG_VERSION"));
        let mut bad = file.clone();
        bad[20] ^= 1;
        assert!(matches!(
            decode_header(&bad, 1000),
            Err(FormatError::Checksum { .. })
        ));
        bad = file.clone();
        bad[8] = 2;
        assert_eq!(
            decode_header(&bad, 1000),
            Err(FormatError::Version { found: 2 })
        );
        assert_eq!(
            decode_header(b"*1\r\n$4\r\nPING\r\n", 14),
            Err(FormatError::Foreign)
        );
        assert_eq!(decode_header(b"", 0), Err(FormatError::Foreign));
        assert!(matches!(
            decode_header(&file[..10], 10),
            Err(FormatError::Truncated { .. })
        ));

        let body_at = h.len as u64;
        let t = Trailer {
            runs: vec![
                RunInfo {
                    offset: body_at,
                    end: body_at,
                    records: 0,
                    blocks: 0
                };
                2
            ],
            records: 0,
            blocks: 0,
            ref_ticks: 77,
            finished_ms: 1300,
        };
        encode_trailer(&t, body_at, &mut file);
        let len = file.len() as u64;
        let (at, crc) = decode_tail(&file[file.len() - TAIL..], h.len, len).unwrap();
        let body = &file[at as usize..file.len() - TAIL];
        assert_eq!(decode_trailer(body, at, crc, &h).unwrap(), t);
        let mut cut = file.clone();
        cut.pop();
        assert!(matches!(
            decode_tail(&cut[cut.len() - TAIL..], h.len, len - 1),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn blocks_check_their_payload() {
        let payload = b"0123456789abcdef".repeat(8);
        let mut out = Vec::new();
        encode_block(3, payload.len() as u32, CODEC_RAW, &payload, &mut out);
        let b = decode_block_header(&out, 0, out.len() as u64).unwrap();
        let mut raw = Vec::new();
        open_block(&out, &b, &out[BLOCK_HEADER..], 0, &mut raw).unwrap();
        assert_eq!(raw, payload);
        let mut bad = out.clone();
        bad[40] ^= 0x10;
        assert!(matches!(
            open_block(&bad, &b, &bad[BLOCK_HEADER..], 0, &mut raw),
            Err(FormatError::Checksum { .. })
        ));
        assert!(decode_block_header(&out, 0, out.len() as u64 - 1).is_err());
        let packed = lz4_flex::block::compress(&payload);
        let mut out = Vec::new();
        encode_block(3, payload.len() as u32, CODEC_LZ4, &packed, &mut out);
        let b = decode_block_header(&out, 0, out.len() as u64).unwrap();
        open_block(&out, &b, &out[BLOCK_HEADER..], 0, &mut raw).unwrap();
        assert_eq!(raw, payload);
    }
}
