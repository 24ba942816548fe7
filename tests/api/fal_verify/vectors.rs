//! The real proof: signatures made by PyNaCl (libsodium), an Ed25519 implementation independent
//! of ours, per tests/fixtures/make_fal_vectors.py, verify through `FalVerifier`.
use std::collections::BTreeMap;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use ed25519_dalek::SigningKey;
use fluxgate::fal::signature::signed_message;
use fluxgate::fal::verify::FalSignatureHeaders;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::support::{jwks, okp, Harness, TestKey, NOW};

#[derive(Deserialize)]
pub struct Fixture {
    pub keys: Vec<FixtureKey>,
    pub vectors: Vec<Vector>,
}

#[derive(Deserialize)]
pub struct FixtureKey {
    pub name: String,
    pub seed_hex: String,
    pub public_key_hex: String,
    pub x_unpadded: String,
    pub x_padded: String,
}

#[derive(Deserialize, Clone)]
pub struct Vector {
    pub name: String,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub timestamp: i64,
    pub body: String,
    pub body_sha256_hex: String,
    pub message: String,
}

impl Vector {
    pub fn header(&self, name: &str) -> &str {
        let (_, value) = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .unwrap();
        value
    }

    /// The headers as actix-web hands them to a handler.
    pub fn actix_headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }
}

pub fn fixture() -> Fixture {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fal_webhook_vectors.json"
    ));
    serde_json::from_str(text).unwrap()
}

impl Fixture {
    pub fn key(&self, name: &str) -> &FixtureKey {
        self.keys.iter().find(|k| k.name == name).unwrap()
    }

    pub fn vector(&self, name: &str) -> Vector {
        self.vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap()
            .clone()
    }
}

#[tokio::test]
async fn every_pynacl_vector_verifies_with_its_key_published_padded_or_unpadded() {
    let fixture = fixture();
    assert!(fixture.vectors.len() >= 4);
    for vector in &fixture.vectors {
        let key = fixture.key(&vector.key);
        for x in [&key.x_unpadded, &key.x_padded] {
            let app = Harness::start(jwks(&[okp(x)]), vector.timestamp).await;
            let headers = FalSignatureHeaders::from_headers(&vector.actix_headers()).unwrap();

            let verified = app.verifier.verify(&headers, vector.body.as_bytes()).await;

            let verified = verified.unwrap_or_else(|e| panic!("{} with x={x}: {e}", vector.name));
            assert_eq!(
                verified.request_id(),
                vector.header("x-fal-webhook-request-id")
            );
            assert_eq!(verified.user_id(), vector.header("x-fal-webhook-user-id"));
            assert_eq!(verified.timestamp(), vector.timestamp);
        }
    }
}

#[test]
fn our_signed_message_is_byte_for_byte_the_one_pynacl_signed() {
    for vector in fixture().vectors {
        let body = vector.body.as_bytes();
        assert_eq!(hex::encode(Sha256::digest(body)), vector.body_sha256_hex);
        let message = signed_message(
            vector.header("x-fal-webhook-request-id"),
            vector.header("x-fal-webhook-user-id"),
            vector.header("x-fal-webhook-timestamp"),
            body,
        );
        assert_eq!(message, vector.message, "{}", vector.name);
    }
}

#[test]
fn dalek_derives_the_same_public_keys_as_pynacl_including_rfc8032_test_1() {
    let fixture = fixture();
    let rfc = fixture.key("rfc8032_test1");
    assert_eq!(
        rfc.public_key_hex,
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    for key in &fixture.keys {
        let seed: [u8; 32] = hex::decode(&key.seed_hex).unwrap().try_into().unwrap();
        let public = SigningKey::from_bytes(&seed).verifying_key();
        assert_eq!(
            hex::encode(public.as_bytes()),
            key.public_key_hex,
            "{}",
            key.name
        );
    }
}

#[tokio::test]
async fn a_vector_read_from_http_1_headers_verifies_too() {
    let vector = fixture().vector("error_fixed_seed");
    let key = fixture().key("fixed_seed").x_unpadded.clone();
    let app = Harness::start(jwks(&[okp(&key)]), vector.timestamp).await;
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in &vector.headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    let headers = FalSignatureHeaders::from_http_headers(&map).unwrap();

    assert!(app
        .verifier
        .verify(&headers, vector.body.as_bytes())
        .await
        .is_ok());
}

#[tokio::test]
async fn a_vector_body_reserialised_by_serde_no_longer_verifies() {
    // Why the verifier takes raw bytes: the same JSON, re-serialised, is a different message.
    let vector = fixture().vector("success_fixed_seed");
    let key = fixture().key("fixed_seed").x_unpadded.clone();
    let app = Harness::start(jwks(&[okp(&key)]), vector.timestamp).await;
    let headers = FalSignatureHeaders::from_headers(&vector.actix_headers()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&vector.body).unwrap();
    let reserialised = serde_json::to_vec(&value).unwrap();

    let result = app.verifier.verify(&headers, &reserialised).await;

    assert_eq!(result.unwrap_err().outcome_label(), "bad_signature");
}

#[tokio::test]
async fn a_signature_made_by_our_own_sign_hex_round_trips() {
    let key = TestKey::new(7);
    let app = Harness::start(jwks(&[key.jwk()]), NOW).await;
    let body = br#"{"request_id":"req-1","status":"OK","payload":null}"#;

    let verified = app
        .verifier
        .verify(&key.sign(NOW, body), body)
        .await
        .unwrap();

    assert_eq!(verified.request_id(), "req-1");
    assert_eq!(verified.key_id(), None);
}
