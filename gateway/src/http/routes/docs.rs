//! `/openapi.json` (OpenAPI 3.1, generated from the handlers and types) and
//! `/docs` (Swagger UI, its assets compiled into the binary).

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::http::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mcp-auth-gateway",
        description = "OAuth credentials of every user for every MCP server. Every /auth/* route except the browser-facing callback needs X-API-Key."
    ),
    paths(
        super::auth::init,
        super::auth::status,
        super::auth::token,
        super::auth::providers,
        super::auth::revoke,
        super::exchange::exchange,
        super::browser::show_connect,
        super::browser::continue_connect,
        super::browser::callback,
        super::health::health,
        super::admin::keys,
        super::admin::start_reencryption,
        super::admin::pause_reencryption,
        super::admin::audit_log,
        super::admin::credentials,
        super::admin::stats,
        super::admin::offboard_user,
        super::admin::offboard_domain,
    ),
    components(schemas(crate::http::error::ErrorBody, crate::http::oauth_error::OAuthErrorBody)),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "auth", description = "Called by MCP servers"),
        (name = "browser", description = "Visited by users' browsers"),
        (name = "health", description = "Liveness and readiness"),
        (name = "admin", description = "Operators: keys and re-encryption"),
    )
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
