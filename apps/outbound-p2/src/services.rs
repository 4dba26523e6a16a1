//! Outbound Redis / PostgreSQL / MySQL / MQTT routes (`/services/...`). Placeholder: owned and
//! replaced by the services tests; until then every `/services/` path answers 404.

use spin_sdk::http::{Request, Response};

/// Handle a `/services/...` request.
pub async fn handle(_req: Request) -> Response {
    Response::builder().status(404).body(Vec::new()).build()
}
