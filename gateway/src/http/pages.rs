//! The few HTML pages a browser sees (connect link errors, the callback's
//! result). Everything echoed is escaped; every page is `no-store` with a
//! strict Content-Security-Policy, and none ever contains a token or code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The Content-Security-Policy of every page: nothing loads, nothing runs,
/// no form goes anywhere (the connect page alone widens `form-action`).
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Headers every HTML page carries.
pub fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}\
    button{font:inherit;font-weight:600;padding:.7rem 1.4rem;border:0;border-radius:.4rem;background:#1a56db;color:#fff;cursor:pointer}\
    .who{font-weight:600}.small{color:#555;font-size:.9rem}";

/// The document around `body` (already escaped HTML).
fn document(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}</body>\n</html>\n",
        title = escape(title),
    );
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    secure_headers(&mut response);
    response
}

/// A page with a heading and one paragraph; both are escaped here.
pub fn page(status: StatusCode, title: &str, heading: &str, message: &str) -> Response {
    document(status, title, &format!("<h1>{}</h1>\n<p>{}</p>\n", escape(heading), escape(message)))
}

/// The connect link's page: which provider, which account, and one button
/// that POSTs back to the link (a plain form: no JavaScript) with `csrf`,
/// which must match the cookie sent beside the page. The form may lead to
/// this gateway and, by its redirect, to `provider_origin`.
pub fn connect(connect_id: &str, provider: &str, provider_origin: &str, email: &str, csrf: &str) -> Response {
    let body = format!(
        "<h1>Connect your {provider} account</h1>\n\
         <p>Your assistant asks to use the {provider} account <span class=\"who\">{email}</span>. \
         Continue to sign in at {provider} and choose what to allow.</p>\n\
         <form method=\"post\" action=\"/connect/{id}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <button type=\"submit\">Continue to {provider}</button>\n</form>\n\
         <p class=\"small\">If you did not ask for this, close this page: nothing happens until you continue.</p>\n",
        provider = escape(provider),
        email = escape(email),
        id = escape(connect_id),
        csrf = escape(csrf),
    );
    let mut response = document(StatusCode::OK, &format!("Connect your {provider} account"), &body);
    let csp = CSP.replace("form-action 'none'", &format!("form-action 'self' {provider_origin}"));
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

pub fn success(provider: &str) -> Response {
    page(
        StatusCode::OK,
        "Authentication Successful",
        "✅ Authentication Successful",
        &format!("Your {provider} account is connected. You can now close this window and return to your assistant."),
    )
}

pub fn failure(status: StatusCode, message: &str) -> Response {
    page(status, "Authentication Failed", "Authentication failed", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_echoed_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;"
        );
    }

    #[tokio::test]
    async fn the_connect_page_escapes_and_lets_its_form_go_only_home_and_to_the_provider() {
        let response = connect("abc_-1", "Acme <Corp>", "https://idp.acme.test", "a\"@b.co", "tok&en");
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(
            csp.contains("form-action 'self' https://idp.acme.test;") && csp.starts_with("default-src 'none'"),
            "{csp}"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("Acme &lt;Corp&gt;") && body.contains("a&quot;@b.co") && body.contains("tok&amp;en"));
        assert!(body.contains(r#"<form method="post" action="/connect/abc_-1">"#), "{body}");
        assert!(!body.contains("<script"), "no JavaScript");
    }

    #[tokio::test]
    async fn pages_are_no_store_with_a_strict_csp() {
        let response = failure(StatusCode::BAD_REQUEST, "<b>bad</b>");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(
            response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'")
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("&lt;b&gt;bad&lt;/b&gt;") && !body.contains("<b>bad"));
    }
}
