//! What a credential imposes on the generations it asks for, decided on the parsed request
//! before anything is stored or priced.
//!
//! A browser token acts for one end user: its requests are that user's (a body naming another
//! is refused, one naming none is filled in), they cannot send webhooks anywhere (a page could
//! otherwise point the tenant's signed webhooks at any URL), and they always run fal's safety
//! checker, as a user-facing application should. A tenant can require the safety checker for
//! every key too (`fluxgate tenants update NAME --require-safety-checker`). Its `seed_from` may
//! name only that user's generations: a seed is part of what a generation shows.
use crate::domain::{generation::GenerationRequest, FieldError};

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestPolicy<'a> {
    /// The end user a browser token acts for.
    pub end_user: Option<&'a str>,
    pub require_safety_checker: bool,
}

impl RequestPolicy<'_> {
    /// Holds `request` to the policy: fills in the token's end user, or names every field that
    /// breaks it.
    pub fn apply(&self, request: &mut GenerationRequest) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(user) = self.end_user {
            match request.end_user.as_deref() {
                None => request.end_user = Some(user.to_owned()),
                Some(named) if named == user => {}
                Some(_) => errors.push(FieldError::new(
                    "end_user",
                    "a browser token makes generations only for the end user it was minted for; leave end_user out",
                )),
            }
            if let Some(source) = &mut request.seed_from {
                source.owner = Some(user.to_owned());
            }
            if request.webhook_url.is_some() {
                errors.push(FieldError::new(
                    "webhook_url",
                    "a browser token cannot set webhook_url; follow the generation with GET /v1/generations/{id}/events",
                ));
            }
        }
        if self.require_safety_checker && !request.input.enable_safety_checker {
            let who = if self.end_user.is_some() {
                "requests made with a browser token"
            } else {
                "this account's requests"
            };
            errors.push(FieldError::new(
                "enable_safety_checker",
                format!("{who} always run the safety checker: leave it out or set it to true"),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::Endpoint;

    fn request(body: serde_json::Value) -> GenerationRequest {
        let object = body.as_object().cloned().unwrap();
        GenerationRequest::parse(object, Endpoint::TextToImage, false).unwrap()
    }

    #[test]
    fn a_tokens_request_is_made_for_its_end_user_with_the_safety_checker() {
        let token = RequestPolicy {
            end_user: Some("u-1"),
            require_safety_checker: true,
        };
        let mut r = request(serde_json::json!({"prompt": "a fox"}));
        token.apply(&mut r).unwrap();
        assert_eq!(r.end_user.as_deref(), Some("u-1"));
        assert!(r.input.enable_safety_checker);
    }

    #[test]
    fn a_tokens_seed_from_may_name_only_its_end_users_generations() {
        let token = RequestPolicy {
            end_user: Some("u-1"),
            require_safety_checker: true,
        };
        let body =
            serde_json::json!({"prompt": "a fox", "seed_from": format!("gen_{}", "0".repeat(32))});
        let mut r = request(body.clone());
        token.apply(&mut r).unwrap();
        assert_eq!(r.seed_from.unwrap().owner.as_deref(), Some("u-1"));
        let mut by_key = request(body);
        RequestPolicy::default().apply(&mut by_key).unwrap();
        assert_eq!(by_key.seed_from.unwrap().owner, None);
    }

    #[test]
    fn a_token_may_not_name_another_end_user_a_webhook_or_turn_the_checker_off() {
        let token = RequestPolicy {
            end_user: Some("u-1"),
            require_safety_checker: true,
        };
        let mut r = request(serde_json::json!({
            "prompt": "a fox", "end_user": "u-2", "enable_safety_checker": false,
            "webhook_url": "https://hooks.example.com/x"
        }));
        let errors = token.apply(&mut r).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["end_user", "webhook_url", "enable_safety_checker"]);
    }

    #[test]
    fn a_tenant_that_requires_the_checker_refuses_it_off_for_any_key() {
        let tenant = RequestPolicy {
            end_user: None,
            require_safety_checker: true,
        };
        let mut off =
            request(serde_json::json!({"prompt": "a fox", "enable_safety_checker": false}));
        assert_eq!(
            tenant.apply(&mut off).unwrap_err()[0].field,
            "enable_safety_checker"
        );
        let mut anyone = request(
            serde_json::json!({"prompt": "a fox", "enable_safety_checker": false, "end_user": "x"}),
        );
        assert!(RequestPolicy::default().apply(&mut anyone).is_ok());
    }
}
