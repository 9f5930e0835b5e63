use super::*;

fn tokens() -> PlaybackTokens {
    PlaybackTokens::from_secret(&[7u8; 32], Duration::from_secs(0))
}

#[test]
fn accepts_its_own_token_for_the_right_stream_only() {
    let t = tokens();
    let jwt = t
        .mint("st1", Duration::from_secs(60), Some("viewer-1".into()))
        .expect("mint");
    let claims = t.verify(Some(&jwt), "st1").expect("valid");
    assert_eq!(claims.sub, "st1");
    assert_eq!(claims.sid.as_deref(), Some("viewer-1"));
    assert_eq!(t.verify(Some(&jwt), "st2"), Err(TokenRejection::WrongStream));
}

#[test]
fn refuses_missing_malformed_tampered_expired_and_early_tokens() {
    let t = tokens();
    assert_eq!(t.verify(None, "s"), Err(TokenRejection::Missing));
    assert_eq!(t.verify(Some(""), "s"), Err(TokenRejection::Missing));
    assert_eq!(t.verify(Some("not.a.jwt"), "s"), Err(TokenRejection::Malformed));

    let jwt = t.mint("s", Duration::from_secs(60), None).expect("mint");
    let other = PlaybackTokens::from_secret(&[8u8; 32], Duration::ZERO);
    assert_eq!(other.verify(Some(&jwt), "s"), Err(TokenRejection::BadSignature));
    let (head, sig) = jwt.rsplit_once('.').expect("three parts");
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    assert_eq!(t.verify(Some(&tampered), "s"), Err(TokenRejection::BadSignature));

    let now = unix_now();
    let expired = PlaybackClaims {
        sub: "s".into(),
        iat: now - 100,
        exp: now - 50,
        nbf: None,
        sid: None,
    };
    assert_eq!(
        t.verify(Some(&t.mint_claims(&expired).expect("mint")), "s"),
        Err(TokenRejection::Expired)
    );
    let early = PlaybackClaims {
        sub: "s".into(),
        iat: now,
        exp: now + 500,
        nbf: Some(now + 200),
        sid: None,
    };
    assert_eq!(
        t.verify(Some(&t.mint_claims(&early).expect("mint")), "s"),
        Err(TokenRejection::NotYetValid)
    );
}

#[test]
fn a_known_token_is_still_checked_for_time_and_stream_on_every_use() {
    let t = tokens();
    let jwt = t.mint("s", Duration::from_secs(60), None).expect("mint");
    assert_eq!(t.check(Some(&jwt), "s"), Ok(()));
    assert_eq!(t.verified.tokens.lock().len(), 1, "kept after the first check");
    assert_eq!(t.check(Some(&jwt), "s"), Ok(()));
    assert_eq!(t.check(Some(&jwt), "other"), Err(TokenRejection::WrongStream));
    assert_eq!(t.verify(Some(&jwt), "s").expect("valid").sub, "s");

    // A flipped signature is different text: verified from scratch, refused, not kept.
    let (head, sig) = jwt.rsplit_once('.').expect("three parts");
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    assert_eq!(t.check(Some(&tampered), "s"), Err(TokenRejection::BadSignature));
    assert_eq!(t.verified.tokens.lock().len(), 1);

    // Time passes for a token checked earlier.
    let now = unix_now();
    let claims = |exp, nbf| {
        Arc::new(Verified {
            claims: PlaybackClaims {
                sub: "s".into(),
                iat: now - 100,
                exp,
                nbf,
                sid: None,
            },
            app_id: None,
        })
    };
    let mut known = t.verified.tokens.lock();
    known.insert("expired".into(), claims(now - 1, None));
    known.insert("early".into(), claims(now + 500, Some(now + 200)));
    drop(known);
    assert_eq!(t.check(Some("expired"), "s"), Err(TokenRejection::Expired));
    assert_eq!(t.check(Some("early"), "s"), Err(TokenRejection::NotYetValid));
    let lenient = PlaybackTokens::from_secret(&[7u8; 32], Duration::from_secs(5));
    lenient
        .verified
        .tokens
        .lock()
        .insert("expired".into(), claims(now - 1, None));
    assert_eq!(lenient.check(Some("expired"), "s"), Ok(()), "within the leeway");
}

#[test]
fn secret_file_is_created_once_and_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = PlaybackTokens::load_or_create(dir.path(), Duration::ZERO).expect("create");
    let b = PlaybackTokens::load_or_create(dir.path(), Duration::ZERO).expect("load");
    let jwt = a.mint("s", Duration::from_secs(60), None).expect("mint");
    assert!(b.verify(Some(&jwt), "s").is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "secret readable by others");
    }
}

mod app_keys {
    use super::*;
    use crate::control::model::{KeyAlgorithm, VerificationKey};

    fn key(kid: &str, app: &str, algorithm: KeyAlgorithm, material: &[u8], created_at: i64) -> VerificationKey {
        VerificationKey {
            kid: kid.into(),
            app_id: app.into(),
            algorithm,
            material: material.to_vec(),
            created_at,
        }
    }

    /// A key pair from the openssl command line: (private PEM, public PEM).
    fn openssl_pair(algorithm: &str, options: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("private.pem");
        let public = dir.path().join("public.pem");
        let mut args = vec!["genpkey", "-algorithm", algorithm, "-out"];
        let private_str = private.to_str().expect("utf-8 path");
        args.push(private_str);
        for option in options {
            args.extend(["-pkeyopt", option]);
        }
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = std::process::Command::new("openssl")
            .args(["pkey", "-in", private_str, "-pubout", "-out"])
            .arg(&public)
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl pkey -pubout failed");
        (
            std::fs::read(private).expect("private pem"),
            std::fs::read(public).expect("public pem"),
        )
    }

    fn sign(claims: &PlaybackClaims, alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).expect("sign")
    }

    fn claims_for(stream: &str) -> PlaybackClaims {
        let now = unix_now();
        PlaybackClaims {
            sub: stream.into(),
            iat: now,
            exp: now + 60,
            nbf: None,
            sid: None,
        }
    }

    #[test]
    fn app_hs256_key_mints_and_is_good_only_for_that_apps_streams() {
        let t = tokens();
        t.install(vec![
            key("pk_old", "app_a", KeyAlgorithm::HS256, &[1; 32], 1),
            key("pk_new", "app_a", KeyAlgorithm::HS256, &[2; 32], 2),
            key("pk_b", "app_b", KeyAlgorithm::HS256, &[3; 32], 1),
        ]);
        t.bind_stream("st_a", "app_a");
        t.bind_stream("st_b", "app_b");
        let jwt = t
            .mint_for_app("app_a", "st_a", Duration::from_secs(60), None)
            .expect("mint");
        let header = jsonwebtoken::decode_header(&jwt).expect("header");
        assert_eq!(header.kid.as_deref(), Some("pk_new"), "minted with the newest key");
        assert_eq!(t.check(Some(&jwt), "st_a"), Ok(()));

        // An older key still verifies (rotation), but only for its own app's streams.
        let old = sign(
            &claims_for("st_a"),
            Algorithm::HS256,
            Some("pk_old"),
            &EncodingKey::from_secret(&[1; 32]),
        );
        assert_eq!(t.check(Some(&old), "st_a"), Ok(()));
        let cross = sign(
            &claims_for("st_b"),
            Algorithm::HS256,
            Some("pk_a_is_not_b"),
            &EncodingKey::from_secret(&[1; 32]),
        );
        assert_eq!(t.check(Some(&cross), "st_b"), Err(TokenRejection::UnknownKey));
        let cross = sign(
            &claims_for("st_b"),
            Algorithm::HS256,
            Some("pk_old"),
            &EncodingKey::from_secret(&[1; 32]),
        );
        assert_eq!(t.check(Some(&cross), "st_b"), Err(TokenRejection::WrongStream));
        let unbound = sign(
            &claims_for("st_x"),
            Algorithm::HS256,
            Some("pk_old"),
            &EncodingKey::from_secret(&[1; 32]),
        );
        assert_eq!(t.check(Some(&unbound), "st_x"), Err(TokenRejection::WrongStream));

        // The app's key signing with the wrong secret.
        let forged = sign(
            &claims_for("st_a"),
            Algorithm::HS256,
            Some("pk_new"),
            &EncodingKey::from_secret(&[9; 32]),
        );
        assert_eq!(t.check(Some(&forged), "st_a"), Err(TokenRejection::BadSignature));

        // An app without keys mints with the server key (no kid), which is good for any stream.
        let server = t
            .mint_for_app("app_c", "st_c", Duration::from_secs(60), None)
            .expect("mint");
        assert_eq!(jsonwebtoken::decode_header(&server).expect("header").kid, None);
        assert_eq!(t.check(Some(&server), "st_c"), Ok(()));
    }

    #[test]
    fn a_deleted_key_stops_working_even_for_remembered_tokens() {
        let t = tokens();
        t.install(vec![key("pk_a", "app_a", KeyAlgorithm::HS256, &[1; 32], 1)]);
        t.bind_stream("st_a", "app_a");
        let jwt = t
            .mint_for_app("app_a", "st_a", Duration::from_secs(60), None)
            .expect("mint");
        assert_eq!(t.check(Some(&jwt), "st_a"), Ok(()));
        t.install(vec![]);
        assert_eq!(t.check(Some(&jwt), "st_a"), Err(TokenRejection::UnknownKey));
    }

    #[test]
    fn rs256_and_es256_public_keys_verify_tokens_signed_by_the_app() {
        let (rsa_private, rsa_public) = openssl_pair("RSA", &["rsa_keygen_bits:2048"]);
        let (ec_private, ec_public) = openssl_pair("EC", &["ec_paramgen_curve:P-256"]);
        let t = tokens();
        t.install(vec![
            key("pk_rsa", "app_a", KeyAlgorithm::RS256, &rsa_public, 1),
            key("pk_ec", "app_a", KeyAlgorithm::ES256, &ec_public, 2),
        ]);
        t.bind_stream("st_a", "app_a");
        let rsa = EncodingKey::from_rsa_pem(&rsa_private).expect("rsa private key");
        let ec = EncodingKey::from_ec_pem(&ec_private).expect("ec private key");
        let by_rsa = sign(&claims_for("st_a"), Algorithm::RS256, Some("pk_rsa"), &rsa);
        let by_ec = sign(&claims_for("st_a"), Algorithm::ES256, Some("pk_ec"), &ec);
        assert_eq!(t.check(Some(&by_rsa), "st_a"), Ok(()));
        assert_eq!(t.check(Some(&by_ec), "st_a"), Ok(()));
        // The kid decides the key and the algorithm, whatever the header says.
        let swapped = sign(&claims_for("st_a"), Algorithm::RS256, Some("pk_ec"), &rsa);
        assert_eq!(t.check(Some(&swapped), "st_a"), Err(TokenRejection::BadSignature));
        // The classic confusion: HS256 keyed with the public PEM.
        let confused = sign(
            &claims_for("st_a"),
            Algorithm::HS256,
            Some("pk_rsa"),
            &EncodingKey::from_secret(&rsa_public),
        );
        assert_eq!(t.check(Some(&confused), "st_a"), Err(TokenRejection::BadSignature));
        // Public keys cannot mint: the app has no HS256 key, so the server key signs.
        let minted = t
            .mint_for_app("app_a", "st_a", Duration::from_secs(60), None)
            .expect("mint");
        assert_eq!(jsonwebtoken::decode_header(&minted).expect("header").kid, None);
    }

    #[test]
    fn an_unparsable_key_is_skipped_and_the_others_still_work() {
        let t = tokens();
        t.install(vec![
            key("pk_bad", "app_a", KeyAlgorithm::RS256, b"not a pem", 1),
            key("pk_good", "app_a", KeyAlgorithm::HS256, &[4; 32], 2),
        ]);
        t.bind_stream("st_a", "app_a");
        let jwt = t
            .mint_for_app("app_a", "st_a", Duration::from_secs(60), None)
            .expect("mint");
        assert_eq!(t.check(Some(&jwt), "st_a"), Ok(()));
        let bad = sign(
            &claims_for("st_a"),
            Algorithm::HS256,
            Some("pk_bad"),
            &EncodingKey::from_secret(&[4; 32]),
        );
        assert_eq!(t.check(Some(&bad), "st_a"), Err(TokenRejection::UnknownKey));
    }
}
