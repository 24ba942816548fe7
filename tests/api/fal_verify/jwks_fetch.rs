//! Which published keys count and how a failing JWKS endpoint shows: several keys, junk keys,
//! wrong-length keys, non-200, bad JSON, unreachable, too slow.
use std::time::Duration;

use fluxgate::fal::verify::{FalVerifier, ManualClock, VerifyError};
use serde_json::json;

use super::support::{client, jwks, okp, Harness, TestKey, NOW};

const BODY: &[u8] = br#"{"request_id":"req-1","status":"OK","payload":null}"#;

#[tokio::test]
async fn a_signature_matching_only_the_last_of_several_keys_passes() {
    let key = TestKey::new(9);
    let mut keys: Vec<_> = (1..=4).map(|seed| TestKey::new(seed).jwk()).collect();
    keys.push(json!({ "kty": "OKP", "crv": "Ed25519", "x": key.x(), "kid": "2026-01" }));
    let app = Harness::start(jwks(&keys), NOW).await;

    let verified = app
        .verifier
        .verify(&key.sign(NOW, BODY), BODY)
        .await
        .unwrap();

    assert_eq!(verified.key_id(), Some("2026-01"));
    assert_eq!(app.server.fetches(), 1);
}

#[tokio::test]
async fn keys_that_are_not_usable_ed25519_keys_are_skipped() {
    let key = TestKey::new(9);
    let x = key.x();
    let identity = {
        let mut bytes = [0u8; 32];
        bytes[0] = 1; // the neutral point: small order, so "weak"
        base64_url(&bytes)
    };
    let junk = vec![
        json!({ "kty": "RSA", "n": "sXch", "e": "AQAB" }),
        json!({ "kty": "OKP", "crv": "X25519", "x": x }),
        json!({ "kty": "EC", "crv": "P-256", "x": "f83O", "y": "x_FE" }),
        json!({ "kty": "OKP", "crv": "Ed25519" }),
        json!({ "kty": "OKP", "crv": "Ed25519", "x": 12 }),
        json!({ "kty": "OKP", "crv": "Ed25519", "x": "not base64url!" }),
        json!({ "kty": "OKP", "crv": "Ed25519", "x": identity }),
        json!({ "crv": "Ed25519", "x": x }),
        json!("a string, not a JWK"),
        okp(&base64_url(&[7u8; 31])),
        okp(&base64_url(&[7u8; 33])),
        okp(&format!("{x}=")),
    ];
    let app = Harness::start(jwks(&junk), NOW).await;

    let result = app.verifier.verify(&key.sign(NOW, BODY), BODY).await;

    assert!(
        result.is_ok(),
        "the padded copy of the key is the usable one: {result:?}"
    );
}

#[tokio::test]
async fn an_x_of_31_or_33_bytes_is_not_a_key() {
    let key = TestKey::new(9);
    let public =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key.x()).unwrap();
    for x in [
        base64_url(&public[..31]),
        base64_url(&[public.as_slice(), &[0]].concat()),
    ] {
        let app = Harness::start(jwks(&[okp(&x)]), NOW).await;

        let error = app
            .verifier
            .verify(&key.sign(NOW, BODY), BODY)
            .await
            .unwrap_err();

        assert_eq!(
            error,
            VerifyError::JwksUnavailable("JWKS holds no usable Ed25519 key".into())
        );
    }
}

#[tokio::test]
async fn a_jwks_that_answers_non_200_or_not_json_is_unavailable() {
    let key = TestKey::new(1);
    for (status, body) in [
        (500, key.jwk().to_string()),
        (404, String::new()),
        (200, "{".into()),
        (200, "{}".into()),
    ] {
        let app = Harness::start(jwks(&[]), NOW).await;
        app.server.serve(status, body);

        let error = app
            .verifier
            .verify(&key.sign(NOW, BODY), BODY)
            .await
            .unwrap_err();

        assert!(
            matches!(error, VerifyError::JwksUnavailable(_)),
            "{status}: {error:?}"
        );
        assert_eq!(error.outcome_label(), "jwks_unavailable");
    }
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/.well-known/jwks.json")
        .parse()
        .unwrap();
    let clock = std::sync::Arc::new(ManualClock::new(NOW));
    let verifier = FalVerifier::new(url, client(), clock);

    let error = verifier
        .verify(&TestKey::new(1).sign(NOW, BODY), BODY)
        .await
        .unwrap_err();

    assert_eq!(
        error,
        VerifyError::JwksUnavailable("could not connect to the JWKS endpoint".into())
    );
    assert_eq!(
        verifier.prefetch().await.unwrap_err().outcome_label(),
        "jwks_unavailable"
    );
}

#[tokio::test]
async fn a_jwks_slower_than_the_fetch_timeout_is_unavailable() {
    let key = TestKey::new(1);
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;
    app.server.delay(Duration::from_secs(5));
    let verifier = app
        .verifier
        .clone()
        .fetch_timeout(Duration::from_millis(20));

    let error = verifier
        .verify(&key.sign(NOW, BODY), BODY)
        .await
        .unwrap_err();

    assert_eq!(
        error,
        VerifyError::JwksUnavailable("JWKS fetch timed out after 20 ms".into())
    );
}

fn base64_url(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}
