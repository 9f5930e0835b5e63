//! Blocking playlist reload (`_HLS_msn` / `_HLS_part`, RFC 8216bis §6.2.5.2)
//! and the wait for preload-hinted parts. Waiters sleep on the rendition's
//! [`Edge`] watch channel; nothing polls.

use std::time::Duration;

use tokio::sync::watch;

use super::error::HlsError;
use super::rendition::Edge;

/// `_HLS_skip`: `YES` skips old segments, `v2` also date ranges (we have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipRequest {
    Yes,
    V2,
}

/// The delivery directives of a media playlist request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaylistRequest {
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: Option<SkipRequest>,
}

/// What a held request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A plain request before anything was published.
    FirstPart,
    /// `_HLS_msn=M`: segment M complete.
    Segment(u64),
    /// `_HLS_msn=M&_HLS_part=N`, or the hinted part N of M. A part past the
    /// last part of M is reached by part 0 of M+1, which the lexicographic
    /// comparison covers: any part of a later segment means M is closed.
    Part(u64, u64),
}

impl Target {
    pub(crate) fn reached(self, edge: &Edge) -> bool {
        match self {
            Target::FirstPart => edge.last_part.is_some(),
            Target::Segment(msn) => edge.last_complete.is_some_and(|c| c >= msn),
            Target::Part(msn, part) => edge.last_part.is_some_and(|last| last >= (msn, part)),
        }
    }
}

/// Spec: 3 / PART-TARGET when PART-TARGET < 1 s, else 3.
pub(crate) fn advance_part_limit(part_target_ns: u64) -> u64 {
    if part_target_ns < 1_000_000_000 {
        (3_000_000_000u64).div_ceil(part_target_ns.max(1))
    } else {
        3
    }
}

/// Validates the directives against the current edge and says what to wait
/// for, if anything. `next_msn` is the sequence number the next segment gets
/// (the reference point before anything was published).
pub(crate) fn plan(
    req: &PlaylistRequest,
    edge: &Edge,
    next_msn: u64,
    part_target_ns: u64,
) -> Result<Option<Target>, HlsError> {
    let msn = match (req.msn, req.part) {
        (None, Some(_)) => return Err(HlsError::BadRequest("_HLS_part requires _HLS_msn".into())),
        (None, None) => {
            return Ok(if edge.last_part.is_none() && !edge.ended {
                Some(Target::FirstPart)
            } else {
                None
            });
        }
        (Some(msn), _) => msn,
    };
    if edge.ended {
        return Ok(None);
    }
    let (last_msn, last_part) = match edge.last_part {
        Some(last) => (last.0, Some(last.1)),
        None => (next_msn, None),
    };
    if msn > last_msn.saturating_add(2) {
        return Err(HlsError::BadRequest(format!(
            "_HLS_msn={msn} is more than two segments past the last ({last_msn})"
        )));
    }
    let Some(part) = req.part else {
        return Ok(Some(Target::Segment(msn)));
    };
    let limit = advance_part_limit(part_target_ns);
    let too_far = match last_part {
        Some(last_part) if msn == last_msn => part > last_part.saturating_add(limit),
        _ if msn >= last_msn => part > limit,
        _ => false,
    };
    if too_far {
        return Err(HlsError::BadRequest(format!(
            "_HLS_part={part} of msn {msn} is beyond the advance part limit ({limit})"
        )));
    }
    Ok(Some(Target::Part(msn, part)))
}

/// Notes the instant a rendition's edge moves, just before its waiters are
/// woken: `unix_us` is the wall clock, so a client on the same machine can
/// measure how long after the publish its blocked request was answered
/// (bench/playlist.py). Debug level with its own target, so it can be turned
/// on alone (`RUST_LOG=info,pulse_edge::hls::blocking=debug`); the fields are
/// not computed when it is off.
pub(crate) fn edge_published(rendition: &str, edge: &Edge) {
    tracing::debug!(
        rendition,
        msn = edge.last_part.map(|p| p.0),
        part = edge.last_part.map(|p| p.1),
        complete = edge.last_complete,
        ended = edge.ended,
        unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        "edge published"
    );
}

/// Holds until `target` is reached or the stream ended; `Unavailable` after
/// `timeout`, `NotFound` if the rendition went away meanwhile.
pub(crate) async fn wait(
    mut edge: watch::Receiver<Edge>,
    target: Target,
    timeout: Duration,
    what: &str,
) -> Result<(), HlsError> {
    match tokio::time::timeout(timeout, edge.wait_for(|e| e.ended || target.reached(e))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(HlsError::NotFound(format!("{what}: rendition removed while waiting"))),
        Err(_) => Err(HlsError::Unavailable(format!(
            "{what}: {target:?} not published within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT: u64 = 200_000_000;

    fn edge(last: Option<(u64, u64)>, complete: Option<u64>) -> Edge {
        Edge {
            last_part: last,
            last_complete: complete,
            ended: false,
        }
    }

    fn req(msn: Option<u64>, part: Option<u64>) -> PlaylistRequest {
        PlaylistRequest { msn, part, skip: None }
    }

    #[test]
    fn rejects_what_the_spec_rejects_at_once() {
        let e = edge(Some((10, 3)), Some(9));
        assert!(matches!(
            plan(&req(None, Some(1)), &e, 11, PT),
            Err(HlsError::BadRequest(_))
        ));
        assert!(matches!(
            plan(&req(Some(13), None), &e, 11, PT),
            Err(HlsError::BadRequest(_))
        ));
        assert_eq!(
            plan(&req(Some(12), None), &e, 11, PT).expect("ok"),
            Some(Target::Segment(12))
        );
        assert_eq!(advance_part_limit(PT), 15);
        assert_eq!(advance_part_limit(1_500_000_000), 3);
        assert!(matches!(
            plan(&req(Some(10), Some(19)), &e, 11, PT),
            Err(HlsError::BadRequest(_))
        ));
        assert_eq!(
            plan(&req(Some(10), Some(18)), &e, 11, PT).expect("ok"),
            Some(Target::Part(10, 18))
        );
        assert!(matches!(
            plan(&req(Some(11), Some(16)), &e, 11, PT),
            Err(HlsError::BadRequest(_))
        ));
    }

    #[test]
    fn ended_streams_ignore_directives() {
        let e = Edge {
            last_part: Some((4, 1)),
            last_complete: Some(4),
            ended: true,
        };
        assert_eq!(plan(&req(Some(6), Some(2)), &e, 5, PT).expect("ok"), None);
    }

    #[test]
    fn a_part_past_the_end_of_a_segment_is_part_zero_of_the_next() {
        let target = Target::Part(7, 9);
        assert!(!target.reached(&edge(Some((7, 4)), Some(6))));
        assert!(target.reached(&edge(Some((8, 0)), Some(7))));
        assert!(Target::Segment(7).reached(&edge(Some((8, 0)), Some(7))));
        assert!(!Target::Segment(8).reached(&edge(Some((8, 0)), Some(7))));
    }
}
