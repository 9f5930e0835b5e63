//! Init segments are compared across publisher sessions: an unchanged init
//! keeps its EXT-X-MAP, so players only see a discontinuity. The muxer stamps
//! the wall clock into `mvhd`/`tkhd`/`mdhd`, which would make every session's
//! init "new"; we zero those stamps (they carry nothing a player uses).

use bytes::{Bytes, BytesMut};

/// Boxes whose children we walk to reach the time-stamped headers.
const CONTAINERS: [&[u8; 4]; 3] = [b"moov", b"trak", b"mdia"];
/// Full boxes that start with version/flags, creation_time, modification_time.
const STAMPED: [&[u8; 4]; 3] = [b"mvhd", b"tkhd", b"mdhd"];

/// Returns `init` with creation/modification times zeroed. Anything it cannot
/// parse is left as it is: this is a normalisation, not a validator.
pub(crate) fn without_timestamps(init: &Bytes) -> Bytes {
    let mut out = BytesMut::from(&init[..]);
    zero_in(&mut out, 0, init.len());
    out.freeze()
}

fn zero_in(buf: &mut [u8], start: usize, end: usize) {
    let mut at = start;
    while at + 8 <= end {
        let Some(size) = box_size(buf, at, end) else { return };
        let kind: [u8; 4] = [buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]];
        let body = at + 8;
        if CONTAINERS.iter().any(|c| **c == kind) {
            zero_in(buf, body, at + size);
        } else if STAMPED.iter().any(|c| **c == kind) {
            let width = if buf.get(body) == Some(&1) { 8 } else { 4 };
            let times = body + 4..body + 4 + 2 * width;
            if times.end <= at + size {
                buf[times].fill(0);
            }
        }
        at += size;
    }
}

/// Size of the box at `at`, if it fits before `end` (64-bit sizes are not
/// used by init segments and end the walk).
fn box_size(buf: &[u8], at: usize, end: usize) -> Option<usize> {
    let raw = buf.get(at..at + 4)?;
    let size = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    (size >= 8 && at + size <= end).then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn init_with_time(t: u8) -> Bytes {
        let mut mvhd = vec![0u8, 0, 0, 0, t, t, t, t, t, t, t, t];
        mvhd.extend_from_slice(&[0, 0, 0x3e, 0x80]);
        let mut mdhd = vec![1u8, 0, 0, 0];
        mdhd.extend_from_slice(&[t; 16]);
        mdhd.extend_from_slice(&[0, 0, 0xbb, 0x80]);
        let trak = boxed(b"trak", &boxed(b"mdia", &boxed(b"mdhd", &mdhd)));
        let mut moov_body = boxed(b"mvhd", &mvhd);
        moov_body.extend(trak);
        let mut out = boxed(b"ftyp", b"cmf2\0\0\0\0");
        out.extend(boxed(b"moov", &moov_body));
        Bytes::from(out)
    }

    #[test]
    fn inits_differing_only_in_stamps_become_equal() {
        let a = without_timestamps(&init_with_time(1));
        let b = without_timestamps(&init_with_time(9));
        assert_eq!(a, b);
        // The timescales (after the stamps) survive.
        assert!(a.windows(4).any(|w| w == [0, 0, 0x3e, 0x80]));
        assert!(a.windows(4).any(|w| w == [0, 0, 0xbb, 0x80]));
        assert_ne!(init_with_time(1), init_with_time(9));
    }

    #[test]
    fn garbage_is_returned_unchanged() {
        for junk in [&b""[..], b"\xff\xff\xff\xffmoov", b"\0\0\0\x10moov\0\0\0\x40mvhd"] {
            let input = Bytes::copy_from_slice(junk);
            assert_eq!(without_timestamps(&input), input);
        }
    }
}
