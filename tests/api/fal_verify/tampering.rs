//! Every single-field change to a genuine (PyNaCl-signed) webhook is rejected with the error
//! that names it; the ±300 s window holds at its edges.
use actix_web::http::header::HeaderValue;
use fluxgate::fal::signature::{
    HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER_ID,
};
use fluxgate::fal::verify::{FalSignatureHeaders, VerifyError};

use super::support::{jwks, okp, Harness};
use super::vectors::{fixture, Vector};

const HEADERS: [&str; 4] = [
    HEADER_REQUEST_ID,
    HEADER_USER_ID,
    HEADER_TIMESTAMP,
    HEADER_SIGNATURE,
];

/// The genuine vector, a verifier whose clock reads its timestamp, and its headers as strings.
async fn genuine() -> (Harness, Vector, [String; 4]) {
    let fixture = fixture();
    let vector = fixture.vector("success_fixed_seed");
    let x = fixture.key("fixed_seed").x_unpadded.clone();
    let app = Harness::start(jwks(&[okp(&x)]), vector.timestamp).await;
    let fields = HEADERS.map(|name| vector.header(name).to_owned());
    (app, vector, fields)
}

async fn verify_fields(
    app: &Harness,
    fields: &[String; 4],
    body: &[u8],
) -> Result<(), VerifyError> {
    let headers = FalSignatureHeaders::new(&fields[0], &fields[1], &fields[2], &fields[3])?;
    app.verifier.verify(&headers, body).await.map(drop)
}

fn with(fields: &[String; 4], index: usize, value: String) -> [String; 4] {
    let mut changed = fields.clone();
    changed[index] = value;
    changed
}

#[tokio::test]
async fn changing_any_single_signed_field_is_a_signature_mismatch() {
    let (app, vector, fields) = genuine().await;
    let body = vector.body.as_bytes();
    assert_eq!(verify_fields(&app, &fields, body).await, Ok(()));

    let mut tampered_body = body.to_vec();
    tampered_body[body.len() / 2] ^= 0x01;
    assert_eq!(
        verify_fields(&app, &fields, &tampered_body).await,
        Err(VerifyError::SignatureMismatch)
    );

    let ts = vector.timestamp;
    let mut variants = vec![
        ("timestamp + 1", with(&fields, 2, (ts + 1).to_string())),
        ("timestamp - 1", with(&fields, 2, (ts - 1).to_string())),
        (
            "request id",
            with(
                &fields,
                0,
                format!("{}0", &fields[0][..fields[0].len() - 1]),
            ),
        ),
        ("user id", with(&fields, 1, format!("{}x", fields[1]))),
    ];
    for byte in [0, 31, 32, 63] {
        let mut signature = hex::decode(&fields[3]).unwrap();
        signature[byte] ^= 0x01;
        variants.push(("signature byte", with(&fields, 3, hex::encode(signature))));
    }
    for (what, changed) in variants {
        let result = verify_fields(&app, &changed, body).await;
        assert_eq!(result, Err(VerifyError::SignatureMismatch), "{what}");
    }
}

#[tokio::test]
async fn each_missing_header_is_named_in_the_error() {
    let (_, vector, fields) = genuine().await;
    for name in HEADERS {
        let mut map = vector.actix_headers();
        map.remove(name);
        let error = FalSignatureHeaders::from_headers(&map).unwrap_err();
        assert_eq!(error, VerifyError::MissingHeader(name));
        assert_eq!(error.outcome_label(), "missing_header");
        assert!(error.to_string().contains(name));
    }
    for (index, name) in HEADERS.into_iter().enumerate() {
        let empty = with(&fields, index, String::new());
        let error = FalSignatureHeaders::new(&empty[0], &empty[1], &empty[2], &empty[3]);
        assert_eq!(
            error.unwrap_err(),
            VerifyError::MissingHeader(name),
            "empty {name}"
        );
    }
}

#[tokio::test]
async fn a_signature_that_is_not_hex_of_64_bytes_is_an_encoding_error() {
    let (_, _, fields) = genuine().await;
    let hex = &fields[3];
    for bad in [
        "zz".repeat(64),
        hex[..126].to_owned(),
        format!("{hex}00"),
        format!("0x{}", &hex[2..]),
        format!(" {}", &hex[1..]),
        "00".repeat(32),
    ] {
        let result = FalSignatureHeaders::new(&fields[0], &fields[1], &fields[2], &bad);
        assert_eq!(
            result.unwrap_err(),
            VerifyError::InvalidSignatureEncoding,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_timestamp_that_is_not_whole_unix_seconds_is_invalid() {
    let (_, _, fields) = genuine().await;
    for bad in [
        "abc",
        "+1767225600",
        "1767225600.0",
        "-1",
        "1767225600 ",
        "99999999999999999999",
    ] {
        let result = FalSignatureHeaders::new(&fields[0], &fields[1], bad, &fields[3]);
        assert_eq!(
            result.unwrap_err(),
            VerifyError::InvalidTimestamp,
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_header_that_is_not_utf8_is_malformed() {
    let (_, vector, _) = genuine().await;
    let mut map = vector.actix_headers();
    map.insert(
        HEADER_USER_ID.parse().unwrap(),
        HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    );

    let error = FalSignatureHeaders::from_headers(&map).unwrap_err();

    assert_eq!(error, VerifyError::MalformedHeader(HEADER_USER_ID));
}

#[tokio::test]
async fn a_webhook_301_s_old_or_ahead_is_stale_while_300_s_either_way_passes() {
    let (app, vector, fields) = genuine().await;
    let body = vector.body.as_bytes();
    let ts = vector.timestamp;

    for (now, skew_secs) in [(ts + 301, 301), (ts - 301, -301)] {
        app.clock.set(now);
        let error = verify_fields(&app, &fields, body).await.unwrap_err();
        assert_eq!(error, VerifyError::TimestampOutOfWindow { skew_secs });
        assert_eq!(error.outcome_label(), "stale");
    }
    // Stale webhooks are turned away before any key is needed.
    assert_eq!(app.server.fetches(), 0);

    for now in [ts + 300, ts - 300] {
        app.clock.set(now);
        assert_eq!(
            verify_fields(&app, &fields, body).await,
            Ok(()),
            "now = ts {:+}",
            now - ts
        );
    }
}
