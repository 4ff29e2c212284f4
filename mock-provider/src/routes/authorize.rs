//! `GET /authorize` and, in interactive mode, `POST /authorize/decision`: the
//! authorization-code front channel (RFC 6749 §4.1.1–§4.1.2, RFC 7636 §4.3).
//!
//! Errors that make the redirect URI untrustworthy (unknown client, missing or malformed
//! redirect URI) are shown to the user as an HTML page; every other error goes back to the
//! client as `?error=...` on the redirect URI, as RFC 6749 §4.1.2.1 requires.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Form;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use url::Url;

use super::fault_gate;
use super::params::Params;
use crate::config::ConsentMode;
use crate::faults::Endpoint;
use crate::listener::ConnInfo;
use crate::state::{AuthorizationRequest, Shared, parse_scopes};
use crate::tokens::is_pkce_value;

pub(super) async fn authorize(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(response) = fault_gate(&shared, Endpoint::Authorize, &conn).await {
        return response;
    }
    let params = Params::parse(query.as_deref().unwrap_or("").as_bytes());
    let now = SystemTime::now();
    let mut store = shared.store();
    store.last_authorize_query = Some(params.clone().into_pairs());

    if params.get("client_id") != Some(store.config.client_id.as_str()) {
        return error_page("Unknown or missing client_id.");
    }
    let Some(redirect_uri_raw) = params.get("redirect_uri") else {
        return error_page("Missing redirect_uri.");
    };
    let redirect_uri = match Url::parse(redirect_uri_raw) {
        Ok(url) if url.fragment().is_none() => url,
        // RFC 6749 §3.1.2: an absolute URI without a fragment.
        _ => return error_page("redirect_uri must be an absolute URI without a fragment."),
    };
    let state = params.get("state").map(str::to_owned);
    let refuse = |error: &str, description: &str| {
        redirect(&redirect_uri, &[("error", error), ("error_description", description)], state.as_deref())
    };

    if let Some(name) = params.duplicate() {
        return refuse("invalid_request", &format!("parameter {name} sent twice"));
    }
    if params.get("response_type") != Some("code") {
        return refuse("unsupported_response_type", "only response_type=code is supported");
    }
    let code_challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (None, None) => None,
        (Some(challenge), Some("S256")) if is_pkce_value(challenge) => Some(challenge.to_owned()),
        (Some(_), Some("S256")) => {
            return refuse("invalid_request", "code_challenge must be 43-128 unreserved characters");
        }
        (None, Some(_)) => {
            return refuse("invalid_request", "code_challenge_method without code_challenge");
        }
        // A missing method means "plain" (RFC 7636 §4.3), which OAuth 2.1 forbids.
        (Some(_), _) => {
            return refuse("invalid_request", "code_challenge_method must be S256 (plain is refused)");
        }
    };

    let request = AuthorizationRequest {
        redirect_uri: redirect_uri.clone(),
        redirect_uri_raw: redirect_uri_raw.to_owned(),
        state: state.clone(),
        scopes: parse_scopes(params.get("scope").unwrap_or("")),
        code_challenge,
        login_hint: params.get("login_hint").map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
    };

    if store.config.consent == ConsentMode::Interactive {
        let email = request.login_hint.clone().unwrap_or_else(|| store.config.default_email.clone());
        let client_id = store.config.client_id.clone();
        let scopes = request.scopes.clone();
        let request_id = store.park(request, now);
        drop(store);
        return consent_page(&request_id, &client_id, &scopes, &email);
    }

    match store.automatic_decision(request.login_hint.as_deref()) {
        Some(email) => {
            let code = store.issue_code(request, email, now);
            drop(store);
            redirect(&redirect_uri, &[("code", &code)], state.as_deref())
        }
        None => {
            store.record_denial();
            drop(store);
            deny(&redirect_uri, state.as_deref())
        }
    }
}

/// The consent form's submission.
#[derive(Debug, Deserialize)]
pub(super) struct Decision {
    request_id: String,
    #[serde(default)]
    email: String,
    decision: String,
}

pub(super) async fn decision(State(shared): State<Arc<Shared>>, Form(decision): Form<Decision>) -> Response {
    let now = SystemTime::now();
    let mut store = shared.store();
    let Some(request) = store.unpark(&decision.request_id, now) else {
        return error_page("This consent page has expired or was already answered.");
    };
    let redirect_uri = request.redirect_uri.clone();
    let state = request.state.clone();
    if decision.decision == "approve" {
        let email = match decision.email.trim() {
            "" => store.config.default_email.clone(),
            email => email.to_owned(),
        };
        let code = store.issue_code(request, email, now);
        drop(store);
        redirect(&redirect_uri, &[("code", &code)], state.as_deref())
    } else {
        store.record_denial();
        drop(store);
        deny(&redirect_uri, state.as_deref())
    }
}

fn deny(redirect_uri: &Url, state: Option<&str>) -> Response {
    redirect(redirect_uri, &[("error", "access_denied"), ("error_description", "The user denied access.")], state)
}

/// 302 to `redirect_uri` with `params` (and `state`) appended to whatever query it had.
fn redirect(redirect_uri: &Url, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let mut location = redirect_uri.clone();
    {
        let mut query = location.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    let mut response = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(location.as_str()) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        // `Url` serialises to ASCII, so this only guards against the impossible.
        Err(_) => error_page("Cannot build the redirect."),
    }
}

fn error_page(message: &str) -> Response {
    let body = page("Authorization error", &format!("<h1>Authorization error</h1><p>{}</p>", escape(message)));
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

fn consent_page(request_id: &str, client_id: &str, scopes: &[String], email: &str) -> Response {
    let scopes = if scopes.is_empty() {
        "<li><em>no scopes requested</em></li>".to_owned()
    } else {
        scopes.iter().map(|scope| format!("<li><code>{}</code></li>", escape(scope))).collect()
    };
    let body = format!(
        r#"<h1>Sign in to the mock provider</h1>
<p><strong>{client}</strong> wants access to:</p>
<ul>{scopes}</ul>
<form method="post" action="/authorize/decision">
  <input type="hidden" name="request_id" value="{request_id}">
  <label>Email <input type="email" name="email" value="{email}" required></label>
  <p>
    <button type="submit" name="decision" value="approve">Approve</button>
    <button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
  </p>
</form>"#,
        client = escape(client_id),
        request_id = escape(request_id),
        email = escape(email),
    );
    let mut response = Html(page("Mock provider: consent", &body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}button{{margin-right:1rem}}</style>
</head><body>{body}</body></html>"#,
        title = escape(title),
    )
}

/// Escapes text for HTML element content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_the_existing_query_and_encodes() {
        let uri = Url::parse("http://localhost/cb?tenant=a%20b").unwrap();
        let response = redirect(&uri, &[("code", "c&d")], Some("s =1"));
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap();
        let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![("tenant".into(), "a b".into()), ("code".into(), "c&d".into()), ("state".into(), "s =1".into()),]
        );
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
