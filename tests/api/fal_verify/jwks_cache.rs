//! The JWKS cache against a live local server: caching, rotation, rate-limited single-flight
//! re-fetches, expiry and stale-if-error.
use std::time::Duration;

use fluxgate::fal::verify::VerifyError;

use super::support::{jwks, Harness, TestKey, NOW};

const BODY: &[u8] =
    br#"{"request_id":"req-1","status":"OK","payload":{"seed":201234567890123457}}"#;
const DAY: i64 = 24 * 60 * 60;
/// Seconds between two allowed JWKS fetches.
const INTERVAL: i64 = fluxgate::fal::verify::REFETCH_MIN_INTERVAL.as_secs() as i64;

fn bad_signature_storm(
    app: &Harness,
    forger: &TestKey,
    n: usize,
) -> Vec<tokio::task::JoinHandle<VerifyError>> {
    (0..n)
        .map(|_| {
            let verifier = app.verifier.clone();
            let headers = forger.sign(app.now(), BODY);
            tokio::spawn(async move { verifier.verify(&headers, BODY).await.unwrap_err() })
        })
        .collect()
}

#[tokio::test]
async fn a_second_verification_uses_the_cached_keys() {
    let key = TestKey::new(1);
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;

    app.verifier
        .verify(&key.sign(NOW, BODY), BODY)
        .await
        .unwrap();
    app.clock.advance(DAY - 1);
    app.verifier
        .verify(&key.sign(app.now(), BODY), BODY)
        .await
        .unwrap();

    assert_eq!(app.server.fetches(), 1);
}

#[tokio::test]
async fn prefetch_warms_the_cache_so_the_first_webhook_does_not_fetch() {
    let key = TestKey::new(1);
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;

    app.verifier.prefetch().await.unwrap();
    app.verifier
        .verify(&key.sign(NOW, BODY), BODY)
        .await
        .unwrap();

    assert_eq!(app.server.fetches(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_exactly_one_refetch() {
    let (old, new) = (TestKey::new(1), TestKey::new(2));
    let app = Harness::start(jwks(&[old.jwk()]), NOW).await;
    app.verifier
        .verify(&old.sign(NOW, BODY), BODY)
        .await
        .unwrap();

    app.server.serve_jwks(jwks(&[new.jwk()]));
    app.clock.advance(INTERVAL + 1);
    app.verifier
        .verify(&new.sign(app.now(), BODY), BODY)
        .await
        .unwrap();
    app.verifier
        .verify(&new.sign(app.now(), BODY), BODY)
        .await
        .unwrap();

    assert_eq!(app.server.fetches(), 2);
}

#[tokio::test]
async fn a_key_rotated_just_after_the_prefetch_is_accepted_at_once() {
    let (old, new) = (TestKey::new(1), TestKey::new(2));
    let app = Harness::start(jwks(&[old.jwk()]), NOW).await;
    app.verifier.prefetch().await.unwrap();
    app.server.serve_jwks(jwks(&[new.jwk()]));

    let signed_by_new = app.verifier.verify(&new.sign(app.now(), BODY), BODY).await;

    assert!(signed_by_new.is_ok());
    assert_eq!(app.server.fetches(), 2);
}

#[tokio::test]
async fn a_key_rotated_within_the_interval_of_another_miss_waits_for_the_interval() {
    // The price of the rate limit: for up to one interval after a miss's re-fetch, a new key is
    // refused (fal retries).
    let (old, new, forger) = (TestKey::new(1), TestKey::new(2), TestKey::new(66));
    let app = Harness::start(jwks(&[old.jwk()]), NOW).await;
    app.verifier.prefetch().await.unwrap();
    let forged = app
        .verifier
        .verify(&forger.sign(app.now(), BODY), BODY)
        .await;
    assert_eq!(forged.unwrap_err(), VerifyError::SignatureMismatch);
    app.server.serve_jwks(jwks(&[new.jwk()]));

    app.clock.advance(INTERVAL - 1);
    let early = app.verifier.verify(&new.sign(app.now(), BODY), BODY).await;
    app.clock.advance(1);
    let on_time = app.verifier.verify(&new.sign(app.now(), BODY), BODY).await;

    assert_eq!(early.unwrap_err(), VerifyError::SignatureMismatch);
    assert!(on_time.is_ok());
    assert_eq!(app.server.fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_bad_signatures_refetches_at_most_once_per_interval() {
    let (key, forger) = (TestKey::new(1), TestKey::new(66));
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;
    app.verifier.prefetch().await.unwrap();

    // Sequential: the first miss re-fetches once; within its interval, misses fetch nothing.
    for _ in 0..10 {
        let result = app.verifier.verify(&forger.sign(NOW, BODY), BODY).await;
        assert_eq!(result.unwrap_err(), VerifyError::SignatureMismatch);
    }
    assert_eq!(app.server.fetches(), 2);

    // Concurrent, with the one allowed fetch held in flight: everyone waits on it.
    app.server.delay(Duration::from_millis(20));
    for round in 3..=4 {
        app.clock.advance(INTERVAL);
        for storm in bad_signature_storm(&app, &forger, 32) {
            assert_eq!(storm.await.unwrap(), VerifyError::SignatureMismatch);
        }
        assert_eq!(app.server.fetches(), round);
    }
    // And the genuine key still works, from the cache.
    app.verifier
        .verify(&key.sign(app.now(), BODY), BODY)
        .await
        .unwrap();
    assert_eq!(app.server.fetches(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_webhooks_share_a_single_fetch() {
    let key = TestKey::new(1);
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;
    app.server.delay(Duration::from_millis(20));

    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (verifier, headers) = (app.verifier.clone(), key.sign(NOW, BODY));
            tokio::spawn(async move { verifier.verify(&headers, BODY).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    assert_eq!(app.server.fetches(), 1);
}

#[tokio::test]
async fn keys_older_than_max_age_are_refetched() {
    let key = TestKey::new(1);
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;
    app.verifier
        .verify(&key.sign(NOW, BODY), BODY)
        .await
        .unwrap();

    app.clock.advance(DAY);
    app.verifier
        .verify(&key.sign(app.now(), BODY), BODY)
        .await
        .unwrap();

    assert_eq!(app.server.fetches(), 2);
}

#[tokio::test]
async fn expired_keys_outlive_a_failing_jwks_by_the_stale_bound_and_no_more() {
    let key = TestKey::new(1);
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;
    let verifier = app
        .verifier
        .clone()
        .stale_if_error(Duration::from_secs(3600));
    verifier.prefetch().await.unwrap();
    app.server.serve(503, "down");

    app.clock.advance(DAY + 10);
    let within = verifier.verify(&key.sign(app.now(), BODY), BODY).await;
    app.clock.advance(3600);
    let beyond = verifier.verify(&key.sign(app.now(), BODY), BODY).await;

    assert!(within.is_ok());
    let error = beyond.unwrap_err();
    assert_eq!(
        error,
        VerifyError::JwksUnavailable("JWKS endpoint answered HTTP 503".into())
    );
    assert!(error.is_transient());
    assert_eq!(app.server.fetches(), 3);
}

#[tokio::test]
async fn a_failed_refetch_after_a_miss_keeps_the_working_keys() {
    let (key, forger) = (TestKey::new(1), TestKey::new(66));
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;
    app.verifier.prefetch().await.unwrap();
    app.server.serve(200, "not json");

    app.clock.advance(INTERVAL);
    let forged = app
        .verifier
        .verify(&forger.sign(app.now(), BODY), BODY)
        .await;
    let genuine = app.verifier.verify(&key.sign(app.now(), BODY), BODY).await;

    assert_eq!(forged.unwrap_err(), VerifyError::SignatureMismatch);
    assert!(genuine.is_ok());
    assert_eq!(app.server.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_webhooks_signed_by_a_rotated_key_all_pass_on_one_refetch() {
    // Those queued behind the in-flight re-fetch must retry with what it brought, not be
    // turned away by the rate limit it just consumed.
    let (old, new) = (TestKey::new(1), TestKey::new(2));
    let app = Harness::start(jwks(&[old.jwk()]), NOW).await;
    app.verifier.prefetch().await.unwrap();
    app.server.serve_jwks(jwks(&[old.jwk(), new.jwk()]));
    app.server.delay(Duration::from_millis(20));
    app.clock.advance(INTERVAL);

    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (verifier, headers) = (app.verifier.clone(), new.sign(app.now(), BODY));
            tokio::spawn(async move { verifier.verify(&headers, BODY).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    assert_eq!(app.server.fetches(), 2);
}
