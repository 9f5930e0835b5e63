//! Admission control against the transcode budget, against the real binary:
//! a publish over `overload.transcode_budget` is admitted passthrough-only
//! or refused, as `overload.over_budget` says. Small sources: the point is
//! the decision, not the load.

mod common;

use std::time::Duration;

use common::playlist::tag_lines;
use common::{wait_until_live, Server, Source};

fn video_variants(master: &str) -> usize {
    tag_lines(master, "#EXT-X-STREAM-INF").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_budget_a_publish_is_admitted_passthrough_only() {
    let server = Server::start_with(&[("PULSE_OVERLOAD_TRANSCODE_BUDGET", "1")]);
    let first = server.create_stream("first", Some("small"));
    let second = server.create_stream("second", Some("small"));
    let _a = Source::small().publish(&first.publish_url());
    let master = wait_until_live(&server, &first, Duration::from_secs(30)).await;
    assert_eq!(
        video_variants(&master),
        3,
        "within the budget, the whole ladder:\n{master}"
    );

    let _b = Source::small().publish(&second.publish_url());
    let master = wait_until_live(&server, &second, Duration::from_secs(30)).await;
    assert_eq!(video_variants(&master), 1, "over the budget, the copy only:\n{master}");
    assert!(
        server.log().contains("admitted passthrough-only"),
        "the operator is told:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_budget_a_publish_is_refused_when_the_operator_says_so() {
    let server = Server::start_with(&[
        ("PULSE_OVERLOAD_TRANSCODE_BUDGET", "1"),
        ("PULSE_OVERLOAD_OVER_BUDGET", "refuse"),
    ]);
    let first = server.create_stream("first", Some("small"));
    let second = server.create_stream("second", Some("small"));
    let _a = Source::small().publish(&first.publish_url());
    wait_until_live(&server, &first, Duration::from_secs(30)).await;

    let mut refused = Source::small().publish(&second.publish_url());
    let status = refused
        .wait_timeout(Duration::from_secs(20))
        .expect("the refused publisher gives up");
    assert!(!status.success());
    let log = server.log();
    assert!(
        log.contains("transcode_budget") && log.contains("transcoding budget (1 ladders)"),
        "{log}"
    );
    // A passthrough profile costs no encode: it is still admitted.
    let copy = server.create_stream("copy", Some("passthrough"));
    let _c = Source::small().publish(&copy.publish_url());
    wait_until_live(&server, &copy, Duration::from_secs(30)).await;
}
