//! Entry point for the fuzz harnesses (`fuzz/`, `make fuzz`) and for the
//! replay of their saved corpus (`tests/fuzz_corpus.rs`). It takes any bytes
//! and must never panic. Not an API; hidden from the docs.

use super::blocking::{plan, PlaylistRequest};
use super::rendition::Edge;
use crate::delivery::PlaylistQuery;

/// Part targets the directives are checked against: sub-second (the
/// advance part limit grows), the usual LL-HLS one, and one second or more.
const PART_TARGETS_NS: [u64; 3] = [1, 333_333_333, 1_000_000_000];

/// A playlist URL's query string, then its delivery directives (`_HLS_msn`,
/// `_HLS_part`, `_HLS_skip`) planned against a few edges: before anything
/// was published, mid-stream, at the top of the sequence-number range, and
/// after ENDLIST.
pub fn playlist_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = PlaylistQuery::parse(text) else {
        return;
    };
    let request = PlaylistRequest {
        msn: query.msn,
        part: query.part,
        skip: query.skip,
    };
    let edges = [
        (Edge::default(), 0),
        (edge(Some((41, 3)), Some(40), false), 42),
        (edge(Some((u64::MAX, u64::MAX)), Some(u64::MAX - 1), false), u64::MAX),
        (edge(Some((7, 0)), Some(7), true), 8),
    ];
    for (edge, next_msn) in &edges {
        for part_target_ns in PART_TARGETS_NS {
            if let Ok(Some(target)) = plan(&request, edge, *next_msn, part_target_ns) {
                let _ = target.reached(edge);
            }
        }
    }
}

fn edge(last_part: Option<(u64, u64)>, last_complete: Option<u64>, ended: bool) -> Edge {
    Edge {
        last_part,
        last_complete,
        ended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_inputs_return() {
        for input in [
            &b""[..],
            b"_HLS_msn=18446744073709551615&_HLS_part=18446744073709551615",
            b"%",
            &[0xff],
        ] {
            playlist_query(input);
        }
    }
}
