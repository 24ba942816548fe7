//! TEMPORARY compile stub; replaced by the verifier branch.
use std::sync::Arc;
pub trait Clock: Send + Sync + 'static { fn now_unix(&self) -> i64; }
pub struct SystemClock;
impl Clock for SystemClock { fn now_unix(&self) -> i64 { chrono::Utc::now().timestamp() } }
#[derive(Debug)]
pub enum VerifyError { MissingHeader(&'static str) }
impl std::fmt::Display for VerifyError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
impl VerifyError { pub fn outcome_label(&self) -> &'static str { "x" } }
pub struct FalSignatureHeaders;
impl FalSignatureHeaders { pub fn from_headers(_: &actix_web::http::header::HeaderMap) -> Result<Self, VerifyError> { Err(VerifyError::MissingHeader("x")) } }
#[derive(Clone)]
pub struct FalVerifier;
impl FalVerifier {
    pub fn new(_: url::Url, _: reqwest::Client, _: Arc<dyn Clock>) -> Self { FalVerifier }
    pub async fn verify(&self, _: &FalSignatureHeaders, _: &[u8]) -> Result<(), VerifyError> { Ok(()) }
    pub async fn prefetch(&self) -> Result<(), VerifyError> { Ok(()) }
}
