//! Lifecycle webhooks against the real binary and real receivers on
//! loopback. Signatures are checked by the receiver with the
//! `standardwebhooks` package (not our code); ordering, retries, crash
//! durability, isolation between endpoints and the address policy are
//! checked end to end.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::webhooks::{read_feed, stream_story, test_secret, webhook_env, Receiver, ReceiverOptions};
use common::{wait_until_live, Proc, Server, Source};
use serde_json::{json, Value};

fn short(seconds: u32) -> Source {
    Source {
        video: Some((320, 180)),
        video_kbps: 300,
        seconds: Some(seconds),
        ..Source::small()
    }
}

const LIFECYCLE: [&str; 4] = [
    "stream.connected",
    "stream.active",
    "stream.disconnected",
    "stream.idle",
];

/// The lifecycle types of a story: viewer counts (players checking the
/// stream is live are viewers) interleave, with their own sequence numbers.
fn types(story: &[(String, i64)]) -> Vec<&str> {
    story
        .iter()
        .map(|(t, _)| t.as_str())
        .filter(|t| *t != "viewers.updated")
        .collect()
}

fn assert_in_sequence(story: &[(String, i64)]) {
    let sequences: Vec<i64> = story.iter().map(|(_, s)| *s).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers must arrive in order without gaps: {story:?}"
    );
}

fn ended(stream_id: &str) -> impl Fn(&[Value]) -> bool + '_ {
    move |delivered: &[Value]| {
        delivered
            .iter()
            .any(|e| e["stream_id"] == stream_id && e["type"] == "stream.idle")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_deliver_signed_events_in_sequence_and_the_feed_is_prompt() {
    let server = Server::start_with(&webhook_env("1,2,4"));
    let admin = server.global_admin_token();
    let secret = test_secret();
    let receiver = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        ..Default::default()
    });
    let endpoint = server.add_webhook(&admin, &receiver.url("/hooks"), &secret, &[]).await;

    // The dashboard feed, subscribed before anything happens.
    let feed = server.event_feed(&admin).await;
    let feed_task = tokio::spawn(read_feed(feed, 8));

    let streams = [
        server.create_stream("one", Some("passthrough")),
        server.create_stream("two", Some("passthrough")),
    ];
    let mut publishers: Vec<Proc> = streams.iter().map(|s| short(4).publish(&s.publish_url())).collect();
    for stream in &streams {
        wait_until_live(&server, stream, Duration::from_secs(20)).await;
    }
    for publisher in &mut publishers {
        assert!(
            publisher.wait_timeout(Duration::from_secs(20)).is_some(),
            "ffmpeg did not finish"
        );
    }
    for stream in &streams {
        receiver.wait_for(Duration::from_secs(30), "stream.idle", ended(&stream.id));
    }

    let requests = receiver.requests();
    assert!(
        requests.iter().all(|r| r["verified"] == true),
        "standardwebhooks rejected a signature: {requests:#?}"
    );
    assert!(requests.iter().all(|r| r["webhook_id"] == r["body"]["id"]));
    let delivered = receiver.delivered();
    for stream in &streams {
        let story = stream_story(&delivered, &stream.id);
        assert_eq!(types(&story), LIFECYCLE, "{story:?}");
        assert_in_sequence(&story);
        for event in delivered.iter().filter(|e| e["stream_id"] == stream.id.as_str()) {
            assert_eq!(event["app_id"], "app_default");
            assert!(event["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{event}");
        }
        let connected = delivered
            .iter()
            .find(|e| e["stream_id"] == stream.id.as_str() && e["type"] == "stream.connected")
            .expect("connected");
        assert_eq!(connected["data"]["protocol"], "rtmp");
        assert_eq!(connected["data"]["client_ip"], "127.0.0.1");
        let disconnected = delivered
            .iter()
            .find(|e| e["stream_id"] == stream.id.as_str() && e["type"] == "stream.disconnected")
            .expect("disconnected");
        assert_eq!(disconnected["data"]["reason"], "publisher_left");
        assert_eq!(disconnected["data"]["reconnect_window_secs"], 2);
    }

    // The delivery log agrees: every event delivered once, first time.
    let (status, deliveries) = server
        .api(
            &admin,
            "GET",
            &format!("/apps/app_default/webhooks/{endpoint}/deliveries"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{deliveries}");
    let deliveries: Vec<Value> = deliveries
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["event"]["type"] != "viewers.updated")
        .cloned()
        .collect();
    assert_eq!(deliveries.len(), 8, "{deliveries:#?}");
    assert!(
        deliveries
            .iter()
            .all(|d| d["status"] == "delivered" && d["attempts"] == 1),
        "{deliveries:#?}"
    );
    let (_, view) = server
        .api(&admin, "GET", &format!("/apps/app_default/webhooks/{endpoint}"), None)
        .await;
    assert_eq!(view["backlog"]["pending"], 0, "{view}");

    // Each event reached the dashboard feed within 2 s of its commit.
    let fed = feed_task.await.expect("feed task");
    assert_eq!(fed.len(), 8, "{fed:?}");
    for (event, arrived_ms) in &fed {
        let committed_ms = timestamp_ms(event["timestamp"].as_str().expect("timestamp"));
        assert!(
            arrived_ms - committed_ms < 2000,
            "{} reached the feed {} ms after commit",
            event["type"],
            arrived_ms - committed_ms
        );
    }
}

/// `2026-11-22T12:00:00.123Z` in ms since the epoch.
fn timestamp_ms(text: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", text, "+%s%3N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("date output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_500s_then_everything_arrives_in_order() {
    let server = Server::start_with(&webhook_env("1,2,4,8,16,16,16,16,16,16"));
    let admin = server.global_admin_token();
    let secret = test_secret();
    let receiver = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        fail_for_secs: 60.0,
        status: Some(500),
        ..Default::default()
    });
    let endpoint = server.add_webhook(&admin, &receiver.url("/"), &secret, &[]).await;
    let started = Instant::now();
    let stream = server.create_stream("retried", Some("passthrough"));
    let mut publisher = short(3).publish(&stream.publish_url());
    assert!(publisher.wait_timeout(Duration::from_secs(30)).is_some());
    for _ in 0..3 {
        let (status, body) = server
            .api(
                &admin,
                "POST",
                &format!("/apps/app_default/webhooks/{endpoint}/test"),
                None,
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // While the receiver fails: retried, queued, visible.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (_, view) = server
        .api(&admin, "GET", &format!("/apps/app_default/webhooks/{endpoint}"), None)
        .await;
    assert!(view["backlog"]["pending"].as_i64().unwrap_or(0) >= 4, "{view}");
    let (_, pending) = server
        .api(
            &admin,
            "GET",
            &format!("/apps/app_default/webhooks/{endpoint}/deliveries?status=pending"),
            None,
        )
        .await;
    let retried = pending
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["attempts"].as_i64() > Some(1));
    let retried = retried.unwrap_or_else(|| panic!("no delivery retried yet: {pending:#}"));
    assert_eq!(retried["last_status"], 500);
    assert!(
        retried["last_error"].as_str().is_some_and(|e| e.contains("500")),
        "{retried}"
    );

    let delivered = receiver.wait_for(Duration::from_secs(150), "every event after the outage", |d| {
        ended(&stream.id)(d) && d.iter().filter(|e| e["type"] == "webhook.test").count() >= 3
    });
    assert!(started.elapsed() >= Duration::from_secs(60));
    let story = stream_story(&delivered, &stream.id);
    assert_eq!(types(&story), LIFECYCLE, "each event once, in order: {story:?}");
    assert_in_sequence(&story);
    let tests: Vec<&Value> = delivered.iter().filter(|e| e["type"] == "webhook.test").collect();
    assert_eq!(tests.len(), 3, "test events delivered once each");
    let ids: HashSet<&str> = delivered.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), delivered.len(), "no event delivered twice");
    assert!(receiver.requests().iter().all(|r| r["verified"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_backlog_and_a_live_stream_loses_nothing() {
    // Many short retries: the events must still be pending when the server dies.
    let mut server = Server::start_with(&webhook_env(
        "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
    ));
    let admin = server.global_admin_token();
    let secret = test_secret();
    // The receiver's port, closed for now: every attempt is refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let endpoint = server.add_webhook(&admin, &url, &secret, &[]).await;
    let finished = server.create_stream("finished", Some("passthrough"));
    let mut publisher = short(3).publish(&finished.publish_url());
    assert!(publisher.wait_timeout(Duration::from_secs(30)).is_some());
    let live = server.create_stream("live", Some("passthrough"));
    let _live_publisher = short(120).publish(&live.publish_url());
    wait_until_live(&server, &live, Duration::from_secs(20)).await;
    // Until `finished` is idle and `live` active, all queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let (_, events) = server
            .api(&admin, "GET", "/apps/app_default/events?limit=100", None)
            .await;
        let events = events.as_array().cloned().unwrap_or_default();
        let idle = events
            .iter()
            .any(|e| e["stream_id"] == finished.id.as_str() && e["type"] == "stream.idle");
        let active = events
            .iter()
            .any(|e| e["stream_id"] == live.id.as_str() && e["type"] == "stream.active");
        if idle && active {
            break events;
        }
        assert!(Instant::now() < deadline, "events not recorded: {events:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, view) = server
        .api(&admin, "GET", &format!("/apps/app_default/webhooks/{endpoint}"), None)
        .await;
    // Everything recorded is still queued (viewer counts may have added more since).
    let pending = view["backlog"]["pending"].as_i64().unwrap_or(0);
    assert!(pending >= recorded.len() as i64, "{view}");

    server.kill_9();
    let receiver = Receiver::start(ReceiverOptions {
        port,
        secrets: vec![secret.clone()],
        ..Default::default()
    });
    server.restart();

    let delivered = receiver.wait_for(Duration::from_secs(60), "the backlog and the closed stream", |d| {
        ended(&finished.id)(d) && ended(&live.id)(d)
    });
    let ids: HashSet<&str> = delivered.iter().filter_map(|e| e["id"].as_str()).collect();
    for event in &recorded {
        let id = event["id"].as_str().expect("id");
        assert!(ids.contains(id), "{id} ({}) was lost in the crash", event["type"]);
    }
    assert_eq!(types(&stream_story(&delivered, &finished.id)), LIFECYCLE);
    // The stream the crash cut off is closed by the restart, in sequence.
    let story = stream_story(&delivered, &live.id);
    assert_eq!(types(&story), LIFECYCLE, "{story:?}");
    assert_in_sequence(&story);
    let restart = delivered
        .iter()
        .find(|e| e["stream_id"] == live.id.as_str() && e["type"] == "stream.disconnected")
        .expect("disconnected");
    assert_eq!(restart["data"]["reason"], "server_restart");
    assert!(receiver.requests().iter().all(|r| r["verified"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_hold_up_a_fast_one() {
    let server = Server::start_with(&webhook_env("1,2,4"));
    let admin = server.global_admin_token();
    let secret = test_secret();
    let slow = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        delay_secs: 4.0,
        ..Default::default()
    });
    let fast = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        ..Default::default()
    });
    server.add_webhook(&admin, &slow.url("/"), &secret, &[]).await;
    server.add_webhook(&admin, &fast.url("/"), &secret, &[]).await;
    let stream = server.create_stream("both", Some("passthrough"));
    let mut publisher = short(3).publish(&stream.publish_url());
    assert!(publisher.wait_timeout(Duration::from_secs(30)).is_some());
    let fast_done = fast.wait_for(
        Duration::from_secs(20),
        "stream.idle at the fast endpoint",
        ended(&stream.id),
    );
    assert_eq!(types(&stream_story(&fast_done, &stream.id)), LIFECYCLE);
    // Four events at 4 s each: the slow endpoint is still on its way.
    let slow_so_far = slow.requests().len();
    assert!(slow_so_far < 4, "the slow endpoint already had {slow_so_far} requests");
    let slow_done = slow.wait_for(
        Duration::from_secs(40),
        "stream.idle at the slow endpoint",
        ended(&stream.id),
    );
    assert_eq!(types(&stream_story(&slow_done, &stream.id)), LIFECYCLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_to_private_addresses_are_refused() {
    // Only 127.0.0.0/8 is allowed here; everything else private stays refused.
    let server = Server::start_with(&webhook_env("1"));
    let admin = server.global_admin_token();
    for (url, why) in [
        ("http://10.0.0.1/hook", "may not reach"),
        ("http://192.168.1.10:8080/hook", "may not reach"),
        ("http://169.254.169.254/latest/meta-data", "may not reach"),
        ("http://[::1]:9000/hook", "may not reach"),
        ("http://[fd00:ec2::254]/", "may not reach"),
        ("http://0.0.0.0/", "may not reach"),
        ("ftp://127.0.0.1/", "http"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("not a url", "url"),
    ] {
        let body = json!({ "url": url });
        let (status, body) = server
            .api(&admin, "POST", "/apps/app_default/webhooks", Some(body))
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        let message = body["message"].as_str().unwrap_or("");
        assert!(message.contains(why), "{url}: {body}");
    }
    // Without an allow list, loopback is refused too: the server's own ports.
    let strict = Server::start();
    let admin = strict.global_admin_token();
    let own_admin = format!("http://{}/api/v1/apps", strict.http);
    let (status, body) = strict
        .api(
            &admin,
            "POST",
            "/apps/app_default/webhooks",
            Some(json!({ "url": own_admin })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("loopback")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_dead_letters_redeliver_and_rotation_signs_twice() {
    // Three attempts: the 410, then two at the busy receiver.
    let server = Server::start_with(&webhook_env("1,1"));
    let admin = server.global_admin_token();
    let secret = test_secret();

    // 410: the endpoint is disabled, its event kept pending.
    let gone = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        fail_for_secs: -1.0,
        status: Some(410),
        ..Default::default()
    });
    let endpoint = server.add_webhook(&admin, &gone.url("/"), &secret, &[]).await;
    let path = format!("/apps/app_default/webhooks/{endpoint}");
    let (status, _) = server.api(&admin, "POST", &format!("{path}/test"), None).await;
    assert_eq!(status, 202);
    let view = poll(&server, &admin, &path, |v| v["enabled"] == false).await;
    assert!(
        view["disabled_reason"].as_str().is_some_and(|r| r.contains("410")),
        "{view}"
    );
    assert_eq!(view["backlog"]["pending"], 1, "{view}");

    // Redirects are failures, never followed.
    let moved = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        fail_for_secs: -1.0,
        status: Some(307),
        ..Default::default()
    });
    let redirected = server.add_webhook(&admin, &moved.url("/hook"), &secret, &[]).await;
    let redirected_path = format!("/apps/app_default/webhooks/{redirected}");
    let (status, _) = server
        .api(&admin, "POST", &format!("{redirected_path}/test"), None)
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let (_, list) = server
            .api(&admin, "GET", &format!("{redirected_path}/deliveries"), None)
            .await;
        if list[0]["attempts"].as_i64() >= Some(1) {
            break list[0].clone();
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("redirects are not followed")),
        "{failed}"
    );
    assert!(
        moved.requests().iter().all(|r| r["path"] == "/hook"),
        "{:?}",
        moved.requests()
    );
    let (status, _) = server.api(&admin, "DELETE", &redirected_path, None).await;
    assert_eq!(status, 204);

    // Retry-After is honoured, and after the last attempt the event is dead.
    let busy = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        fail_for_secs: -1.0,
        status: Some(503),
        retry_after: Some("3".into()),
        ..Default::default()
    });
    let (status, body) = server
        .api(
            &admin,
            "PATCH",
            &path,
            Some(json!({ "url": busy.url("/"), "enabled": true })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let view = poll(&server, &admin, &path, |v| v["backlog"]["dead"] == 1).await;
    assert_eq!(view["backlog"]["pending"], 0, "{view}");
    let attempts: Vec<f64> = busy
        .requests()
        .iter()
        .filter_map(|r| r["received_at"].as_f64())
        .collect();
    assert_eq!(attempts.len(), 2, "attempts 2 and 3 of schedule [1, 1]: {attempts:?}");
    assert!(
        attempts[1] - attempts[0] >= 2.9,
        "Retry-After: 3 not honoured: {attempts:?}"
    );
    let (_, dead) = server
        .api(&admin, "GET", &format!("{path}/deliveries?status=dead"), None)
        .await;
    assert_eq!(dead[0]["last_status"], 503, "{dead}");

    // Redelivering the failed events to a healthy receiver.
    let healthy = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        ..Default::default()
    });
    let (status, _) = server
        .api(&admin, "PATCH", &path, Some(json!({ "url": healthy.url("/") })))
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .api(&admin, "POST", &format!("{path}/redeliver-failed"), None)
        .await;
    assert_eq!((status, body["redelivered"].as_u64()), (202, Some(1)), "{body}");
    let delivered = healthy.wait_for(Duration::from_secs(10), "the redelivered test event", |d| d.len() == 1);
    assert_eq!(delivered[0]["type"], "webhook.test");
    let event_id = delivered[0]["id"].as_str().expect("id").to_owned();
    // One event on demand, again: same id and body (receivers dedupe on webhook-id).
    let (status, _) = server
        .api(&admin, "POST", &format!("{path}/deliveries/{event_id}/redeliver"), None)
        .await;
    assert_eq!(status, 202);
    let delivered = healthy.wait_for(Duration::from_secs(10), "the event redelivered", |d| d.len() == 2);
    assert_eq!(delivered[0], delivered[1]);

    // Rotation: both secrets sign during the rollover.
    let (status, rotated) = server.api(&admin, "POST", &format!("{path}/rotate-secret"), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);
    let only_new = Receiver::start(ReceiverOptions {
        secrets: vec![new_secret],
        ..Default::default()
    });
    for receiver in [&healthy, &only_new] {
        let (status, _) = server
            .api(&admin, "PATCH", &path, Some(json!({ "url": receiver.url("/") })))
            .await;
        assert_eq!(status, 200);
        let before = receiver.requests().len();
        let (status, _) = server.api(&admin, "POST", &format!("{path}/test"), None).await;
        assert_eq!(status, 202);
        receiver.wait_for(Duration::from_secs(10), "a test event", |_| {
            receiver.requests().len() > before
        });
        let last = receiver.requests().pop().expect("request");
        assert_eq!(last["verified"], true, "{last}");
        assert_eq!(last["signatures"], 2, "{last}");
    }
    assert!(gone.requests().iter().all(|r| r["verified"] == true));
}

async fn poll(server: &Server, admin: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.api(admin, "GET", path, None).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never reached the expected state: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_the_app_only_for_its_streams_and_takeovers_are_told() {
    let server = Server::start_with(&webhook_env("1"));
    let admin = server.global_admin_token();
    let secret = test_secret();
    let receiver = Receiver::start(ReceiverOptions {
        secrets: vec![secret.clone()],
        ..Default::default()
    });
    let types = ["stream.rejected", "stream.takeover", "stream.connected"];
    server.add_webhook(&admin, &receiver.url("/"), &secret, &types).await;

    // A disabled stream of the app: its endpoint hears of the refusal.
    let disabled = server.create_stream("disabled", Some("passthrough"));
    let path = format!("/apps/app_default/streams/{}/disable", disabled.id);
    let (status, _) = server.api(&admin, "POST", &path, None).await;
    assert_eq!(status, 200);
    let mut refused = short(2).publish(&disabled.publish_url());
    assert!(refused.wait_timeout(Duration::from_secs(20)).is_some());
    let delivered = receiver.wait_for(Duration::from_secs(10), "stream.rejected", |d| {
        d.iter().any(|e| e["type"] == "stream.rejected")
    });
    let rejected = delivered
        .iter()
        .find(|e| e["type"] == "stream.rejected")
        .expect("rejected");
    assert_eq!(rejected["stream_id"], disabled.id.as_str());
    assert_eq!(rejected["data"]["code"], "disabled");
    assert_eq!(rejected["data"]["protocol"], "rtmp");
    // A key nobody knows names no app: nobody hears of it.
    let url = format!("{}/live_00000000_{}", disabled.rtmp_url, "0".repeat(32));
    let mut unknown = short(2).publish(&url);
    assert!(unknown.wait_timeout(Duration::from_secs(20)).is_some());

    // A second publisher with the same key takes over.
    let stream = server.create_stream("contested", Some("passthrough"));
    let _first = short(60).publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(20)).await;
    let _second = short(60).publish(&stream.publish_url());
    let delivered = receiver.wait_for(Duration::from_secs(20), "stream.takeover", |d| {
        d.iter().any(|e| e["type"] == "stream.takeover")
    });
    let takeover = delivered
        .iter()
        .find(|e| e["type"] == "stream.takeover")
        .expect("takeover");
    assert_eq!(takeover["stream_id"], stream.id.as_str());
    assert!(takeover["data"]["new_session"].as_u64() > takeover["data"]["old_session"].as_u64());
    let story = stream_story(&delivered, &stream.id);
    let told: Vec<&str> = story.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(told[..2], ["stream.connected", "stream.takeover"], "{story:?}");
    let rejections = delivered.iter().filter(|e| e["type"] == "stream.rejected").count();
    assert_eq!(rejections, 1, "the unknown key reached an endpoint: {delivered:#?}");
    assert!(receiver.requests().iter().all(|r| r["verified"] == true));
}
