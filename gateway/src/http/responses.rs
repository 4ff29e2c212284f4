//! The error answers routes share, described once for the OpenAPI document
//! (a route lists `Guarded`, and `WithBody` when it takes a JSON body, then
//! its own answers; a route's own entry for a status replaces the shared one).

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder, Schema};

fn error(description: &str, retry_after: bool) -> RefOr<Response> {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build());
    if retry_after {
        let seconds: RefOr<Schema> = utoipa::openapi::schema::Object::with_type(utoipa::openapi::Type::Integer).into();
        response = response.header(
            "Retry-After",
            HeaderBuilder::new().schema(Some(seconds)).description(Some("Seconds to wait")).build(),
        );
    }
    response.build().into()
}

/// What every route behind `X-API-Key` may answer besides its own.
pub struct Guarded;

impl utoipa::IntoResponses for Guarded {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            ("401".to_owned(), error("unauthorized: no X-API-Key", false)),
            ("403".to_owned(), error("forbidden: a wrong X-API-Key, or outside the client's rights", false)),
            ("429".to_owned(), error("rate_limited, with Retry-After", true)),
            ("500".to_owned(), error("internal_error", false)),
            ("503".to_owned(), error("service_unavailable: the database is unreachable; Retry-After", true)),
        ])
    }
}

/// What a route taking a JSON body may answer besides its own.
pub struct WithBody;

impl utoipa::IntoResponses for WithBody {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            ("400".to_owned(), error("invalid_request, invalid_email or unknown_provider", false)),
            ("413".to_owned(), error("payload_too_large", false)),
            ("415".to_owned(), error("unsupported_media_type", false)),
        ])
    }
}

/// What a browser page may answer besides its own: HTML pages.
pub struct BrowserErrors;

impl utoipa::IntoResponses for BrowserErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let page = |description: &str, retry_after: bool| -> RefOr<Response> {
            let mut response = ResponseBuilder::new().description(description).content(
                "text/html",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::schema::Object::with_type(utoipa::openapi::Type::String)))
                    .build(),
            );
            if retry_after {
                let seconds: RefOr<Schema> =
                    utoipa::openapi::schema::Object::with_type(utoipa::openapi::Type::Integer).into();
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new().schema(Some(seconds)).description(Some("Seconds to wait")).build(),
                );
            }
            response.build().into()
        };
        BTreeMap::from([
            ("429".to_owned(), page("HTML page: too many requests from this address", true)),
            ("503".to_owned(), page("HTML page: the gateway could not complete this step; try again shortly", false)),
        ])
    }
}
