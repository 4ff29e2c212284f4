//! The few HTML pages a browser sees (connect link errors, the callback's
//! result). Everything echoed is escaped; every page is `no-store` with a
//! strict Content-Security-Policy, and none ever contains a token or code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Headers every HTML page carries.
pub fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    );
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

/// A page with a heading and one paragraph; both are escaped here.
pub fn page(status: StatusCode, title: &str, heading: &str, message: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}</style></head>\n\
         <body>\n<h1>{heading}</h1>\n<p>{message}</p>\n</body>\n</html>\n",
        title = escape(title),
        heading = escape(heading),
        message = escape(message),
    );
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    secure_headers(&mut response);
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
