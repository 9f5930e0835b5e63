//! The admin API against the real binary: an operator onboards a customer
//! from the API alone, live streams are listed with their stats, disabled and
//! kicked while a real ffmpeg publishes, an app's token never reaches another
//! app, and malformed input never gets a 5xx.

mod common;

use std::time::{Duration, Instant};

use common::{wait_for_200, Proc, Server, Source};
use serde_json::{json, Value};

fn tiny() -> Source {
    Source {
        video: Some((320, 180)),
        video_kbps: 300,
        ..Source::small()
    }
}

fn id(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {value}"))
        .to_owned()
}

/// Waits for ffmpeg to exit (kicked or refused): its output.
fn exits_within(publisher: &mut Proc, within: Duration, what: &str) -> String {
    assert!(
        publisher.wait_timeout(within).is_some(),
        "ffmpeg still publishing {within:?} after {what}"
    );
    publisher.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_onboards_a_customer_and_runs_its_stream_from_the_api_alone() {
    let server = Server::start();
    let ops = server.global_admin_token();

    let (status, app) = server
        .api(
            &ops,
            "POST",
            "/apps",
            Some(json!({ "name": "acme", "profile": "small" })),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let app_id = id(&app, "/id");
    let (status, token) = server
        .api(
            &ops,
            "POST",
            "/admin-tokens",
            Some(json!({ "name": "acme-backend", "app_id": app_id })),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let acme = id(&token, "/secret");
    let acme_token_id = id(&token, "/token/id");

    // From here on, the customer's own token.
    let (status, created) = server
        .api(
            &acme,
            "POST",
            &format!("/apps/{app_id}/streams"),
            Some(json!({ "name": "launch" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let stream_id = id(&created, "/stream/id");
    let key = id(&created, "/stream_key");
    assert!(key.starts_with("live_") && key.len() >= 5 + 8 + 1 + 32, "{key}");
    assert_eq!(id(&created, "/rtmp_url"), format!("rtmp://{}/live", server.rtmp));
    let (status, pk) = server
        .api(
            &acme,
            "POST",
            &format!("/apps/{app_id}/playback-keys"),
            Some(json!({ "algorithm": "HS256" })),
        )
        .await;
    assert_eq!(status, 201, "{pk}");
    let kid = id(&pk, "/key/kid");

    let mut publisher = tiny().publish(&format!("rtmp://{}/live/{key}", server.rtmp));
    let (status, minted) = server
        .api(
            &acme,
            "POST",
            &format!("/apps/{app_id}/streams/{stream_id}/playback-tokens"),
            Some(json!({ "ttl_secs": 600, "viewer_id": "v-1" })),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let header = jsonwebtoken::decode_header(&id(&minted, "/token")).expect("a JWT");
    assert_eq!(
        header.kid.as_deref(),
        Some(kid.as_str()),
        "minted with the app's own key"
    );
    let master = wait_for_200(&id(&minted, "/playback_url"), Duration::from_secs(30)).await;
    assert!(master.contains("#EXT-X-STREAM-INF"));

    // Live stats, once the rate window has filled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let (status, live) = server.api(&acme, "GET", &format!("/live/{stream_id}"), None).await;
        assert_eq!(status, 200, "{live}");
        let renditions = live["renditions"].as_array().map_or(0, Vec::len);
        if live["uptime_secs"].as_f64().unwrap_or(0.0) > 7.0 && renditions >= 2 {
            break live;
        }
        assert!(Instant::now() < deadline, "live stats never filled: {live}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(live["protocol"], "rtmp");
    assert_eq!(live["client_ip"], "127.0.0.1");
    assert_eq!(live["app_id"], app_id.as_str());
    assert_eq!(live["video"]["codec"], "h264");
    assert_eq!(
        (live["video"]["width"].as_u64(), live["video"]["height"].as_u64()),
        (Some(320), Some(180))
    );
    let fps = live["video"]["fps"].as_f64().unwrap_or(0.0);
    assert!((25.0..=35.0).contains(&fps), "fps {fps}: {live}");
    assert_eq!(live["audio"]["codec"], "aac");
    let kbps = live["input_kbps"].as_f64().unwrap_or(0.0);
    assert!(
        (150.0..=1500.0).contains(&kbps),
        "input {kbps} kbit/s for a 300k + 96k publish: {live}"
    );
    for rendition in live["renditions"].as_array().expect("renditions") {
        assert!(rendition["output_kbps"].as_f64().unwrap_or(0.0) > 0.0, "{rendition}");
        let speed = rendition["encoder_speed"].as_f64().unwrap_or(0.0);
        assert!((0.7..=1.3).contains(&speed), "encoder speed {speed}: {rendition}");
        assert!(rendition["parts_published"].as_u64().unwrap_or(0) > 0);
    }
    assert_eq!(live["frames_dropped"], 0);
    let (_, all) = server.api(&ops, "GET", "/live", None).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));

    // Disable: the publisher goes at once, and cannot come back.
    let (status, _) = server
        .api(
            &acme,
            "POST",
            &format!("/apps/{app_id}/streams/{stream_id}/disable"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    exits_within(&mut publisher, Duration::from_secs(2), "disable");
    let mut again = tiny().publish(&format!("rtmp://{}/live/{key}", server.rtmp));
    let out = exits_within(&mut again, Duration::from_secs(10), "a publish of a disabled stream");
    assert!(out.contains("stream is disabled"), "{out}");

    // Enable, publish, kick.
    let (status, _) = server
        .api(
            &acme,
            "POST",
            &format!("/apps/{app_id}/streams/{stream_id}/enable"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let mut third = tiny().publish(&format!("rtmp://{}/live/{key}", server.rtmp));
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.api(&acme, "GET", &format!("/live/{stream_id}"), None).await.0 != 200 {
        assert!(Instant::now() < deadline, "the re-enabled stream never went live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, kicked) = server
        .api(&acme, "POST", &format!("/live/{stream_id}/kick"), None)
        .await;
    assert_eq!((status, &kicked["kicked"]), (200, &json!(true)));
    exits_within(&mut third, Duration::from_secs(2), "kick");

    // Each of the customer's mutations is in the audit log, with its token and address.
    let (_, audit) = server
        .api(&ops, "GET", &format!("/audit?actor={acme_token_id}"), None)
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "stream.create",
        "playback_key.create",
        "playback_token.mint",
        "stream.disable",
        "stream.enable",
        "stream.kick",
    ] {
        assert!(actions.contains(&action), "{action} not audited: {actions:?}");
    }
    assert!(
        audit
            .as_array()
            .expect("audit")
            .iter()
            .all(|e| e["ip"] == "127.0.0.1" && e["result"] == "ok"),
        "{audit}"
    );

    // Secrets are shown once, by the answer that made them: never in a
    // listing, the audit log or the server's log.
    let hs256 = id(&pk, "/secret");
    let mut seen = server.log();
    for path in [
        format!("/apps/{app_id}/streams"),
        format!("/apps/{app_id}/streams/{stream_id}"),
        format!("/apps/{app_id}/playback-keys"),
        "/admin-tokens".to_owned(),
        "/audit?limit=1000".to_owned(),
    ] {
        let (status, listed) = server.api(&ops, "GET", &path, None).await;
        assert_eq!(status, 200, "{path}");
        seen.push_str(&listed.to_string());
    }
    for (what, secret) in [
        ("stream key", &key),
        ("admin token", &acme),
        ("global token", &ops),
        ("HS256 secret", &hs256),
    ] {
        assert!(!seen.contains(secret.as_str()), "the {what} shows after its creation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_token_never_sees_or_touches_another_app() {
    let server = Server::start();
    let ops = server.global_admin_token();
    let (_, a) = server
        .api(&ops, "POST", "/apps", Some(json!({ "name": "tenant-a" })))
        .await;
    let (_, b) = server
        .api(
            &ops,
            "POST",
            "/apps",
            Some(json!({ "name": "tenant-b", "max_streams": 3 })),
        )
        .await;
    let (a, b) = (id(&a, "/id"), id(&b, "/id"));
    let (_, ta) = server
        .api(&ops, "POST", "/admin-tokens", Some(json!({ "name": "a", "app_id": a })))
        .await;
    let (_, tb) = server
        .api(&ops, "POST", "/admin-tokens", Some(json!({ "name": "b", "app_id": b })))
        .await;
    let (token_a, token_a_id, token_b_id) = (id(&ta, "/secret"), id(&ta, "/token/id"), id(&tb, "/token/id"));
    let (_, sb) = server
        .api(
            &ops,
            "POST",
            &format!("/apps/{b}/streams"),
            Some(json!({ "name": "b-stream" })),
        )
        .await;
    let (sb, b_key) = (id(&sb, "/stream/id"), id(&sb, "/stream_key"));
    let (_, kb) = server
        .api(
            &ops,
            "POST",
            &format!("/apps/{b}/playback-keys"),
            Some(json!({ "algorithm": "HS256" })),
        )
        .await;
    let kb = id(&kb, "/key/kid");
    // B is live, so that the live endpoints have something to leak.
    let _publisher = tiny().publish(&format!("rtmp://{}/live/{b_key}", server.rtmp));
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.api(&ops, "GET", &format!("/live/{sb}"), None).await.0 != 200 {
        assert!(Instant::now() < deadline, "B's stream never went live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = snapshot(&server, &ops, &b, &sb).await;

    // Every endpoint of the API, aimed at B with A's token.
    let cases: Vec<(&str, String, Option<Value>, &[u16])> = vec![
        ("GET", format!("/apps/{b}"), None, &[404]),
        (
            "PATCH",
            format!("/apps/{b}"),
            Some(json!({ "max_streams": 99 })),
            &[404],
        ),
        ("DELETE", format!("/apps/{b}"), None, &[404]),
        ("GET", format!("/apps/{b}/streams"), None, &[404]),
        (
            "POST",
            format!("/apps/{b}/streams"),
            Some(json!({ "name": "intruder" })),
            &[404],
        ),
        ("GET", format!("/apps/{b}/streams/{sb}"), None, &[404]),
        (
            "PATCH",
            format!("/apps/{b}/streams/{sb}"),
            Some(json!({ "enabled": false })),
            &[404],
        ),
        ("DELETE", format!("/apps/{b}/streams/{sb}"), None, &[404]),
        ("POST", format!("/apps/{b}/streams/{sb}/rotate-key"), None, &[404]),
        ("POST", format!("/apps/{b}/streams/{sb}/disable"), None, &[404]),
        ("POST", format!("/apps/{b}/streams/{sb}/enable"), None, &[404]),
        (
            "POST",
            format!("/apps/{b}/streams/{sb}/playback-tokens"),
            Some(json!({})),
            &[404],
        ),
        ("GET", format!("/apps/{b}/playback-keys"), None, &[404]),
        (
            "POST",
            format!("/apps/{b}/playback-keys"),
            Some(json!({ "algorithm": "HS256" })),
            &[404],
        ),
        ("DELETE", format!("/apps/{b}/playback-keys/{kb}"), None, &[404]),
        // B's stream under A's own app path is not A's either.
        ("GET", format!("/apps/{a}/streams/{sb}"), None, &[404]),
        ("POST", format!("/apps/{a}/streams/{sb}/disable"), None, &[404]),
        (
            "POST",
            format!("/apps/{a}/streams/{sb}/playback-tokens"),
            Some(json!({})),
            &[404],
        ),
        ("GET", format!("/live/{sb}"), None, &[404]),
        ("POST", format!("/live/{sb}/kick"), None, &[404]),
        ("POST", "/apps".into(), Some(json!({ "name": "tenant-c" })), &[403]),
        ("GET", "/admin-tokens".into(), None, &[403]),
        (
            "POST",
            "/admin-tokens".into(),
            Some(json!({ "name": "escalate" })),
            &[403],
        ),
        (
            "POST",
            "/admin-tokens".into(),
            Some(json!({ "name": "into-b", "app_id": b })),
            &[403],
        ),
        ("DELETE", format!("/admin-tokens/{token_b_id}"), None, &[403]),
    ];
    for (method, path, body, expected) in &cases {
        let (status, answer) = server.api(&token_a, method, path, body.clone()).await;
        assert!(expected.contains(&status), "{method} {path}: {status} {answer}");
        assert!(
            answer["error"].is_string(),
            "{method} {path}: not a JSON error: {answer}"
        );
        let text = answer.to_string();
        assert!(
            !text.contains(&b_key) && !text.contains("tenant-b"),
            "{method} {path} leaked B: {text}"
        );
    }
    // Reads that succeed show only A.
    for path in [
        "/apps".to_owned(),
        "/live".to_owned(),
        format!("/live?app_id={b}"),
        format!("/audit?app_id={b}"),
    ] {
        let (status, answer) = server.api(&token_a, "GET", &path, None).await;
        assert_eq!(status, 200, "{path}");
        let text = answer.to_string();
        assert!(!text.contains(&b) && !text.contains(&sb), "{path} leaked B: {text}");
    }
    // A's own log lists A's attempts (echoing the ids A itself sent), nothing of B's.
    let (status, own) = server.api(&token_a, "GET", "/audit?limit=1000", None).await;
    assert_eq!(status, 200);
    let text = own.to_string();
    assert!(!text.contains("tenant-b") && !text.contains(&b_key), "{text}");
    assert!(
        own.as_array().expect("audit").iter().all(|e| e["app_id"] == a.as_str()),
        "{text}"
    );
    let csv = common::http()
        .get(format!("{}/api/v1/audit.csv", server.base()))
        .bearer_auth(&token_a)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status().as_u16(), 200);
    let csv = csv.text().await.expect("text");
    assert!(
        csv.lines().count() > 1 && !csv.contains("tenant-b") && !csv.contains(&b_key),
        "{csv}"
    );
    // B's log learns nothing of the probing.
    let (_, b_log) = server
        .api(&ops, "GET", &format!("/audit?app_id={b}&limit=1000"), None)
        .await;
    assert!(!b_log.to_string().contains(&token_a_id), "{b_log}");

    // B is exactly as it was, still live.
    assert_eq!(snapshot(&server, &ops, &b, &sb).await, before);
    // Every mutation attempt was audited under A's token, as an error.
    let (_, audit) = server
        .api(&ops, "GET", &format!("/audit?actor={token_a_id}&limit=1000"), None)
        .await;
    let entries = audit.as_array().expect("audit");
    let mutations = cases.iter().filter(|(m, ..)| *m != "GET").count();
    assert_eq!(entries.len(), mutations, "{audit}");
    assert!(
        entries
            .iter()
            .all(|e| e["result"].as_str().unwrap_or("").starts_with("error: 40")),
        "{audit}"
    );
}

/// What an intruder could have changed of app B.
async fn snapshot(server: &Server, ops: &str, b: &str, sb: &str) -> Value {
    let (_, app) = server.api(ops, "GET", &format!("/apps/{b}"), None).await;
    let (_, streams) = server.api(ops, "GET", &format!("/apps/{b}/streams"), None).await;
    let (_, keys) = server.api(ops, "GET", &format!("/apps/{b}/playback-keys"), None).await;
    let (_, tokens) = server.api(ops, "GET", "/admin-tokens", None).await;
    let (live, _) = server.api(ops, "GET", &format!("/live/{sb}"), None).await;
    json!({ "app": app, "streams": streams, "keys": keys, "tokens": tokens, "live": live })
}

/// Method, path, Content-Type, body, expected status.
type BadRequest<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_a_4xx_json_error_never_a_5xx() {
    let server = Server::start();
    let ops = server.global_admin_token();
    let client = common::http();
    let base = format!("{}/api/v1", server.base());
    let send = |method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{base}{path}"),
            )
            .bearer_auth(&ops)
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send()
    };
    let json_ct = Some("application/json");
    let cases: Vec<BadRequest> = vec![
        ("POST", "/apps", json_ct, b"{".to_vec(), 400),
        ("POST", "/apps", json_ct, b"[]".to_vec(), 422),
        ("POST", "/apps", json_ct, br#"["positional"]"#.to_vec(), 422),
        ("POST", "/apps", json_ct, b"null".to_vec(), 422),
        ("POST", "/apps", json_ct, br#"{"name":"x","surprise":1}"#.to_vec(), 422),
        (
            "POST",
            "/apps",
            json_ct,
            br#"{"name":"x","max_streams":-1}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/apps",
            json_ct,
            br#"{"name":"x","key_rotation_segments":0}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/apps",
            json_ct,
            br#"{"name":"x","custom_ladder":"rung = 5"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/apps",
            json_ct,
            br#"{"name":"x","profile":"../../etc/passwd"}"#.to_vec(),
            422,
        ),
        ("POST", "/apps", json_ct, br#"{"name":""}"#.to_vec(), 422),
        (
            "POST",
            "/apps",
            json_ct,
            format!(r#"{{"name":"{}"}}"#, "n".repeat(100)).into_bytes(),
            422,
        ),
        ("POST", "/apps", json_ct, vec![0xff, 0xfe, 0x00], 400),
        ("POST", "/apps", None, br#"{"name":"x"}"#.to_vec(), 415),
        ("POST", "/apps", Some("text/plain"), br#"{"name":"x"}"#.to_vec(), 415),
        (
            "POST",
            "/apps",
            json_ct,
            [br#"{"name":""#.as_slice(), &vec![b'a'; 200_000], br#""}"#].concat(),
            413,
        ),
        (
            "POST",
            "/apps/app_default/streams",
            json_ct,
            br#"{"name":"s","profile":5}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/apps/app_default/playback-keys",
            json_ct,
            br#"{"algorithm":"none"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/apps/app_default/playback-keys",
            json_ct,
            br#"{"algorithm":"RS256"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/apps/app_default/playback-keys",
            json_ct,
            br#"{"algorithm":"RS256","public_key_pem":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}"#
                .to_vec(),
            422,
        ),
        ("GET", "/apps/%00", None, Vec::new(), 404),
        ("GET", "/apps/%FF", None, Vec::new(), 404),
        (
            "POST",
            "/apps/app_default/streams/%C3%28/disable",
            None,
            Vec::new(),
            404,
        ),
        ("GET", "/apps/..%2F..%2Fetc", None, Vec::new(), 404),
        ("GET", "/apps/app_nope", None, Vec::new(), 404),
        ("DELETE", "/apps/app_default", None, Vec::new(), 422),
        ("GET", "/audit?since_ms=yesterday", None, Vec::new(), 400),
        ("GET", "/audit?result=maybe", None, Vec::new(), 422),
        ("GET", "/audit?limit=-5", None, Vec::new(), 400),
        ("GET", "/audit?limit=0", None, Vec::new(), 422),
        ("GET", "/audit?limit=5000", None, Vec::new(), 422),
        ("PUT", "/apps", json_ct, b"{}".to_vec(), 405),
        ("GET", "/no/such/route", None, Vec::new(), 404),
        ("GET", "/", None, Vec::new(), 404),
    ];
    let refused_app_creates = cases.iter().filter(|(m, p, ..)| *m == "POST" && *p == "/apps").count();
    for (method, path, content_type, body, expected) in cases {
        let response = send(method, path, content_type, body).await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, expected, "{method} {path}: {text}");
        let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert!(
            parsed["error"].is_string() && parsed["message"].is_string(),
            "{method} {path}: {parsed}"
        );
    }
    // Refused mutations are audited whatever refused them, the body included.
    let (_, audit) = server
        .api(&ops, "GET", "/audit?action=app.create&result=error&limit=1000", None)
        .await;
    assert_eq!(audit.as_array().map(Vec::len), Some(refused_app_creates), "{audit}");
    let (_, audit) = server.api(&ops, "GET", "/audit?action=stream.disable", None).await;
    assert_eq!(audit[0]["target"], "stream/%C3%28", "{audit}");

    // Bad credentials of every shape: 401, never 5xx.
    for header in [
        "Bearer",
        "Bearer ",
        "Basic abc",
        "Bearer pe_admin_x",
        &format!("Bearer {}", "x".repeat(5000)),
    ] {
        let response = client
            .get(format!("{base}/apps"))
            .header("authorization", header)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 401, "{header:.20}");
    }
    assert!(
        server.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        server.log()
    );

    // The probes need no token.
    let (status, body) = common::get_text(&format!("{}/readyz", server.base())).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\""), "{body}");
    let (status, _) = common::get_text(&format!("{}/livez", server.base())).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_follows_the_configuration() {
    let server = Server::start_with(&[("PULSE_ADMIN_BODY_LIMIT_BYTES", "2048")]);
    let ops = server.global_admin_token();
    let (status, body) = server
        .api(&ops, "POST", "/apps", Some(json!({ "name": "n".repeat(3000) })))
        .await;
    assert_eq!((status, &body["error"]), (413, &json!("payload_too_large")), "{body}");
    let (status, body) = server.api(&ops, "POST", "/apps", Some(json!({ "name": "fits" }))).await;
    assert_eq!(status, 201, "{body}");
}
