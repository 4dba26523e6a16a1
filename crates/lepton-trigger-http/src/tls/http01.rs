//! ACME HTTP-01 challenge answers ([`Http01Tokens`]): while an order is being validated, the
//! plain-HTTP ingress answers `GET /.well-known/acme-challenge/{token}` with the token's key
//! authorization, for any host, before routing to an app (RFC 8555 section 8.3). Unknown
//! tokens fall through to the app the host routes to, so an app may still answer its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::stack::ResponseBody;

/// Where HTTP-01 challenges are asked for.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Tokens of the HTTP-01 challenges being validated → their key authorizations. Cheap to clone
/// (one shared map, written by the ACME issuer, read by every `--http` listener).
#[derive(Debug, Clone, Default)]
pub struct Http01Tokens {
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl Http01Tokens {
    /// No challenges pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer `token` with `key_authorization` until [`Http01Tokens::remove`].
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
    }

    /// Stop answering `token`.
    pub fn remove(&self, token: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    /// The response to a request for `path`, if it asks for a pending challenge.
    pub fn answer(&self, path: &str) -> Option<Response<ResponseBody>> {
        let token = path.strip_prefix(CHALLENGE_PATH)?;
        let key_authorization = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()?;
        let mut res = Response::new(
            Full::new(Bytes::from(key_authorization))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *res.status_mut() = StatusCode::OK;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        Some(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_pending_tokens_are_answered() {
        let tokens = Http01Tokens::new();
        tokens.insert("abc", "abc.thumbprint");
        let res = tokens
            .answer("/.well-known/acme-challenge/abc")
            .expect("pending");
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"abc.thumbprint");
        assert!(tokens.answer("/.well-known/acme-challenge/other").is_none());
        assert!(tokens.answer("/abc").is_none());
        tokens.remove("abc");
        assert!(tokens.answer("/.well-known/acme-challenge/abc").is_none());
    }
}
