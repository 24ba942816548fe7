//! `POST /v1/tokens` and `DELETE /v1/tokens/{id}`: a tenant's backend mints a short-lived
//! browser token for one of its end users, hands it to that user's page, and may revoke it. A
//! token holds at most the scopes of the key that minted it, and only the scopes a page needs
//! (`Scopes::browser`); what it may reach beyond its scopes is `api::scopes::token_may`.
use crate::domain::ids::BrowserTokenId;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{TimeZone, Utc};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};

use crate::{
    api::{auth::Caller, body, state::AppState, subscriptions::known_fields},
    domain::{
        browser_token::{DEFAULT_TTL_SECS, MAX_TTL_SECS, MIN_TTL_SECS},
        generation::parse_end_user,
        scope::{Scope, Scopes},
        FieldError,
    },
    error::ApiError,
    storage::{self, browser_tokens::NewToken},
};

pub const FIELDS: &[&str] = &["end_user", "ttl_secs", "scopes"];

/// What a valid request asks for.
#[derive(Debug, PartialEq)]
struct Wanted {
    end_user: String,
    ttl_secs: i64,
    scopes: Scopes,
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, &state.settings).await?;
    let object = body::parse_json_object(&bytes)?;
    let wanted = parse(&object, caller.scopes).map_err(ApiError::validation)?;
    let id = BrowserTokenId::new();
    let expires_unix = Utc::now().timestamp() + wanted.ttl_secs;
    let expires_at = Utc
        .timestamp_opt(expires_unix, 0)
        .single()
        .ok_or_else(|| ApiError::internal("token expiry out of range"))?;
    storage::browser_tokens::create(
        &state.pool,
        &NewToken {
            id,
            tenant_id: caller.tenant_id,
            key_id: caller.key_id,
            end_user: &wanted.end_user,
            scopes: wanted.scopes,
            expires_at,
        },
    )
    .await?;
    let token = state.tokens.mint(id, expires_unix);
    Ok(HttpResponse::Created().json(json!({
        "object": "browser_token",
        "id": id.to_string(),
        "token": token.expose_secret(),
        "end_user": wanted.end_user,
        "scopes": wanted.scopes.names(),
        "expires_at": expires_at,
    })))
}

/// Revokes a token minted by the calling key; any other key gets 404, as for an unknown id.
pub async fn revoke(
    path: web::Path<BrowserTokenId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let revoked_at = storage::browser_tokens::revoke(&state.pool, id, caller.key_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no token {id} minted by this key")))?;
    Ok(HttpResponse::Ok().json(json!({
        "object": "browser_token",
        "id": id.to_string(),
        "revoked_at": revoked_at,
    })))
}

/// Every bad field at once. Scopes default to what the key holds of a page's scopes.
fn parse(object: &Map<String, Value>, key_scopes: Scopes) -> Result<Wanted, Vec<FieldError>> {
    let mut errors = Vec::new();
    known_fields(object, FIELDS, &mut errors);
    let end_user = match object.get("end_user") {
        Some(Value::String(s)) => parse_end_user(s)
            .map_err(|msg| errors.push(FieldError::new("end_user", msg)))
            .ok(),
        _ => {
            errors.push(FieldError::new(
                "end_user",
                "is required: the end user (a string) the token acts for",
            ));
            None
        }
    };
    let ttl_secs = match object.get("ttl_secs") {
        None | Some(Value::Null) => DEFAULT_TTL_SECS,
        Some(v) => {
            match v.as_i64() {
                Some(n) if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                    "ttl_secs",
                    format!("must be a whole number of seconds from {MIN_TTL_SECS} to {MAX_TTL_SECS}"),
                ));
                    DEFAULT_TTL_SECS
                }
            }
        }
    };
    let page = Scopes::browser();
    let scopes = match object.get("scopes") {
        None | Some(Value::Null) => {
            let held = Scopes::from_iter(page.iter().filter(|s| key_scopes.contains(*s)));
            if held == Scopes::default() {
                errors.push(FieldError::new(
                    "scopes",
                    format!(
                        "this key holds none of the scopes a browser token may have ({})",
                        page.names().join(", ")
                    ),
                ));
            }
            held
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut wanted = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let field = format!("scopes[{i}]");
                match item.as_str().and_then(Scope::parse) {
                    Some(s) if !page.contains(s) => errors.push(FieldError::new(
                        field,
                        format!("a browser token may hold only {}", page.names().join(", ")),
                    )),
                    Some(s) if !key_scopes.contains(s) => errors.push(FieldError::new(
                        field,
                        format!("this key does not hold {s}, so its tokens cannot"),
                    )),
                    Some(s) => wanted.push(s),
                    None => errors.push(FieldError::new(
                        field,
                        format!("must be one of {}", page.names().join(", ")),
                    )),
                }
            }
            Scopes::from_iter(wanted)
        }
        Some(_) => {
            errors.push(FieldError::new(
                "scopes",
                "must be a non-empty array of scope names",
            ));
            Scopes::default()
        }
    };
    match end_user {
        Some(end_user) if errors.is_empty() => Ok(Wanted {
            end_user,
            ttl_secs,
            scopes,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: Value, key: Scopes) -> Result<Wanted, Vec<String>> {
        parse(body.as_object().unwrap(), key)
            .map_err(|errors| errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn a_token_defaults_to_a_quarter_hour_and_the_page_scopes_its_key_holds() {
        let key = Scopes::parse_list("generations:read,subscriptions:manage").unwrap();
        let w = parsed(json!({"end_user": "u-1"}), key).unwrap();
        assert_eq!(w.ttl_secs, 900);
        assert_eq!(w.scopes.names(), ["generations:read"]);
    }

    #[test]
    fn a_token_cannot_hold_more_than_a_page_needs_or_its_key_holds() {
        let key = Scopes::parse_list("generations:write,admin").unwrap();
        let errors = parsed(
            json!({"end_user": "u", "scopes": ["admin", "generations:read", "root", "generations:write"]}),
            key,
        )
        .unwrap_err();
        assert_eq!(errors, ["scopes[0]", "scopes[1]", "scopes[2]"]);
    }

    #[test]
    fn every_bad_field_is_named() {
        let errors = parsed(
            json!({"ttl_secs": 5, "scopes": "all", "extra": 1}),
            Scopes::all(),
        )
        .unwrap_err();
        assert_eq!(errors, ["extra", "end_user", "ttl_secs", "scopes"]);
    }
}
