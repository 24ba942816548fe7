//! Standard Webhooks v1 signing: the `whsec_` secret type, the `webhook-signature` header
//! (`v1` HMAC-SHA256 tokens for every live secret, plus an optional `v1a` Ed25519 token), and
//! constant-time verifiers for our own tests and the `dev` demo subscriber.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact body bytes
//! sent; receivers use the official Standard Webhooks libraries, so this file follows the
//! spec byte for byte (tests/api/standard_webhooks.rs checks it against the Python library).
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Receivers refuse timestamps further than this from their clock (the spec's 5 minutes).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

const SECRET_PREFIX: &str = "whsec_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// The spec's bounds: at least 192 bits, at most 512.
const SECRET_MIN_BYTES: usize = 24;
const SECRET_MAX_BYTES: usize = 64;
const GENERATED_SECRET_BYTES: usize = 32;

/// Standard base64 that also takes unpadded input, as the official libraries do (Python adds
/// `==` before decoding), so a secret copied without its padding still works.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the webhook signing secret is empty")]
    Empty,
    #[error("the webhook signing secret is not `whsec_` followed by standard base64")]
    NotBase64,
    #[error(
        "the webhook signing secret decodes to {0} bytes; Standard Webhooks needs 24 to 64 bytes"
    )]
    Length(usize),
}

/// A symmetric signing secret: 24–64 random bytes, shown to users once as `whsec_<base64>`.
/// The HMAC key is the decoded bytes, never the string.
#[derive(Clone)]
pub struct SigningSecret {
    key: SecretSlice<u8>,
    display: SecretString,
}

impl SigningSecret {
    /// A fresh 32-byte secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rngs::OsRng)
    }

    /// A fresh 32-byte secret from the given generator (tests pass a seeded one).
    pub fn generate_with(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes).expect("32 bytes is within the spec's bounds")
    }

    /// Parses `whsec_<standard base64>`. Like the official libraries, the prefix is optional
    /// (Svix-era secrets were sometimes stored bare) and padding may be omitted; surrounding
    /// whitespace from a pasted value is ignored.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let s = s.trim();
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = STANDARD_LENIENT
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: Vec<u8>) -> Result<Self, SecretError> {
        let key = SecretSlice::from(bytes);
        let len = key.expose_secret().len();
        if !(SECRET_MIN_BYTES..=SECRET_MAX_BYTES).contains(&len) {
            return Err(SecretError::Length(len));
        }
        // Re-encoded canonically (padded, prefixed) whatever form it was parsed from.
        let display = format!("{SECRET_PREFIX}{}", STANDARD.encode(key.expose_secret()));
        Ok(Self {
            key,
            display: display.into(),
        })
    }

    /// The `whsec_…` form, for showing to the subscriber once or storing; the only way out.
    pub fn as_str(&self) -> &str {
        self.display.expose_secret()
    }

    fn mac(&self, content: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(content);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(whsec_<redacted>)")
    }
}

impl std::str::FromStr for SigningSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `{id}.{timestamp}.{body}`: what every token signs.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{msg_id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` value: `v1,<mac>` for each secret in the order given (new first,
/// then the old one during a rotation's grace period), then `v1a,<sig>` if a key is given.
///
/// `msg_id` must not contain `.` (the spec's guard against shifting bytes between id and
/// timestamp); fluxgate's ids are `evt_<hex>`.
pub fn sign(
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    secrets: &[&SigningSecret],
    ed25519: Option<&SigningKey>,
) -> String {
    debug_assert!(!msg_id.contains('.'), "webhook ids must not contain '.'");
    let content = signed_content(msg_id, timestamp, body);
    let hmacs = secrets
        .iter()
        .map(|secret| format!("v1,{}", STANDARD.encode(secret.mac(&content))));
    let ed = ed25519.map(|key| format!("v1a,{}", STANDARD.encode(key.sign(&content).to_bytes())));
    hmacs.chain(ed).collect::<Vec<_>>().join(" ")
}

/// The three headers of one delivery attempt. `id` stays the same on every retry (the
/// receiver's idempotency key); `timestamp` is this attempt's, so each retry is re-signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

impl WebhookHeaders {
    /// Signs `body` (the exact bytes that will be sent) for one attempt; see [`sign`].
    pub fn sign(
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        secrets: &[&SigningSecret],
        ed25519: Option<&SigningKey>,
    ) -> Self {
        Self {
            id: msg_id.to_owned(),
            timestamp,
            signature: sign(msg_id, timestamp, body, secrets, ed25519),
        }
    }

    /// `(name, value)` pairs ready for `reqwest::RequestBuilder::header`.
    pub fn to_pairs(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_ID, self.id.clone()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or empty `{0}` header")]
    MissingHeader(&'static str),
    #[error("`webhook-timestamp` is not an integer number of Unix seconds")]
    InvalidTimestamp,
    #[error("message timestamp is more than 5 minutes old")]
    TimestampTooOld,
    #[error("message timestamp is more than 5 minutes in the future")]
    TimestampTooNew,
    #[error("no matching signature found")]
    NoMatchingSignature,
}

/// Checks the headers are present and the timestamp is within tolerance of `now` (Unix
/// seconds); returns the parsed timestamp.
fn check_envelope(
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    now: i64,
) -> Result<i64, VerifyError> {
    for (name, value) in [
        (HEADER_ID, msg_id),
        (HEADER_TIMESTAMP, timestamp_header),
        (HEADER_SIGNATURE, signature_header),
    ] {
        if value.trim().is_empty() {
            return Err(VerifyError::MissingHeader(name));
        }
    }
    let timestamp: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    if timestamp < now.saturating_sub(TIMESTAMP_TOLERANCE_SECS) {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp > now.saturating_add(TIMESTAMP_TOLERANCE_SECS) {
        return Err(VerifyError::TimestampTooNew);
    }
    Ok(timestamp)
}

/// The decoded signatures of every token with the given version; malformed tokens are skipped
/// so one bad token (or one from a future scheme) cannot hide a good one.
fn tokens<'a>(signature_header: &'a str, version: &'a str) -> impl Iterator<Item = Vec<u8>> + 'a {
    signature_header
        .split_ascii_whitespace()
        .filter_map(move |token| match token.split_once(',') {
            Some((v, sig)) if v == version => STANDARD.decode(sig).ok(),
            _ => None,
        })
}

/// Verifies a delivery with a `whsec_` secret: passes if any `v1` token matches, compared in
/// constant time; refuses timestamps more than 5 minutes from `now` (Unix seconds).
pub fn verify(
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    secret: &SigningSecret,
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp = check_envelope(msg_id, timestamp_header, signature_header, now)?;
    let expected = secret.mac(&signed_content(msg_id, timestamp, body));
    // `ct_eq` on slices of unequal length is false without comparing, and a length is no secret.
    if tokens(signature_header, "v1").any(|sig| bool::from(expected.as_slice().ct_eq(&sig))) {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

/// Verifies a delivery with an Ed25519 public key: passes if any `v1a` token is a valid
/// signature (strict verification: no malleable or small-order forms).
pub fn verify_ed25519(
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    public_key: &VerifyingKey,
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp = check_envelope(msg_id, timestamp_header, signature_header, now)?;
    let content = signed_content(msg_id, timestamp, body);
    let valid = tokens(signature_header, "v1a").any(|sig| {
        Signature::from_slice(&sig)
            .is_ok_and(|sig| public_key.verify_strict(&content, &sig).is_ok())
    });
    if valid {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("a webhook public key is `whpk_` followed by standard base64")]
    NotBase64,
    #[error("a webhook public key is 32 bytes, this one decodes to {0}")]
    Length(usize),
    #[error("the webhook public key is not a valid Ed25519 point")]
    Invalid,
}

/// `whpk_<standard base64>` of an Ed25519 public key, the spec's display form.
pub fn format_public_key(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(key.as_bytes()))
}

/// Reads a `whpk_` public key (prefix optional, as for secrets).
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, PublicKeyError> {
    let s = s.trim();
    let encoded = s.strip_prefix(PUBLIC_KEY_PREFIX).unwrap_or(s);
    let bytes = STANDARD_LENIENT
        .decode(encoded)
        .map_err(|_| PublicKeyError::NotBase64)?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| PublicKeyError::Length(bytes.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    // The official libraries' shared test case (standard-webhooks libraries' test suites).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn seeded_secret(seed: u64) -> SigningSecret {
        SigningSecret::generate_with(&mut StdRng::seed_from_u64(seed))
    }

    fn seeded_key(seed: u64) -> SigningKey {
        SigningKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn the_official_test_vector_is_reproduced_and_verifies() {
        let secret = SigningSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            sign(SPEC_ID, SPEC_TS, SPEC_BODY, &[&secret], None),
            SPEC_SIGNATURE
        );
        let ts = SPEC_TS.to_string();
        assert_eq!(
            verify(SPEC_ID, &ts, SPEC_SIGNATURE, SPEC_BODY, &secret, SPEC_TS),
            Ok(())
        );
    }

    #[test]
    fn a_secret_parses_with_or_without_prefix_and_padding_like_the_official_libraries() {
        let secret = seeded_secret(1);
        let full = secret.as_str();
        assert!(full.starts_with("whsec_") && full.ends_with('='), "{full}");
        let bare = full.trim_start_matches("whsec_");
        for form in [
            full,
            bare,
            bare.trim_end_matches('='),
            &format!(" {full}\n"),
        ] {
            assert_eq!(
                SigningSecret::parse(form).unwrap().as_str(),
                full,
                "{form:?}"
            );
        }
        let vector = SigningSecret::parse(SPEC_SECRET.trim_start_matches("whsec_")).unwrap();
        assert_eq!(vector.as_str(), SPEC_SECRET);
    }

    #[test]
    fn secrets_that_are_empty_not_base64_or_outside_24_to_64_bytes_are_refused() {
        let encode = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert_eq!(SigningSecret::parse("").unwrap_err(), SecretError::Empty);
        assert_eq!(
            SigningSecret::parse("whsec_").unwrap_err(),
            SecretError::Empty
        );
        for not_base64 in ["whsec_not base64!", "whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_"] {
            let err = SigningSecret::parse(not_base64).unwrap_err();
            assert_eq!(err, SecretError::NotBase64, "{not_base64}");
        }
        assert_eq!(
            SigningSecret::parse(&encode(23)).unwrap_err(),
            SecretError::Length(23)
        );
        assert_eq!(
            SigningSecret::parse(&encode(65)).unwrap_err(),
            SecretError::Length(65)
        );
        assert!(SigningSecret::parse(&encode(24)).is_ok());
        assert!(SigningSecret::parse(&encode(64)).is_ok());
        assert!(SecretError::Length(23)
            .to_string()
            .contains("24 to 64 bytes"));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = seeded_secret(2);
        let bare = secret.as_str().trim_start_matches("whsec_").to_owned();
        let debug = format!("{secret:?} {:?}", Some(secret.clone()));
        assert!(!debug.contains(&bare[..8]), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn generated_secrets_are_32_fresh_bytes_that_round_trip() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a.as_str(), b.as_str());
        let decoded = STANDARD.decode(&a.as_str()["whsec_".len()..]).unwrap();
        assert_eq!(decoded.len(), 32);
        assert_eq!(seeded_secret(3).as_str(), seeded_secret(3).as_str());
        assert_eq!(
            SigningSecret::parse(a.as_str()).unwrap().as_str(),
            a.as_str()
        );
    }

    #[test]
    fn a_rotation_signs_with_new_then_old_secret_then_ed25519_and_each_verifies() {
        let (new, old, key) = (seeded_secret(10), seeded_secret(11), seeded_key(12));
        let body = br#"{"type":"generation.completed"}"#;
        let header = sign("evt_1", 1_700_000_000, body, &[&new, &old], Some(&key));
        let tokens: Vec<&str> = header.split(' ').collect();
        assert_eq!(tokens.len(), 3, "{header}");
        assert_eq!(tokens[0], sign("evt_1", 1_700_000_000, body, &[&new], None));
        assert_eq!(tokens[1], sign("evt_1", 1_700_000_000, body, &[&old], None));
        assert!(tokens[2].starts_with("v1a,"));
        let sig = STANDARD.decode(&tokens[2][4..]).unwrap();
        assert_eq!(sig.len(), 64);

        let ts = "1700000000";
        for secret in [&new, &old] {
            assert_eq!(
                verify("evt_1", ts, &header, body, secret, 1_700_000_000),
                Ok(())
            );
        }
        let public = key.verifying_key();
        assert_eq!(
            verify_ed25519("evt_1", ts, &header, body, &public, 1_700_000_000),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_a_changed_id_or_a_wrong_secret_is_refused() {
        let (secret, other) = (seeded_secret(20), seeded_secret(21));
        let header = sign("evt_1", 100, b"{\"a\":1}", &[&secret], None);
        let refused = Err(VerifyError::NoMatchingSignature);
        assert_eq!(
            verify("evt_1", "100", &header, b"{\"a\":2}", &secret, 100),
            refused
        );
        assert_eq!(
            verify("evt_2", "100", &header, b"{\"a\":1}", &secret, 100),
            refused
        );
        assert_eq!(
            verify("evt_1", "100", &header, b"{\"a\":1}", &other, 100),
            refused
        );
        // The timestamp is signed too: moving it inside the window still breaks the MAC.
        assert_eq!(
            verify("evt_1", "101", &header, b"{\"a\":1}", &secret, 100),
            refused
        );
    }

    #[test]
    fn timestamps_more_than_five_minutes_off_are_refused_and_the_edges_pass() {
        let secret = seeded_secret(30);
        let at = |ts: i64, now: i64| {
            let header = sign("evt_1", ts, b"x", &[&secret], None);
            verify("evt_1", &ts.to_string(), &header, b"x", &secret, now)
        };
        assert_eq!(at(1000, 1300), Ok(()));
        assert_eq!(at(1000, 700), Ok(()));
        assert_eq!(at(1000, 1301), Err(VerifyError::TimestampTooOld));
        assert_eq!(at(1000, 699), Err(VerifyError::TimestampTooNew));
    }

    #[test]
    fn missing_headers_and_non_integer_timestamps_are_named() {
        let secret = seeded_secret(40);
        let header = sign("evt_1", 5, b"x", &[&secret], None);
        let check = |id: &str, ts: &str, sig: &str| verify(id, ts, sig, b"x", &secret, 5);
        assert_eq!(
            check("", "5", &header),
            Err(VerifyError::MissingHeader(HEADER_ID))
        );
        assert_eq!(
            check("evt_1", " ", &header),
            Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
        );
        assert_eq!(
            check("evt_1", "5", ""),
            Err(VerifyError::MissingHeader(HEADER_SIGNATURE))
        );
        for ts in ["5.0", "abc", "0x5", "99999999999999999999"] {
            assert_eq!(
                check("evt_1", ts, &header),
                Err(VerifyError::InvalidTimestamp),
                "{ts}"
            );
        }
    }

    #[test]
    fn malformed_or_unknown_tokens_do_not_hide_a_valid_one() {
        let secret = seeded_secret(50);
        let good = sign("evt_1", 5, b"x", &[&secret], None);
        let header = format!("v1 v1,@@@ v2,AAAA v1a,AAAA  {good} v1,");
        assert_eq!(verify("evt_1", "5", &header, b"x", &secret, 5), Ok(()));
        // A v1a token is never read as an HMAC, even if it carried the MAC's bytes.
        let as_v1a = good.replacen("v1,", "v1a,", 1);
        assert_eq!(
            verify("evt_1", "5", &as_v1a, b"x", &secret, 5),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn ed25519_signatures_verify_only_with_their_key_and_content() {
        let (key, other) = (seeded_key(60), seeded_key(61));
        let secret = seeded_secret(62);
        let header = sign("evt_1", 9, b"body", &[&secret], Some(&key));
        let public = key.verifying_key();
        let refused = Err(VerifyError::NoMatchingSignature);
        assert_eq!(
            verify_ed25519("evt_1", "9", &header, b"body", &public, 9),
            Ok(())
        );
        let other = other.verifying_key();
        assert_eq!(
            verify_ed25519("evt_1", "9", &header, b"body", &other, 9),
            refused
        );
        assert_eq!(
            verify_ed25519("evt_1", "9", &header, b"bodY", &public, 9),
            refused
        );
        let hmac_only = sign("evt_1", 9, b"body", &[&secret], None);
        assert_eq!(
            verify_ed25519("evt_1", "9", &hmac_only, b"body", &public, 9),
            refused
        );
        assert_eq!(
            verify_ed25519("evt_1", "9", &header, b"body", &public, 9 + 301),
            Err(VerifyError::TimestampTooOld)
        );
    }

    #[test]
    fn public_keys_round_trip_as_whpk_and_bad_ones_are_refused() {
        let public = seeded_key(70).verifying_key();
        let shown = format_public_key(&public);
        assert!(shown.starts_with("whpk_"), "{shown}");
        assert_eq!(parse_public_key(&shown), Ok(public));
        assert_eq!(parse_public_key(&shown["whpk_".len()..]), Ok(public));
        assert_eq!(parse_public_key("whpk_!!"), Err(PublicKeyError::NotBase64));
        assert_eq!(
            parse_public_key(&format!("whpk_{}", STANDARD.encode([1u8; 31]))),
            Err(PublicKeyError::Length(31))
        );
    }

    #[test]
    fn webhook_headers_carry_the_id_the_attempt_timestamp_and_the_signature() {
        let secret = SigningSecret::parse(SPEC_SECRET).unwrap();
        let headers = WebhookHeaders::sign(SPEC_ID, SPEC_TS, SPEC_BODY, &[&secret], None);
        assert_eq!(
            headers.to_pairs(),
            [
                ("webhook-id", SPEC_ID.to_owned()),
                ("webhook-timestamp", SPEC_TS.to_string()),
                ("webhook-signature", SPEC_SIGNATURE.to_owned()),
            ]
        );
    }
}
