//! The operator's command line, end to end: the real binary against the data
//! dir of a running server, as an operator uses it. Publishes are real ffmpeg.

mod common;

use std::process::Output;
use std::time::Duration;

use common::keys::rsa_pair;
use common::{wait_until_live, Server, Source, StreamInfo};
use serde_json::Value;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must fail; returns its error line.
fn fails(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(
        !out.status.success(),
        "pulse-edge {args:?} should fail, printed {}",
        stdout(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "a failed command prints no JSON: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.starts_with("pulse-edge: error: "), "unexpected error format: {err}");
    err
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {value}"))
}

fn array(value: &Value) -> &Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("not an array: {value}"))
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    array(list).iter().map(|v| text(v, field).to_owned()).collect()
}

#[test]
fn apps_are_created_listed_shown_and_deleted_with_their_streams() {
    let server = Server::start();
    let app = server.cli_json(&[
        "app",
        "create",
        "--name",
        "acme",
        "--profile",
        "small",
        "--no-encrypt",
        "--key-rotation-segments",
        "5",
        "--record",
        "--max-streams",
        "3",
        "--max-ingest-kbps",
        "6000",
    ]);
    let app_id = text(&app, "id").to_owned();
    assert!(app_id.starts_with("app_"), "{app}");
    assert_eq!(text(&app, "name"), "acme");
    assert_eq!(text(&app, "profile"), "small");
    assert_eq!(app["encrypt"], false);
    assert_eq!(app["key_rotation_segments"], 5);
    assert_eq!(app["record"], true);
    assert_eq!(app["max_streams"], 3);
    assert_eq!(app["max_ingest_kbps"], 6000);

    let plain = server.cli_json(&["app", "create", "--name", "plain"]);
    assert_eq!(plain["encrypt"], true);
    assert_eq!(plain["record"], false);
    assert_eq!(plain["max_streams"], Value::Null);

    let listed = server.cli_json(&["app", "list"]);
    let names = ids(&listed, "name");
    for name in ["default", "acme", "plain"] {
        assert!(names.contains(&name.to_owned()), "{name} missing from {names:?}");
    }
    assert_eq!(server.cli_json(&["app", "show", &app_id]), app);
    assert_eq!(server.cli_json(&["app", "show", "acme"]), app, "by name too");

    // Bad input: a clear message and a nonzero exit, nothing stored.
    assert!(fails(&server, &["app", "create", "--name", "acme"]).contains("already exists"));
    assert!(fails(&server, &["app", "create", "--name", "no spaces"]).contains("app name must be"));
    assert!(fails(&server, &["app", "create", "--name", "x", "--profile", "nope"]).contains("unknown profile"));
    assert!(fails(&server, &["app", "show", "nope"]).contains("no app with id or name \"nope\""));
    assert_eq!(array(&server.cli_json(&["app", "list"])).len(), 3);

    // Deleting the app takes its streams (and their keys) with it.
    let stream = server.create_stream_in("acme", "doomed", None);
    assert_eq!(array(&server.cli_json(&["stream", "list", "--app", &app_id])).len(), 1);
    let out = server.cli(&["app", "delete", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).expect("json")["deleted"],
        app_id.as_str()
    );
    assert!(stderr(&out).contains("admin API"), "the kick hint: {}", stderr(&out));
    assert!(fails(&server, &["app", "show", &app_id]).contains("no app"));
    assert!(fails(&server, &["stream", "show", &stream.id]).contains("no stream"));
    assert!(!ids(&server.cli_json(&["stream", "list"]), "id").contains(&stream.id));
    assert!(fails(&server, &["app", "delete", "acme"]).contains("no app"));
    assert!(fails(&server, &["app", "delete", "default"]).contains("default app cannot be deleted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_publishes_and_the_old_one_is_refused() {
    let server = Server::start();
    let app = server.cli_json(&["app", "create", "--name", "tenant"]);
    let app_id = text(&app, "id");
    let created = server.cli_json(&[
        "stream",
        "create",
        "--app",
        "tenant",
        "--name",
        "show",
        "--profile",
        "passthrough",
    ]);
    for field in ["id", "name", "stream_key", "rtmp_url", "playback_url"] {
        assert!(created[field].is_string(), "{field} missing from {created}");
    }
    assert_eq!(text(&created, "app_id"), app_id);
    assert_eq!(text(&created, "profile"), "passthrough");
    let scope = &app_id["app_".len().."app_".len() + 8];
    let old_key = text(&created, "stream_key").to_owned();
    assert!(
        old_key.starts_with(&format!("live_{scope}_")),
        "{old_key} not scoped to {app_id}"
    );
    let stream: StreamInfo = serde_json::from_value(created.clone()).expect("stream info");

    let listed = server.cli_json(&["stream", "list", "--app", app_id]);
    assert_eq!(ids(&listed, "id"), vec![stream.id.clone()]);
    let old_prefix = text(&array(&listed)[0], "key_prefix").to_owned();
    assert!(old_prefix.starts_with(&format!("live_{scope}_")));
    assert!(
        !stdout(&server.cli(&["stream", "list"])).contains(&old_key),
        "a key is listed"
    );

    let out = server.cli(&["stream", "rotate-key", &stream.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("admin API"), "the kick hint: {}", stderr(&out));
    let rotated: Value = serde_json::from_slice(&out.stdout).expect("json");
    let new_key = text(&rotated, "stream_key").to_owned();
    assert_ne!(new_key, old_key);
    assert!(new_key.starts_with(&format!("live_{scope}_")));
    let listed = server.cli_json(&["stream", "list", "--app", "tenant"]);
    let new_prefix = text(&array(&listed)[0], "key_prefix");
    assert_ne!(new_prefix, old_prefix, "the listed prefix follows the key");
    assert_eq!(new_prefix, text(&rotated, "key_prefix"));
    assert!(
        !stdout(&server.cli(&["stream", "list"])).contains(&new_key),
        "a key is listed"
    );

    // The old key is refused by the running server at once…
    let source = Source {
        video: Some((320, 180)),
        seconds: Some(2),
        ..Source::small()
    };
    let mut refused = source.publish(&format!("{}/{old_key}", stream.rtmp_url));
    let status = refused
        .wait_timeout(Duration::from_secs(10))
        .expect("ffmpeg gives up on a refused key");
    assert!(!status.success(), "the old key still publishes");
    assert!(refused.log().contains("unknown stream key"), "{}", refused.log());

    // …and the new one publishes, and the stream plays with the URL printed at create.
    let live = StreamInfo {
        stream_key: new_key,
        ..stream.clone()
    };
    let mut publisher = Source {
        seconds: None,
        ..source
    }
    .publish(&live.publish_url());
    wait_until_live(&server, &live, Duration::from_secs(30)).await;
    assert!(publisher.is_running(), "{}", publisher.log());

    // `token` mints a working URL for a stream of an app.
    let out = server.cli(&["token", "--stream", &stream.id, "--ttl", "60"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).trim().to_owned();
    assert_eq!(common::get_text(&url).await.0, 200, "{url}");
    assert!(fails(&server, &["token", "--stream", "stnope"]).contains("no stream with id"));
}

#[test]
fn streams_are_disabled_enabled_and_deleted() {
    let server = Server::start();
    let stream = server.create_stream("plain", None);
    let default_listed = server.cli_json(&["stream", "list", "--app", "default"]);
    assert!(
        ids(&default_listed, "id").contains(&stream.id),
        "no --app: the default app"
    );

    let out = server.cli(&["stream", "disable", &stream.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("admin API"), "the kick hint: {}", stderr(&out));
    let disabled: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(disabled["enabled"], false);
    assert_eq!(server.cli_json(&["stream", "show", &stream.id])["enabled"], false);
    assert_eq!(server.cli_json(&["stream", "enable", &stream.id])["enabled"], true);

    assert_eq!(
        server.cli_json(&["stream", "delete", &stream.id])["deleted"],
        stream.id.as_str()
    );
    assert!(fails(&server, &["stream", "show", &stream.id]).contains("no stream"));
    for verb in ["disable", "enable", "delete", "rotate-key"] {
        assert!(fails(&server, &["stream", verb, &stream.id]).contains("no stream with id"));
    }
    assert!(fails(&server, &["stream", "create", "--name", "x", "--app", "nope"]).contains("no app"));
    assert!(fails(&server, &["stream", "create", "--name", "x", "--profile", "nope"]).contains("unknown profile"));
    assert!(fails(&server, &["stream", "create", "--name", ""]).contains("stream name must be"));
    // Only the server's demo stream is left.
    let left = ids(&server.cli_json(&["stream", "list"]), "id");
    assert_eq!(left.len(), 1);
    assert!(!left.contains(&stream.id));
}

#[test]
fn admin_tokens_are_created_listed_and_revoked_without_showing_secrets() {
    let server = Server::start();
    server.cli_json(&["app", "create", "--name", "tenant"]);
    let global = server.cli_json(&["admin-token", "create", "--name", "ops"]);
    let scoped = server.cli_json(&["admin-token", "create", "--name", "tenant-ci", "--app", "tenant"]);
    let secrets: Vec<String> = [&global, &scoped]
        .iter()
        .map(|t| text(t, "secret").to_owned())
        .collect();
    for (token, secret) in [&global, &scoped].iter().zip(&secrets) {
        assert!(text(token, "id").starts_with("at_"));
        assert!(secret.starts_with("pe_admin_") && secret.len() >= "pe_admin_".len() + 32);
        let prefix = text(token, "prefix");
        assert!(
            secret.starts_with(prefix.trim_end_matches('…')),
            "{prefix} vs the secret"
        );
        assert_eq!(token["revoked"], false);
    }
    assert_eq!(global["app_id"], Value::Null);
    assert!(text(&scoped, "app_id").starts_with("app_"));

    let out = server.cli(&["admin-token", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    for secret in &secrets {
        assert!(!listing.contains(secret.as_str()), "a secret is listed");
    }
    let listed: Value = serde_json::from_str(&listing).expect("json");
    assert_eq!(array(&listed).len(), 2);
    assert!(array(&listed).iter().all(|t| t.get("secret").is_none()));
    let only_tenant = server.cli_json(&["admin-token", "list", "--app", "tenant"]);
    assert_eq!(ids(&only_tenant, "id"), vec![text(&scoped, "id").to_owned()]);

    let global_id = text(&global, "id");
    assert_eq!(
        server.cli_json(&["admin-token", "revoke", global_id])["revoked"],
        global_id
    );
    let after = server.cli_json(&["admin-token", "list"]);
    let revoked = array(&after)
        .iter()
        .find(|t| t["id"] == global_id)
        .expect("still listed");
    assert_eq!(revoked["revoked"], true);

    assert!(fails(&server, &["admin-token", "revoke", "at_nope"]).contains("no admin token"));
    assert!(fails(&server, &["admin-token", "create", "--name", "x", "--app", "nope"]).contains("no app"));
    assert!(fails(&server, &["admin-token", "create", "--name", ""]).contains("admin token name must be"));
}

#[test]
fn playback_keys_take_hs256_and_public_keys_and_refuse_private_ones() {
    let server = Server::start();
    let app = server.cli_json(&["app", "create", "--name", "tenant"]);
    let app_id = text(&app, "id");
    let (private, public) = rsa_pair(server.data_dir.path());

    let hs = server.cli_json(&["playback-key", "create", "--app", "tenant", "--alg", "HS256"]);
    let secret = text(&hs, "secret").to_owned();
    assert_eq!(secret.len(), 64);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(text(&hs, "kid").starts_with("pk_"));
    assert_eq!(text(&hs, "app_id"), app_id);

    let public_s = public.to_str().expect("utf-8 path");
    let rs = server.cli_json(&[
        "playback-key",
        "create",
        "--app",
        app_id,
        "--alg",
        "RS256",
        "--public-key",
        public_s,
    ]);
    assert_eq!(text(&rs, "algorithm"), "RS256");
    assert!(rs.get("secret").is_none(), "nothing secret for a public key");
    let pem = std::fs::read_to_string(&public).expect("public key");
    assert_eq!(text(&rs, "public_key_pem"), pem.trim());

    let out = server.cli(&["playback-key", "list", "--app", "tenant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains(&secret), "an HS256 secret is listed");
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        ids(&listed, "kid"),
        vec![text(&hs, "kid").to_owned(), text(&rs, "kid").to_owned()]
    );

    // Refusals, each with a message that says what to do.
    let private_s = private.to_str().expect("utf-8 path");
    let err = fails(
        &server,
        &[
            "playback-key",
            "create",
            "--app",
            app_id,
            "--alg",
            "RS256",
            "--public-key",
            private_s,
        ],
    );
    assert!(err.contains("private key") && err.contains("-pubout"), "{err}");
    let private_pem = std::fs::read_to_string(&private).expect("private key");
    let body_line = private_pem.lines().nth(1).expect("a body line");
    assert!(!err.contains(body_line), "the private key is echoed: {err}");
    let err = fails(
        &server,
        &[
            "playback-key",
            "create",
            "--app",
            app_id,
            "--alg",
            "ES256",
            "--public-key",
            public_s,
        ],
    );
    assert!(err.contains("ES256"), "{err}");
    assert!(
        fails(&server, &["playback-key", "create", "--app", app_id, "--alg", "RS256"]).contains("needs a public key")
    );
    assert!(
        fails(&server, &["playback-key", "create", "--app", app_id, "--alg", "none"]).contains("unknown algorithm")
    );
    assert!(fails(&server, &["playback-key", "create", "--app", "nope", "--alg", "HS256"]).contains("no app"));
    let missing = server.data_dir.path().join("missing.pem");
    assert!(fails(
        &server,
        &[
            "playback-key",
            "create",
            "--app",
            app_id,
            "--alg",
            "RS256",
            "--public-key",
            missing.to_str().expect("utf-8 path")
        ]
    )
    .contains("reading public key"));
    assert_eq!(
        array(&server.cli_json(&["playback-key", "list", "--app", app_id])).len(),
        2
    );

    // Deleting: only through the key's own app.
    let kid = text(&rs, "kid");
    assert!(fails(&server, &["playback-key", "delete", "--app", "default", kid]).contains("has no playback key"));
    assert_eq!(
        server.cli_json(&["playback-key", "delete", "--app", app_id, kid])["deleted"],
        kid
    );
    assert_eq!(
        ids(&server.cli_json(&["playback-key", "list", "--app", app_id]), "kid"),
        vec![text(&hs, "kid").to_owned()]
    );
}

#[test]
fn every_mutation_is_audited_as_the_cli_and_reads_are_not() {
    let server = Server::start();
    let app = server.cli_json(&["app", "create", "--name", "audited"]);
    let app_id = text(&app, "id");
    let stream = server.create_stream_in(app_id, "s", None);
    fails(&server, &["app", "create", "--name", "audited"]);
    server.cli_json(&["stream", "disable", &stream.id]);
    server.cli_json(&["app", "list"]);
    server.cli_json(&["stream", "list"]);

    let all = server.cli_json(&["audit"]);
    let actions: Vec<&str> = array(&all).iter().map(|e| text(e, "action")).collect();
    assert_eq!(
        actions,
        ["stream.disable", "app.create", "stream.create", "app.create"],
        "newest first"
    );
    for entry in array(&all) {
        assert_eq!(text(entry, "actor"), "cli");
        assert_eq!(entry["ip"], Value::Null);
        assert!(text(entry, "id").starts_with("au_"));
        assert!(entry["at_ms"].as_i64().expect("at_ms") > 1_600_000_000_000);
    }
    let entries = array(&all);
    assert_eq!(text(&entries[0], "target"), format!("stream/{}", stream.id));
    assert_eq!(text(&entries[0], "app_id"), app_id);
    assert!(text(&entries[1], "result").starts_with("error: 409"), "{}", entries[1]);
    assert_eq!(text(&entries[2], "target"), format!("stream/{}", stream.id));
    assert_eq!(text(&entries[3], "target"), format!("app/{app_id}"));
    assert!(
        !stdout(&server.cli(&["audit"])).contains(&stream.stream_key),
        "a key in the audit log"
    );

    let errors = server.cli_json(&["audit", "--result", "error"]);
    assert_eq!(array(&errors).len(), 1);
    let of_app = server.cli_json(&["audit", "--app", "audited", "--action", "stream.create"]);
    assert_eq!(array(&of_app).len(), 1);
    assert_eq!(array(&server.cli_json(&["audit", "--limit", "2"])).len(), 2);
}
