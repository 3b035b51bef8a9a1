//! `/api/clients`: registrations and device operations (leshan-rest-api.md §3).

use axum::Router;

use super::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
}
